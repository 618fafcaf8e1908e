"""Real training, real gate, on the tiny starter model.

Consistent feedback (the corpus answers rated up, an unhelpful reply rated down with the right
answer typed as a correction) must give a candidate the gate promotes; the same data with
a huge step and no pull toward θ₀ must give one that forgets and is rejected for retention.
"""

from pathlib import Path

import pytest

from bench.learning.rated_replies import store_rated_reply
from conversations.models import Feedback
from knowledge.demo.corpus import load_corpus
from learning.models import ModelVersion, TrainingRun
from learning.runs import execute_training_run, request_training_run

# The held-out split hashes feedback ids (learning.examples.is_heldout), and PostgreSQL does not
# roll sequences back: without a reset, which questions are held out would depend on how many
# rows the tests before these wrote.
pytestmark = pytest.mark.django_db(reset_sequences=True)

UNHELPFUL = "Sorry, I have no idea. Maybe ask in one of our stores?"


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"


def store_consistent_feedback(intent_count: int = 4, per_intent: int = 8) -> int:
    """Per question: the right answer rated up; an unhelpful reply rated down and corrected."""
    stored = 0
    for index, intent in enumerate(load_corpus().intents[:intent_count]):
        for number, question in enumerate(intent.questions[:per_intent]):
            session = f"quality-{index}-{number}"
            store_rated_reply(question, intent.answer, 1, session)
            store_rated_reply(question, UNHELPFUL, -1, session, correction=intent.answer)
            stored += 2
    # Staff reviewed it: a correction is learned once approved (LEARNING_TRAIN_UNREVIEWED_TEXT).
    Feedback.objects.update(review_status=Feedback.ReviewStatus.APPROVED)
    return stored


def run_training(**overrides) -> TrainingRun:
    run, created = request_training_run(
        trigger=TrainingRun.Trigger.COMMAND, overrides=overrides, enqueue=False
    )
    assert created
    finished = execute_training_run(run.pk)
    assert finished is not None
    assert finished.status != TrainingRun.Status.FAILED, finished.error
    return finished


def test_it_promotes_a_candidate_trained_on_consistent_feedback(active_model_version):
    store_consistent_feedback()

    # The default λ (300) is tuned on the starter model by bench/learn.py; on this tiny model,
    # whose Fisher weights are far larger, it holds the weights almost still. Same update,
    # the tiny model's scale.
    run = run_training(anchor_strength=10.0)

    assert run.status == TrainingRun.Status.SUCCEEDED, (run.gate_reasons, run.hyperparameters)
    assert run.gate_passed
    assert run.metrics_after["heldout_margin"] > run.metrics_before["heldout_margin"]
    active = ModelVersion.objects.active().get()
    assert active == run.result_version
    assert active.parent == active_model_version
    assert Feedback.objects.filter(used_by_run=run).count() > 0


def test_it_rejects_a_candidate_that_forgets_for_retention(active_model_version, settings):
    settings.LEARNING_KEEP_REJECTED = 0  # bounded disk: no rejected candidate's weights kept
    store_consistent_feedback()

    run = run_training(lr=0.05, anchor_strength=0.0, replay_share=0.0, epochs=6)

    assert run.status == TrainingRun.Status.REJECTED, (run.gate_reasons, run.hyperparameters)
    assert not run.gate_passed
    assert any(reason.startswith("FAIL retention") for reason in run.gate_reasons), run.gate_reasons
    assert ModelVersion.objects.active().get() == active_model_version
    assert run.result_version.status == ModelVersion.Status.REJECTED
    assert not Feedback.objects.filter(used_by_run=run).exists()
    # The candidate's weights went after the run; its row, metrics and reasons stay.
    assert run.result_version.weights_deleted_at is not None
    assert not Path(run.result_version.checkpoint_path).exists()
    assert Path(active_model_version.checkpoint_path).is_dir()
