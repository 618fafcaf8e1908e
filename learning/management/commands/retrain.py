"""Queue a training run (or join the open one), optionally waiting with a progress bar."""

from __future__ import annotations

import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from learning import runs
from learning.models import TrainingRun

FINISHED = {TrainingRun.Status.SUCCEEDED, TrainingRun.Status.REJECTED, TrainingRun.Status.FAILED}


class Command(BaseCommand):
    help = (
        "Fine-tune the active model on the usable feedback now. The run is queued for a Celery "
        "worker (the gpu queue); if a run is already queued or running, that one is reported "
        "instead of queueing a second. Hyper-parameters default to the LEARNING_* settings."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait", action="store_true", help="wait for the run to end, showing its progress"
        )
        parser.add_argument(
            "--inline",
            action="store_true",
            help="run the training in this process instead of a worker (implies --wait)",
        )
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="override a hyper-parameter for this run, e.g. --set lr=1e-4 --set loss=kto",
        )
        parser.add_argument(
            "--timeout", type=float, default=3600, help="seconds to wait at most (default 3600)"
        )

    def handle(self, *args: object, **options: object) -> None:
        overrides = {}
        for item in options["set"]:
            name, sep, value = str(item).partition("=")
            if not sep:
                raise CommandError(f"--set takes NAME=VALUE, got {item!r}")
            try:
                overrides[name] = json.loads(value)
            except json.JSONDecodeError:
                overrides[name] = value
        try:
            run, created = runs.request_training_run(
                trigger=TrainingRun.Trigger.COMMAND,
                overrides=overrides,
                enqueue=not options["inline"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        verb = "Queued" if created else "A run is already open:"
        self.stdout.write(f"{verb} training run #{run.pk} ({run.get_status_display()}).")
        if options["inline"] and created:
            runs.execute_training_run(run.pk)
        if options["wait"] or options["inline"]:
            self._wait(run.pk, float(options["timeout"]))

    def _wait(self, run_id: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        drawn = None
        while True:
            run = TrainingRun.objects.get(pk=run_id)
            if (run.status, run.step) != drawn:
                self._draw(run)
                drawn = (run.status, run.step)
            if run.status in FINISHED:
                break
            if time.monotonic() > deadline:
                raise CommandError(f"\nGave up waiting after {timeout:.0f} s; the run goes on.")
            time.sleep(1)
        self.stdout.write("")
        self.stdout.write(runs.describe_run(run))
        if run.status == TrainingRun.Status.FAILED:
            raise CommandError("The training run failed.")

    def _draw(self, run: TrainingRun) -> None:
        width = 30
        done = run.step / run.total_steps if run.total_steps else 0.0
        bar = "#" * round(width * done) + "-" * (width - round(width * done))
        loss = f" loss {run.loss_history[-1]:.4f}" if run.loss_history else ""
        line = f"\r[{bar}] {run.step}/{run.total_steps or '?'} {run.get_status_display():<20}{loss}"
        if sys.stdout.isatty():
            self.stdout.write(line, ending="")
            self.stdout.flush()
        else:
            self.stdout.write(line.lstrip("\r"))
