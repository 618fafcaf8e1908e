"""Queue a training run (or join the open one), optionally waiting with a progress bar."""

from __future__ import annotations

import json
import threading
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from learning import runs
from learning.models import TrainingRun
from learning.run_progress import describe_phase, seconds_left

FINISHED = {TrainingRun.Status.SUCCEEDED, TrainingRun.Status.REJECTED, TrainingRun.Status.FAILED}
POLL_SECONDS = 0.5


def _time_left(run: TrainingRun) -> str:
    """ "  about 3m10s left" at the steps' pace so far; "" before the first step."""
    left = seconds_left(run)
    if left is None:
        return ""
    minutes, seconds = divmod(round(left), 60)
    return f"  about {minutes}m{seconds:02d}s left"


def _execute_and_close(run_id: int) -> None:
    try:
        runs.execute_training_run(run_id)
    finally:
        connection.close()


class Command(BaseCommand):
    kind = TrainingRun.Kind.FEEDBACK
    help = (
        "Fine-tune the active model on the usable feedback now. The run is queued for a Celery "
        "worker (the gpu queue); if a run is already queued or running, that one is reported "
        "(and waited for) instead of queueing a second. Hyper-parameters default to the "
        "LEARNING_* settings and are stored on the run. The gate decides whether the candidate "
        "is promoted. Exit status: 0 promoted or rejected by the gate, 1 failed or gave up "
        "waiting. Example: manage.py retrain --wait --set epochs=5 --set loss=kto"
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
            "--timeout",
            type=float,
            default=3600,
            help="seconds --wait waits at most (default 3600); the run goes on after that",
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
                kind=self.kind,
                trigger=TrainingRun.Trigger.COMMAND,
                overrides=overrides,
                enqueue=not options["inline"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        verb = "Queued" if created else "A run is already open:"
        self.stdout.write(f"{verb} training run #{run.pk} ({run.get_status_display()}).")
        if options["inline"] and created:
            # Train in a thread so that this one draws the progress bar as a worker's run would.
            trainer = threading.Thread(target=_execute_and_close, args=(run.pk,), daemon=True)
            trainer.start()
        if options["wait"] or options["inline"]:
            # An inline run ends with this process: wait for it whatever --timeout says.
            timeout = float("inf") if options["inline"] else float(options["timeout"])
            self._wait(run.pk, timeout)

    def _wait(self, run_id: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        drawn = None
        while True:
            run = TrainingRun.objects.get(pk=run_id)
            shown = (run.status, run.step, describe_phase(run))
            if shown != drawn:
                self._draw(run)
                drawn = shown
            if run.status in FINISHED:
                break
            if time.monotonic() > deadline:
                raise CommandError(f"\nGave up waiting after {timeout:.0f} s; the run goes on.")
            time.sleep(POLL_SECONDS)
        self.stdout.write("")
        self.stdout.write(runs.describe_run(run))
        if run.status == TrainingRun.Status.FAILED:
            raise CommandError("The training run failed.")

    def _draw(self, run: TrainingRun) -> None:
        width = 30
        done = run.step / run.total_steps if run.total_steps else 0.0
        bar = "#" * round(width * done) + "-" * (width - round(width * done))
        loss = f" loss {run.loss_history[-1]:.4f}" if run.loss_history else ""
        phase = describe_phase(run)
        in_steps = run.total_steps and 0 < run.step < run.total_steps
        head = f"\r[{bar}] {run.step}/{run.total_steps or '?'}"
        if run.status == "running" and phase and not in_steps:
            # Outside the steps: which phase, its progress and its own time left.
            line = f"{head} {phase}"
        else:
            line = f"{head} {run.get_status_display():<28}{loss}{_time_left(run)}"
        if self.stdout.isatty():
            self.stdout.write(line, ending="")
            self.stdout.flush()
        else:
            self.stdout.write(line.lstrip("\r"))
