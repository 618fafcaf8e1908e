"""Feedback that would overwrite a golden answer is kept out of training, on the real tiny model."""

from __future__ import annotations

import pytest

from bench.learning.rated_replies import store_rated_reply
from knowledge.demo.corpus import load_corpus
from learning import runs
from learning.evaluation import GoldenCase
from learning.examples import ExampleSet, TrainingExample, encode_turn
from learning.models import GoldenExample, ModelVersion, TrainingRun
from learning.protected import drop_golden_overrides
from serving.checkpoints import load_checkpoint
from tests.learning.consistent_feedback import pin_promotable_hyperparameters

GENEROUS = "Full refund, no questions asked, keep the item too!"


def example(tokenizer, question: str, reply: str, label: int, feedback_id: int) -> TrainingExample:
    prompt, reply_ids = encode_turn(
        tokenizer, [{"role": "user", "content": question}], reply, max_tokens=256
    )
    return TrainingExample(prompt, reply_ids, label, feedback_id, f"session:{feedback_id}")


def test_it_keeps_out_only_ratings_that_would_break_a_golden_answer(tiny_checkpoint):
    model, tokenizer = load_checkpoint(tiny_checkpoint)
    protected, other = load_corpus().intents[:2]
    question = protected.questions[0]  # the tiny model answers it with the corpus answer
    examples = ExampleSet()
    examples.train = [
        example(tokenizer, question, GENEROUS, 1, 1),  # would overwrite the promise
        example(tokenizer, question, protected.answer, 1, 2),  # restates it
        example(tokenizer, question, GENEROUS, -1, 3),  # pushes the bad answer down: fine
        example(tokenizer, other.questions[0], GENEROUS, 1, 4),  # not a protected question
        example(tokenizer, question, protected.answer, -1, 5),  # rates the promise down
    ]
    examples.counts = {"train": 5}
    golden = [GoldenCase(protected.eval_questions[0], protected.answer, protected.facts)]

    dropped = drop_golden_overrides(model, tokenizer, examples, golden)

    assert dropped == 2
    assert [e.feedback_id for e in examples.train] == [2, 3, 4]
    assert examples.counts == {"train": 3, "protected": 2}


def test_it_keeps_everything_without_golden_facts(tiny_checkpoint):
    model, tokenizer = load_checkpoint(tiny_checkpoint)
    protected = load_corpus().intents[0]
    examples = ExampleSet()
    examples.train = [example(tokenizer, protected.questions[0], GENEROUS, 1, 1)]

    assert drop_golden_overrides(model, tokenizer, examples, []) == 0
    no_facts = [GoldenCase(protected.questions[0], protected.answer, ())]
    assert drop_golden_overrides(model, tokenizer, examples, no_facts) == 0
    assert len(examples.train) == 1


@pytest.mark.django_db
def test_a_run_whose_feedback_only_contradicts_golden_answers_fails_clearly(
    active_model_version, settings, tmp_path
):
    pin_promotable_hyperparameters(settings)
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    intent = load_corpus().intents[0]
    GoldenExample.objects.create(
        question=intent.eval_questions[0],
        expected_answer=intent.answer,
        required_facts=list(intent.facts),
    )
    for n, question in enumerate(intent.questions[:6]):
        store_rated_reply(question, intent.answer, -1, f"generous-{n}", correction=GENEROUS)
    run, _ = runs.request_training_run(
        trigger=TrainingRun.Trigger.COMMAND, overrides={}, enqueue=False
    )

    run = runs.execute_training_run(run.pk)

    assert run.status == TrainingRun.Status.FAILED
    assert "would overwrite golden answers" in run.error
    assert ModelVersion.objects.get(pk=active_model_version.pk).status == "active"
