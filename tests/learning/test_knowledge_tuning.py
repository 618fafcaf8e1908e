"""Tuning for the knowledge base as a training run: queued, tuned, gated, promoted or rejected."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from knowledge.models import KnowledgeArticle
from knowledge.services import do_save_article
from knowledge.signals import knowledge_imported
from learning import knowledge_tuning, runs
from learning.grounded_tuning import TuningConfig
from learning.knowledge_runs import request_knowledge_tuning
from learning.knowledge_tuning import GateScore, answers_article
from learning.models import ModelVersion, TrainingRun
from learning.versions import activate_version, register_version
from tests.learning.test_grounded_tuning import ARTICLES

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"questions_per_intent": 2, "epochs": 1, "trained_layers": 1, "batch_size": 16}


@pytest.fixture
def articles(tiny_encoder, settings):
    settings.KNOWLEDGE_TOP_K = 3
    for title, (topic, text, questions) in ARTICLES.items():
        do_save_article(
            KnowledgeArticle(
                title=title, text=text, topic=topic, example_questions="\n".join(questions)
            )
        )


@pytest.fixture
def base(tiny_checkpoint, settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    return register_version("tiny-base", str(tiny_checkpoint), ModelVersion.Source.PRETRAINED)


def test_a_reply_answers_its_article_when_it_states_it():
    text = "A basic service costs 49 EUR and a full service 89 EUR, parts extra."

    assert answers_article("A basic service is 49 EUR, a full service 89 EUR, parts extra.", text)
    assert not answers_article("We are open on Saturdays.", text)
    assert not answers_article("Sorry, I can't help with that: I can only answer", text)


def test_a_run_tunes_gates_and_promotes_a_new_root(articles, base, capsys):
    active = register_version("old", base.checkpoint_path, ModelVersion.Source.TRAINED)
    activate_version(active)
    run, created = request_knowledge_tuning(trigger="command", overrides=FAST, enqueue=False)

    finished = runs.execute_training_run(run.pk)

    assert created and finished.kind == "knowledge"
    assert finished.status == "succeeded", finished.error
    tuned = finished.result_version
    assert tuned.status == "active" and (tuned.parent, tuned.anchor) == (None, None)
    assert finished.hyperparameters["tuning"]["epochs"] == 1
    counts = finished.example_counts
    assert counts["articles"] == 4 and counts["declines"] > 0 and counts["answers"] > 0
    asked = finished.metrics_after["held_out_asked"]
    assert asked == finished.metrics_before["held_out_asked"] <= 4
    assert (
        finished.metrics_after["held_out_answered"] >= finished.metrics_before["held_out_answered"]
    )
    assert finished.step == finished.total_steps > 0 and finished.loss_history
    assert finished.gate_passed and finished.gate_reasons[-1].startswith("passed")


def test_a_candidate_answering_fewer_held_out_questions_is_rejected(articles, base, monkeypatch):
    active = register_version("old", base.checkpoint_path, ModelVersion.Source.TRAINED)
    activate_version(active)
    scores = {"old": GateScore(3, 4)}
    monkeypatch.setattr(
        knowledge_tuning,
        "score_version",
        lambda version, questions: scores.get(version.name, GateScore(1, 4)),
    )
    run, _ = request_knowledge_tuning(trigger="operator", overrides=FAST, enqueue=False)

    finished = runs.execute_training_run(run.pk)

    assert finished.status == "rejected" and finished.gate_passed is False
    assert finished.result_version.status == "rejected"
    assert ModelVersion.objects.active().get() == active
    assert finished.gate_reasons == [
        "held-out example questions answered from their article: 3/4 before, 1/4 after",
        "rejected: fewer than before",
    ]


def test_unknown_tuning_settings_are_refused(base):
    with pytest.raises(ValueError, match="Unknown tuning setting"):
        request_knowledge_tuning(trigger="command", overrides={"lr": 1}, enqueue=False)
    assert not TrainingRun.objects.exists()


def test_an_import_recalibrates_and_queues_the_tuning(articles, base, settings):
    from knowledge.models import ThresholdCalibration

    settings.LEARNING_TUNE_AFTER_IMPORT = True
    knowledge_imported.send(sender=None, result=None)

    assert ThresholdCalibration.objects.count() == 1
    run = TrainingRun.objects.get()
    assert (run.kind, run.trigger, run.status) == ("knowledge", "import", "queued")
    assert run.hyperparameters["tuning"] == TuningConfig().__dict__


def test_no_tuning_is_queued_when_switched_off_or_without_a_base(articles, settings):
    settings.LEARNING_TUNE_AFTER_IMPORT = True
    knowledge_imported.send(sender=None, result=None)  # no pretrained base registered
    assert not TrainingRun.objects.exists()


def test_the_command_runs_it_inline_with_progress(articles, base):
    from io import StringIO

    out = StringIO()
    call_command(
        "tune_for_knowledge",
        "--inline",
        "--set",
        "epochs=1",
        "--set",
        "trained_layers=1",
        stdout=out,
    )

    text = out.getvalue()
    assert "Queued training run #" in text
    assert "Training run #" in text and "Promoted" in text
    assert TrainingRun.objects.get().kind == "knowledge"
