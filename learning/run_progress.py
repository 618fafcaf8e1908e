"""What a running training run writes as it goes: its fields, its phase, its steps and loss curve.

A run spends much of its time outside its training steps (loading the model, building the
examples, the Fisher estimate, measuring the parent and the candidate, writing the checkpoint),
so it reports each *phase* as it enters it, with its progress where the phase is a loop (done of
total) and when it began, and the time left is estimated per phase from its own pace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.utils import timezone

from learning.models import TrainingRun

LOSS_HISTORY_POINTS = 400
PROGRESS_EVERY_SECONDS = 0.5
# Every phase a run reports, in the order a feedback run goes through them, as people read it.
PHASES = {
    "loading": "loading the model",
    "examples": "building the examples",
    "protecting": "checking the examples against golden answers",
    "fisher": "estimating the Fisher information (once per anchor)",
    "measuring": "measuring the active model",
    "tuning": "preparing the model",
    "training": "training",
    "gate": "measuring the candidate (the gate)",
    "saving": "writing the checkpoint",
}
PhaseReporter = Callable[[int, int], None]


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


def enter_phase(run: TrainingRun, name: str, total: int = 0) -> PhaseReporter:
    """Record that ``run`` now does phase ``name`` (of ``total`` items, 0: not counted); returns
    the reporter of its progress, ``report(done, total)``, which writes at most twice a second."""
    if name not in PHASES:
        raise ValueError(f"unknown phase {name!r}")
    fields = {"phase": name, "phase_done": 0, "phase_total": total, "phase_started_at": _now_iso()}
    save_run(run, metrics_after={**run.metrics_after, **fields}, heartbeat_at=timezone.now())
    last = [time.monotonic()]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY_SECONDS and done < total:
            return
        last[0] = now
        metrics = {**run.metrics_after, "phase_done": done, "phase_total": total}
        save_run(run, metrics_after=metrics, heartbeat_at=timezone.now())

    return report


def phase_progress(run: TrainingRun) -> dict[str, Any]:
    """The running phase as the API, the admin and ``retrain --wait`` show it: its name, label,
    items done of total, and the seconds it has left at its pace so far (None: unknown)."""
    name = phase(run)
    metrics = run.metrics_after or {}
    done, total = int(metrics.get("phase_done") or 0), int(metrics.get("phase_total") or 0)
    left = None
    if name and 0 < done < total and metrics.get("phase_started_at"):
        began = datetime.fromisoformat(metrics["phase_started_at"])
        elapsed = ((run.heartbeat_at or timezone.now()) - began).total_seconds()
        left = max(0.0, elapsed / done * (total - done))
    return {
        "phase": name,
        "phase_label": PHASES.get(name, ""),
        "phase_done": done if name else 0,
        "phase_total": total if name else 0,
        "phase_seconds_left": left,
    }


def describe_phase(run: TrainingRun) -> str:
    """One line of the running phase: "estimating the Fisher … 40/128, about 1 min 5 s left"."""
    progress = phase_progress(run)
    if not progress["phase"] or progress["phase"] == "training":
        return ""
    text = progress["phase_label"]
    if progress["phase_total"]:
        text += f" {progress['phase_done']}/{progress['phase_total']}"
    if (left := progress["phase_seconds_left"]) is not None:
        text += f", about {int(left // 60)} min {round(left % 60)} s left"
    return text


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
    """The phase a running run is in (a key of ``PHASES``; "" if unknown or not running)."""
    return str((run.metrics_after or {}).get("phase", "")) if run.status == "running" else ""
