"""Go back to the previously active model version, or to a named one."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from learning import versions
from learning.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Re-activate the model version that was active before the current one, or the version "
        "named with --to. Web processes switch within GENERATION_POLL_SECONDS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to", metavar="VERSION", help="the version to go back to by name")
        parser.add_argument("--note", default="", help="why; stored on the version")

    def handle(self, *args: object, **options: object) -> None:
        target = None
        if options["to"]:
            try:
                target = ModelVersion.objects.get(name=options["to"])
            except ModelVersion.DoesNotExist:
                raise CommandError(f"No model version named {options['to']!r}.") from None
        try:
            version = versions.rollback(to=target, note=str(options["note"]))
        except versions.LearningError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Rolled back: {version.name} is now active."))
