"""Operator commands: retrain (--inline, --wait), promote, rollback, learning_status, export."""

from __future__ import annotations

import json
import threading
from io import StringIO

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.db import connection

from conversations.models import Feedback
from learning import runs
from learning.models import ModelVersion, TrainingRun
from learning.versions import register_version
from tests.learning.consistent_feedback import (
    BRUSH_OFF,
    pin_promotable_hyperparameters,
    rate_consistently,
)

COMMANDS = ("retrain", "promote", "rollback", "learning_status", "export_feedback")


def run_command(name: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def checkpoints(settings, tmp_path):
    pin_promotable_hyperparameters(settings)
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings.CHECKPOINT_DIR


@pytest.fixture
def queued(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(runs, "enqueue_training_run", sent.append)
    return sent


@pytest.fixture
def versions(active_model_version):
    """The starter (active) and two later versions on the same checkpoint files."""
    later = [
        register_version(
            name,
            active_model_version.checkpoint_path,
            ModelVersion.Source.TRAINED,
            parent=active_model_version,
            anchor=active_model_version,
        )
        for name in ("run-1-a1", "run-2-a1")
    ]
    return [active_model_version, *later]


def active() -> str:
    return ModelVersion.objects.active().get().name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_explains_itself(name):
    command = load_command_class("learning", name)
    text = command.create_parser("manage.py", name).format_help()
    assert len(command.help) > 80 and " ".join(command.help.split()[:4]) in " ".join(text.split())
    for action in command.create_parser("manage.py", name)._actions:
        if action.option_strings and action.dest not in ("help", "version"):
            assert action.help, f"{name} {action.option_strings} has no help"


# --- retrain ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_retrain_inline_trains_here_with_a_progress_bar(active_model_version, checkpoints):
    # Two rounds: with one, the hash-picked held-out share can hold thumbs-up rows only, whose
    # margin the tiny model has no room to improve (it failed after other tests used the ids).
    rate_consistently(rounds=2)

    out, _ = run_command("retrain", "--inline", "--set", "max_steps=6")

    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.SUCCEEDED, (run.gate_reasons, run.error)
    lines = out.splitlines()
    assert lines[0] == f"Queued training run #{run.pk} (Queued)."
    bars = [line for line in lines if line.startswith("[")]
    assert bars[-1].startswith("[" + "#" * 30 + "] 6/6 Promoted")
    assert f"Training run #{run.pk}: Promoted" in lines
    assert f"  candidate: run-{run.pk}-a1" in lines
    assert any(line.startswith("  PASS retention") for line in lines)
    assert run.trigger == TrainingRun.Trigger.COMMAND and run.hyperparameters["max_steps"] == 6
    assert active() == f"run-{run.pk}-a1"


@pytest.mark.django_db(transaction=True)
def test_retrain_wait_follows_the_workers_run_and_fails_when_it_fails(
    active_model_version, checkpoints, monkeypatch
):
    def worker(run_id: int) -> None:  # stands in for Celery: executes in another thread
        def execute() -> None:
            try:
                runs.execute_training_run(run_id)
            finally:
                connection.close()

        threading.Thread(target=execute).start()

    monkeypatch.setattr(runs, "enqueue_training_run", worker)

    with pytest.raises(CommandError, match="The training run failed"):
        run_command("retrain", "--wait")  # no feedback at all: nothing to learn from

    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.FAILED and "No usable feedback" in run.error


@pytest.mark.django_db
def test_retrain_queues_with_overrides_or_reports_the_open_run(
    queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        out, _ = run_command("retrain", "--set", "lr=1e-4", "--set", "loss=kto")

    run = TrainingRun.objects.get()
    assert out == f"Queued training run #{run.pk} (Queued).\n"
    assert queued == [run.pk]
    assert (run.hyperparameters["lr"], run.hyperparameters["loss"]) == (1e-4, "kto")

    again, _ = run_command("retrain")
    assert again == f"A run is already open: training run #{run.pk} (Queued).\n"
    assert queued == [run.pk] and TrainingRun.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("argument", "error"),
    [
        ("lr", "--set takes NAME=VALUE, got 'lr'"),
        ("nope=1", "unknown hyper-parameters: nope"),
        ("loss=dpo", "loss must be sft_ul or kto"),
    ],
)
def test_retrain_refuses_bad_overrides(queued, argument, error):
    with pytest.raises(CommandError, match=error):
        run_command("retrain", "--set", argument)
    assert not TrainingRun.objects.exists() and not queued


# --- promote and rollback -----------------------------------------------------------------


@pytest.mark.django_db
def test_promote_activates_a_version_with_a_note(versions):
    out, _ = run_command("promote", "run-1-a1", "--note", "checked by hand")

    assert out == "run-1-a1 is now active.\n"
    promoted = ModelVersion.objects.get(name="run-1-a1")
    assert (promoted.status, promoted.activation_note) == ("active", "checked by hand")
    assert ModelVersion.objects.get(name="tiny-starter").status == "retired"


@pytest.mark.django_db
def test_promote_forces_a_rejected_version(versions):
    ModelVersion.objects.filter(name="run-2-a1").update(status=ModelVersion.Status.REJECTED)

    run_command("promote", "run-2-a1")

    promoted = ModelVersion.objects.get(name="run-2-a1")
    assert promoted.status == "active"
    assert promoted.activation_note == "Promoted with the promote command"


@pytest.mark.django_db
def test_promote_refuses_unknown_and_active_versions(versions):
    with pytest.raises(CommandError, match="No model version named 'nope'"):
        run_command("promote", "nope")
    with pytest.raises(CommandError, match="tiny-starter is already active"):
        run_command("promote", "tiny-starter")
    assert active() == "tiny-starter"


@pytest.mark.django_db
def test_rollback_goes_back_to_the_previously_active_version(versions):
    run_command("promote", "run-1-a1")
    run_command("promote", "run-2-a1")

    out, _ = run_command("rollback", "--note", "replies got worse")

    assert out == "Rolled back: run-1-a1 is now active.\n"
    assert ModelVersion.objects.get(name="run-1-a1").activation_note == "replies got worse"
    assert run_command("rollback")[0] == "Rolled back: tiny-starter is now active.\n"


@pytest.mark.django_db
def test_rollback_to_a_named_version_or_refuses(versions):
    run_command("promote", "run-2-a1")

    run_command("rollback", "--to", "tiny-starter")
    assert active() == "tiny-starter"
    assert "Rolled back to tiny-starter" in ModelVersion.objects.get(name=active()).activation_note
    with pytest.raises(CommandError, match="There is no earlier version to roll back to"):
        run_command("rollback")
    with pytest.raises(CommandError, match="No model version named 'nope'"):
        run_command("rollback", "--to", "nope")
    assert active() == "tiny-starter"


# --- learning_status ----------------------------------------------------------------------


@pytest.mark.django_db
def test_learning_status_shows_the_model_versions_runs_and_waiting_feedback(versions, queued):
    rate_consistently(rounds=1)
    ModelVersion.objects.filter(name="run-1-a1").update(
        metrics={"retention_perplexity": 1.2345, "heldout_margin": 0.5}
    )
    failed = TrainingRun.objects.create(
        trigger="schedule", status="failed", error="LearningError: boom\nTraceback"
    )
    open_run, _ = runs.request_training_run(trigger="command")

    out, _ = run_command("learning_status")

    lines = out.splitlines()
    assert lines[0] == "Active model: tiny-starter"
    assert lines[1] == "Usable feedback not yet learned from: 24"
    version_line = next(line for line in lines if line.strip().startswith("run-1-a1"))
    assert "ready" in version_line and "parent tiny-starter" in version_line
    assert "heldout_margin 0.500" in version_line and "retention_perplexity 1.234" in version_line
    assert f"Training run #{open_run.pk}: Queued" in out
    assert f"Training run #{failed.pk}: Failed" in out and "error: LearningError: boom" in out


@pytest.mark.django_db
def test_learning_status_on_an_empty_install():
    out, _ = run_command("learning_status")
    assert out.splitlines()[:2] == ["Active model: none", "Usable feedback not yet learned from: 0"]


# --- export_feedback ----------------------------------------------------------------------


@pytest.mark.django_db
def test_export_feedback_writes_kto_jsonl(tmp_path):
    rows = rate_consistently(rounds=1)
    rows[0].correction = "A better answer."
    rows[0].save()
    Feedback.objects.filter(pk=rows[1].pk).update(review_status="rejected")
    used_run = TrainingRun.objects.create(trigger="command", status="succeeded")
    Feedback.objects.filter(pk=rows[2].pk).update(used_by_run=used_run)

    out, err = run_command("export_feedback")

    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 24 - 2 + 1  # rejected and used left out; one correction added
    assert err == "Exported 23 rows.\n"
    first = lines[0]
    assert set(first) == {"prompt", "completion", "label"}
    assert first["prompt"][-1]["role"] == "user" and first["completion"][0]["role"] == "assistant"
    assert {
        "prompt": first["prompt"],
        "completion": [{"role": "assistant", "content": "A better answer."}],
        "label": True,
    } in lines
    brush_offs = [row["label"] for row in lines if row["completion"][0]["content"] == BRUSH_OFF]
    assert brush_offs == [False] * 11  # every thumbs-down but the rejected one

    target = tmp_path / "feedback.jsonl"
    run_command("export_feedback", "-o", str(target), "--rating", "-1", "--include-used")
    exported = [json.loads(line) for line in target.read_text().splitlines()]
    assert exported and all(not row["label"] for row in exported)
    assert len(exported) == 12 - 1  # every thumbs-down but the rejected one
