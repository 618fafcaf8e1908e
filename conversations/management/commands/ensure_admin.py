"""Make sure a superuser exists so that staff can reach the review admin."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the admin account if no superuser exists yet. Username, e-mail and password "
        "come from ADMIN_USERNAME (default 'admin'), ADMIN_EMAIL and ADMIN_PASSWORD; without "
        "ADMIN_PASSWORD a random password is generated and printed once. Does nothing when a "
        "superuser already exists."
    )

    def handle(self, *args: object, **options: object) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already.")
            return
        username = settings.ADMIN_USERNAME
        password = settings.ADMIN_PASSWORD or secrets.token_urlsafe(12)
        user_model.objects.create_superuser(
            username=username, email=settings.ADMIN_EMAIL, password=password
        )
        if settings.ADMIN_PASSWORD:
            self.stdout.write(self.style.SUCCESS(f"Created admin account '{username}'."))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created admin account '{username}' with password: {password}\n"
                    "This is shown once only; change it in the admin."
                )
            )
