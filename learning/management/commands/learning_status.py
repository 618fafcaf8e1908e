"""Where the learning loop stands: the active model, the versions, recent runs, feedback."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from learning import runs
from learning.models import ModelVersion, TrainingRun


class Command(BaseCommand):
    help = (
        "Show the active model version, the latest versions with their metrics, the latest "
        "training runs with their gate decisions, and how much usable feedback waits."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=5, help="rows per section (default 5)")

    def handle(self, *args: object, **options: object) -> None:
        limit = int(options["limit"])
        active = ModelVersion.objects.active().first()
        self.stdout.write(f"Active model: {active.name if active else 'none'}")
        self.stdout.write(f"Usable feedback not yet learned from: {runs.usable_feedback_count()}")
        self.stdout.write("\nModel versions:")
        for version in ModelVersion.objects.select_related("parent")[:limit]:
            metrics = ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in sorted(version.metrics.items())
                if k in {"retention_perplexity", "heldout_margin", "golden_fact_accuracy"}
            )
            parent = version.parent.name if version.parent else "-"
            self.stdout.write(
                f"  {version.name:<28} {version.status:<9} parent {parent:<20} {metrics}"
            )
        self.stdout.write("\nTraining runs:")
        for run in TrainingRun.objects.select_related("result_version")[:limit]:
            progress = f" step {run.step}/{run.total_steps}" if run.status == "running" else ""
            self.stdout.write("  " + runs.describe_run(run).replace("\n", "\n  ") + progress)
