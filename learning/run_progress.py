"""What a running training run writes as it goes: its fields, its steps and loss curve."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.utils import timezone

from learning.models import TrainingRun

LOSS_HISTORY_POINTS = 400
PROGRESS_EVERY_SECONDS = 0.5


def save_run(run: TrainingRun, **fields: Any) -> None:
    """Set ``fields`` on ``run`` and write them (only them) to its row."""
    for key, value in fields.items():
        setattr(run, key, value)
    TrainingRun.objects.filter(pk=run.pk).update(**fields)


def step_reporter(run: TrainingRun) -> Callable[[int, int, float], None]:
    """Writes step, total and the loss curve to the run at most twice a second."""
    history: list[float] = []
    last = [0.0]

    def report(step: int, total: int, loss: float) -> None:
        if loss == loss:  # not NaN: a training step (a frozen pass's batch has no loss)
            history.append(round(loss, 5))
        if step == 1:  # the pace of the steps is measured from here, not from the claim
            save_run(run, metrics_after={**run.metrics_after, "steps_started_at": _now_iso()})
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY_SECONDS and step < total:
            return
        last[0] = now
        stride = max(1, len(history) // LOSS_HISTORY_POINTS + 1)
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            step=step,
            total_steps=total,
            loss_history=history[::stride],
            heartbeat_at=timezone.now(),
        )

    return report


def seconds_left(run: TrainingRun) -> float | None:
    """The steps still to go at the pace of those done since the first (None before the second
    step or after the last): the time left of the training loop, most of a run's time."""
    if not (run.started_at and run.step > 1 and run.total_steps) or run.step >= run.total_steps:
        return None
    first = (run.metrics_after or {}).get("steps_started_at")
    since = datetime.fromisoformat(first) if first else run.started_at
    elapsed = ((run.heartbeat_at or since) - since).total_seconds()
    return max(0.0, elapsed / (run.step - 1) * (run.total_steps - run.step))


def _now_iso() -> str:
    return timezone.now().isoformat()


def phase(run: TrainingRun) -> str:
    """What a running run does besides its steps ("examples", "tuning", "gate"; "" if unknown)."""
    return str((run.metrics_after or {}).get("phase", "")) if run.status == "running" else ""
