"""A training run executed in this process on the tiny model: queued → running → an outcome."""

from __future__ import annotations

import json

import pytest

from conversations.models import Feedback
from learning import run_pipeline, runs
from learning.models import ModelVersion, TrainingRun
from tests.learning.consistent_feedback import pin_promotable_hyperparameters, rate_consistently

pytestmark = pytest.mark.django_db

# Plain fine-tuning with a huge step: forgets the base corpus (the retention gate's job).
FORGETFUL = {"lr": 0.05, "anchor_strength": 0.0, "replay_share": 0.0}


@pytest.fixture
def checkpoints(settings, tmp_path):
    pin_promotable_hyperparameters(settings)
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings.CHECKPOINT_DIR


def queue(**overrides) -> TrainingRun:
    run, created = runs.request_training_run(
        trigger=TrainingRun.Trigger.COMMAND, overrides=overrides, enqueue=False
    )
    assert created and run.status == TrainingRun.Status.QUEUED
    return run


def watch_status(monkeypatch) -> list[str]:
    """The run's status as stored in the database while training reports progress."""
    seen: list[str] = []
    real = run_pipeline._progress_reporter

    def reporter(run):
        report = real(run)

        def recording(step, total, loss):
            seen.append(TrainingRun.objects.values_list("status", flat=True).get(pk=run.pk))
            report(step, total, loss)

        return recording

    monkeypatch.setattr(run_pipeline, "_progress_reporter", reporter)
    return seen


def test_a_run_on_consistent_feedback_is_promoted(active_model_version, checkpoints, monkeypatch):
    feedback = rate_consistently(rounds=2)
    run = queue()
    during = watch_status(monkeypatch)

    run = runs.execute_training_run(run.pk)

    assert set(during) == {TrainingRun.Status.RUNNING}
    assert run.status == TrainingRun.Status.SUCCEEDED, (run.gate_reasons, run.error)
    assert run.gate_passed and run.gate_reasons
    assert all(r.startswith("PASS") for r in run.gate_reasons)
    assert run.attempts == 1 and run.worker and run.finished_at and run.started_at
    assert (run.parent, run.anchor) == (active_model_version, active_model_version)
    assert run.example_counts["feedback"] == len(feedback)
    assert run.example_counts["heldout"] > 0 and len(run.data_hash) == 64
    assert run.step == run.total_steps > 0 and len(run.loss_history) == run.total_steps
    assert run.hyperparameters["lr"] > 0 and run.hyperparameters["regularizer"] == "l2sp"
    before, after = run.metrics_before, run.metrics_after
    assert after["heldout_margin"] > before["heldout_margin"]
    assert after["train_seconds"] > 0 and after["seconds_total"] >= after["train_seconds"]

    # The candidate is registered, active, and its checkpoint complete under its final name.
    version = run.result_version
    assert version.status == ModelVersion.Status.ACTIVE
    assert (version.parent, version.anchor, version.source) == (
        active_model_version,
        active_model_version,
        ModelVersion.Source.TRAINED,
    )
    assert version.metrics["heldout_margin"] == after["heldout_margin"]
    assert "training run" in version.activation_note
    active_model_version.refresh_from_db()
    assert active_model_version.status == ModelVersion.Status.RETIRED
    path = checkpoints / f"run-{run.pk}-a1"
    assert version.checkpoint_path == str(path)
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    metadata = json.loads((path / "metadata.json").read_text())
    assert metadata["parent"] == metadata["anchor"] == active_model_version.name
    assert metadata["data_hash"] == run.data_hash and metadata["training_run"] == run.pk
    assert metadata["gate"]["passed"] is True
    assert [p.name for p in checkpoints.iterdir() if p.name != "fisher"] == [path.name]

    # Everything it learned from is marked, so the next run starts from new feedback only.
    assert set(Feedback.objects.filter(used_by_run=run)) == set(feedback)
    assert runs.usable_feedback_count() == 0


def test_the_next_run_keeps_the_base_as_its_anchor(active_model_version, checkpoints):
    # Two rounds of ratings: with one, the held-out share (picked by a hash of the feedback id)
    # can hold thumbs-up rows only, whose margin the tiny model has no room to improve.
    rate_consistently(rounds=2, owner_prefix="first")
    first = runs.execute_training_run(queue(max_steps=4).pk)
    assert first.status == TrainingRun.Status.SUCCEEDED, first.gate_reasons
    rate_consistently(rounds=1, owner_prefix="second")

    second = runs.execute_training_run(queue(max_steps=4).pk)

    assert second.parent == first.result_version
    assert second.anchor == active_model_version  # θ₀ does not drift from round to round
    assert second.result_version.parent == first.result_version
    assert second.result_version.anchor == active_model_version


def test_a_forgetful_candidate_is_rejected_and_nothing_changes(active_model_version, checkpoints):
    feedback = rate_consistently(rounds=1)

    run = runs.execute_training_run(queue(**FORGETFUL).pk)

    assert run.status == TrainingRun.Status.REJECTED and run.gate_passed is False
    assert any(r.startswith("FAIL retention") for r in run.gate_reasons), run.gate_reasons
    assert run.result_version.status == ModelVersion.Status.REJECTED
    assert ModelVersion.objects.active().get() == active_model_version
    assert run.hyperparameters["lr"] == FORGETFUL["lr"]
    # Rejected: the feedback stays usable for a better run.
    assert not Feedback.objects.filter(used_by_run__isnull=False).exists()
    assert runs.usable_feedback_count() == len(feedback)


def test_a_crash_while_saving_leaves_no_checkpoint_and_fails_the_run(
    active_model_version, checkpoints, monkeypatch
):
    from transformers import PreTrainedTokenizerFast

    rate_consistently(rounds=1)

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    # The weights are written first, then the tokenizer fails: a half-written directory.
    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", disk_full)
    run = runs.execute_training_run(queue(max_steps=2).pk)

    assert run.status == TrainingRun.Status.FAILED
    assert "No space left on device" in run.error and run.finished_at
    assert run.result_version is None
    assert ModelVersion.objects.active().get() == active_model_version
    assert not [p for p in checkpoints.iterdir() if p.name != "fisher"]
    assert runs.usable_feedback_count() > 0
    assert runs.open_run() is None  # the next trigger can queue a run


def test_a_run_without_usable_feedback_fails_with_a_clear_error(active_model_version, checkpoints):
    run = runs.execute_training_run(queue().pk)

    assert run.status == TrainingRun.Status.FAILED
    assert run.error.startswith("LearningError: No usable feedback")
    assert runs.describe_run(run).splitlines()[-1] == (
        "  error: LearningError: No usable feedback to learn from."
    )


def test_a_finished_run_is_not_executed_again(active_model_version, checkpoints):
    rate_consistently(rounds=1)
    run = runs.execute_training_run(queue(max_steps=2).pk)
    versions = ModelVersion.objects.count()

    assert runs.execute_training_run(run.pk) is None  # a duplicate delivery

    assert ModelVersion.objects.count() == versions
    assert TrainingRun.objects.get(pk=run.pk).attempts == 1


def test_an_ewc_run_estimates_the_fisher_on_a_capped_sample(
    active_model_version, checkpoints, settings, monkeypatch
):
    settings.LEARNING_FISHER_MAX_EXAMPLES = 5
    sizes = []
    real = run_pipeline.cached_fisher

    def counting(cache_dir, key, model, encoded, **kwargs):
        sizes.append(len(encoded))
        return real(cache_dir, key, model, encoded, **kwargs)

    monkeypatch.setattr(run_pipeline, "cached_fisher", counting)
    rate_consistently(rounds=1)

    run = runs.execute_training_run(queue(max_steps=2, regularizer="ewc").pk)

    assert run.error == "" and sizes == [5]  # of the ~100 replay examples
    [cached] = (checkpoints / "fisher").iterdir()
    assert cached.name == f"{active_model_version.name}.n5.fisher.safetensors"


def test_a_grounded_anchor_is_measured_and_replayed_with_its_article(
    active_model_version, checkpoints, monkeypatch
):
    from serving.checkpoints import read_metadata

    encoded = {}
    real = run_pipeline.encode_prompts

    def recording(tokenizer, prompts, *, max_tokens):
        encoded.setdefault("first", prompts)
        return real(tokenizer, prompts, max_tokens=max_tokens)

    metadata = {**read_metadata(active_model_version.checkpoint_path), "tuning_config": {}}
    monkeypatch.setattr(run_pipeline, "is_grounded", lambda path: "tuning_config" in metadata)
    monkeypatch.setattr(run_pipeline, "encode_prompts", recording)
    rate_consistently(rounds=1)

    run = runs.execute_training_run(queue(max_steps=2).pk)

    assert run.error == ""
    turns, answer = encoded["first"][0]
    assert [t["role"] for t in turns] == ["system", "user"]
    assert answer in turns[0]["content"]  # the intent's answer is the article shown


def test_a_grounded_run_is_judged_on_the_knowledge_bases_own_golden_cases(
    active_model_version, checkpoints, monkeypatch, settings
):
    from knowledge.models import KnowledgeArticle

    settings.LEARNING_GOLDEN_FROM_KNOWLEDGE = 2
    for n, title in enumerate(["Returns", "Shipping", "Hours"]):
        KnowledgeArticle.objects.create(
            title=title, text=f"{title} policy: {n + 30} days.", example_questions=f"{title}?"
        )
    monkeypatch.setattr(run_pipeline, "is_grounded", lambda path: True)
    rate_consistently(rounds=1)

    run = runs.execute_training_run(queue(max_steps=2).pk)

    assert run.error == ""
    # No golden example was curated: the knowledge base's own (2 of its 3 articles) judge.
    assert run.metrics_before["golden_count"] == run.metrics_after["golden_count"] == 2
    assert "golden_fact_accuracy" in run.metrics_after  # each promises its number of days
    assert not any("golden set: empty" in reason for reason in run.gate_reasons)
