"""Make a model version the one that answers, whatever the gate said."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from learning import versions
from learning.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Activate a model version by name (force-promote: also a version the gate rejected). "
        "Web processes switch to it within GENERATION_POLL_SECONDS, between generations."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", help="the model version's name (see learning_status)")
        parser.add_argument("--note", default="", help="why; stored on the version")

    def handle(self, *args: object, **options: object) -> None:
        try:
            version = ModelVersion.objects.get(name=options["version"])
        except ModelVersion.DoesNotExist:
            raise CommandError(f"No model version named {options['version']!r}.") from None
        try:
            versions.promote_version(
                version, note=str(options["note"]) or "Promoted with the promote command"
            )
        except versions.LearningError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"{version.name} is now active."))
