"""Calibrate the decline threshold on the knowledge base as it is now."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.calibration import MAX_IN_SCOPE_DECLINED, CalibrationError, do_calibrate_threshold


class Command(BaseCommand):
    help = (
        "Calibrate the decline threshold on the active articles: each example question, asked "
        "as a new wording, against the shipped off-topic questions (knowledge/off_topic.json, "
        "its calibration half). The threshold declines the most off-topic questions while "
        "declining at most --budget of the example questions; it is stored and in force in "
        "every web process within KNOWLEDGE_POLL_SECONDS (unless staff set an override in the "
        "business profile). Imports do this by themselves."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--budget",
            type=float,
            default=MAX_IN_SCOPE_DECLINED,
            help=f"the share of example questions it may decline (default {MAX_IN_SCOPE_DECLINED})",
        )

    def handle(self, *args: object, **options: object) -> None:
        budget = float(options["budget"])
        if not 0.0 <= budget <= 1.0:
            raise CommandError("--budget is a share, between 0 and 1.")
        try:
            do_calibrate_threshold(budget=budget, log=self.stdout.write)
        except CalibrationError as error:
            raise CommandError(str(error)) from error
