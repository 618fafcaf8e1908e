"""Staff users who may answer customers in the inbox (the `answer_customers` permission)."""

from __future__ import annotations

from django.contrib.auth.models import Permission


def allow_answering(user, *, supervise: bool = False):
    """Grant ``user`` the inbox permission (and the supervisor's); returns the user."""
    codenames = ["answer_customers", *(["supervise_inbox"] if supervise else [])]
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="conversations", codename__in=codenames)
    )
    return user
