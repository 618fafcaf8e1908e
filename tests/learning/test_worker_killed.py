"""Faults: the worker's pool child is SIGKILLed in the middle of training.

The task acknowledges late and rejects on a lost worker, so the broker hands the message to
the new pool child; ``claim_run`` sees that the recorded worker (same host, dead pid) is gone,
takes the run over and starts clean. Meanwhile the active version never changes and no
checkpoint directory exists half-written.
"""

from __future__ import annotations

import os
import signal
import socket

import pytest

from learning import runs
from learning.models import ModelVersion, TrainingRun
from tests.learning.consistent_feedback import pin_promotable_hyperparameters, rate_consistently
from tests.learning.worker_process import wait_until, worker_process_fixture  # noqa: F401

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

STEPS = 150  # long enough on the tiny model to be killed in the middle of it


def training_run(**lookups) -> TrainingRun | None:
    return TrainingRun.objects.filter(**lookups).select_related("result_version").first()


def checkpoint_entries(root) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name != "fisher") if root.exists() else []


def test_a_killed_training_is_rerun_clean_and_the_model_stays_until_then(
    active_model_version, celery_worker_process, settings
):
    pin_promotable_hyperparameters(settings)
    settings.LEARNING_EPOCHS = 100
    settings.LEARNING_MAX_STEPS = STEPS
    rate_consistently(rounds=1)
    run, _ = runs.request_training_run(trigger=TrainingRun.Trigger.COMMAND)
    worker = celery_worker_process

    def training_started() -> TrainingRun | None:
        current = training_run(pk=run.pk)
        assert current.status in TrainingRun.OPEN_STATUSES, (current.status, current.error)
        return current if current.step >= 1 and current.status == "running" else None

    training = wait_until(
        training_started,
        timeout=600,
        what="training to start",
        worker=worker,
    )
    host, _, pid = training.worker.rpartition(":")
    assert host == socket.gethostname()
    assert int(pid) != worker.process.pid  # the pool child, not the worker's main process
    os.kill(int(pid), signal.SIGKILL)

    killed = TrainingRun.objects.get(pk=run.pk)
    assert killed.step < STEPS, "training ended before it could be killed: raise STEPS"
    assert ModelVersion.objects.active().get() == active_model_version
    assert ModelVersion.objects.count() == 1
    assert checkpoint_entries(settings.CHECKPOINT_DIR) == []

    rerun = wait_until(
        lambda: training_run(pk=run.pk, status__in=("succeeded", "rejected", "failed")),
        timeout=600,
        what="the redelivered run to finish",
        worker=worker,
    )
    assert rerun.status in ("succeeded", "rejected"), rerun.error
    assert rerun.attempts == 2 and rerun.worker != training.worker
    assert rerun.step == rerun.total_steps == STEPS
    assert len(rerun.loss_history) == STEPS  # the curve restarted: no steps of the killed try
    candidate = rerun.result_version
    assert candidate.name == f"run-{run.pk}-a2"
    # Exactly one complete checkpoint (the second attempt's); nothing staged, nothing partial.
    assert checkpoint_entries(settings.CHECKPOINT_DIR) == [candidate.name]
    assert (settings.CHECKPOINT_DIR / candidate.name / "model.safetensors").is_file()
    active = ModelVersion.objects.active().get()
    assert active == (candidate if rerun.status == "succeeded" else active_model_version)
    assert "WorkerLostError" in worker.log() or "exited with 'signal 9" in worker.log()
