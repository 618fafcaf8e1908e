"""A run reports each phase outside its steps (loading, examples, golden answers, the Fisher
estimate, measuring, the gate, the checkpoint) with its progress and time left, and the API,
the admin and ``retrain --wait`` show it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from learning import run_pipeline, runs
from learning.admin.display import progress_html
from learning.models import TrainingRun
from learning.run_progress import PHASES, describe_phase, phase_progress
from tests.learning.consistent_feedback import rate_consistently

pytestmark = pytest.mark.django_db


def test_a_feedback_run_goes_through_every_phase_in_order(
    active_model_version, settings, tmp_path, monkeypatch
):
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    settings.LEARNING_REGULARIZER = "ewc"
    settings.LEARNING_MAX_STEPS = 2
    rate_consistently(rounds=1)
    entered: list[tuple[str, int]] = []
    progress: dict[str, list[tuple[int, int]]] = {}
    real = run_pipeline.enter_phase

    def recording(run, name, total=0):
        entered.append((name, total))
        report = real(run, name, total)
        assert TrainingRun.objects.get(pk=run.pk).metrics_after["phase"] == name  # stored

        def reporting(done, total):
            progress.setdefault(name, []).append((done, total))
            report(done, total)

        return reporting

    monkeypatch.setattr(run_pipeline, "enter_phase", recording)
    run, _ = runs.request_training_run(trigger=TrainingRun.Trigger.COMMAND, enqueue=False)

    run = runs.execute_training_run(run.pk)

    assert run.status in {TrainingRun.Status.SUCCEEDED, TrainingRun.Status.REJECTED}
    names = [name for name, _ in entered]
    assert names == [
        "loading",
        "examples",
        "protecting",
        "fisher",
        "measuring",
        "training",
        "gate",
        "saving",
    ]
    fisher_total = dict(entered)["fisher"]
    assert fisher_total > 0 and progress["fisher"][-1] == (fisher_total, fisher_total)
    assert set(names) <= set(PHASES)


def running(phase: str, done: int, total: int, *, seconds: float) -> TrainingRun:
    now = timezone.now()
    return TrainingRun.objects.create(
        status=TrainingRun.Status.RUNNING,
        trigger=TrainingRun.Trigger.COMMAND,
        started_at=now - timedelta(seconds=seconds + 5),
        heartbeat_at=now,
        total_steps=12,
        metrics_after={
            "phase": phase,
            "phase_done": done,
            "phase_total": total,
            "phase_started_at": (now - timedelta(seconds=seconds)).isoformat(),
        },
    )


def test_a_phase_has_its_own_time_left_at_its_own_pace():
    run = running("fisher", 32, 128, seconds=20)  # 32 in 20 s: 96 more take 60 s

    progress = phase_progress(run)

    assert progress["phase_label"] == PHASES["fisher"]
    assert (progress["phase_done"], progress["phase_total"]) == (32, 128)
    assert progress["phase_seconds_left"] == pytest.approx(60, abs=1)
    assert describe_phase(run) == f"{PHASES['fisher']} 32/128, about 1 min 0 s left"
    run.metrics_after = {**run.metrics_after, "phase": "loading", "phase_total": 0}
    assert phase_progress(run)["phase_seconds_left"] is None  # not counted: no estimate


def test_the_api_and_the_admin_show_the_phase(admin_client):
    run = running("fisher", 32, 128, seconds=20)

    shown = admin_client.get(reverse("learning:training-run", args=[run.pk])).json()

    assert shown["phase"] == "fisher" and shown["phase_label"] == PHASES["fisher"]
    assert (shown["phase_done"], shown["phase_total"]) == (32, 128)
    assert shown["phase_seconds_left"] == pytest.approx(60, abs=1)
    assert "Estimating the Fisher information (once per anchor) 32/128" in progress_html(run)


def test_retrain_wait_prints_the_phase_until_the_run_ends(capsys, monkeypatch):
    from learning.management.commands import retrain

    run = running("gate", 0, 0, seconds=1)
    states = iter(["gate", "done"])

    def advance(_seconds):
        if next(states) == "done":
            TrainingRun.objects.filter(pk=run.pk).update(
                status=TrainingRun.Status.REJECTED, finished_at=timezone.now()
            )

    monkeypatch.setattr(retrain.time, "sleep", advance)

    call_command("retrain", "--wait")  # the open run: waits for it

    assert PHASES["gate"] in capsys.readouterr().out
