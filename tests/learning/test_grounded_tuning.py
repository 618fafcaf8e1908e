"""The base model's one-time tuning for the task, on the tiny starter model and the tiny encoder.

The tiny model's template renders no system turn, so its prompts hold the question alone; the
examples, the frozen layers, the training, the checkpoint and the registration are the real ones.
"""

from __future__ import annotations

import pytest
import torch

from knowledge.answering import decline_text
from knowledge.demo.corpus import load_corpus
from knowledge.models import KnowledgeArticle
from knowledge.services import do_save_article, do_seed_articles
from learning import grounded_tuning
from learning.grounded_tuning import (
    TuningConfig,
    TuningError,
    load_decline_questions,
    tune,
    tune_base_version,
    tuning_examples,
)
from learning.models import ModelVersion
from learning.versions import anchor_for, register_version
from serving.checkpoints import load_checkpoint, read_metadata

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = TuningConfig(
    questions_per_intent=2, epochs=3, trained_layers=1, batch_size=16, learning_rate=1e-2
)


@pytest.fixture
def corpus():
    return load_corpus().subset(4)


@pytest.fixture
def articles(tiny_encoder, settings, corpus):
    """The corpus's four intents as articles, as seed_knowledge_base adds them; three of them in
    every prompt."""
    settings.KNOWLEDGE_TOP_K = 3
    do_seed_articles(corpus)
    return {article.title: article for article in KnowledgeArticle.objects.all()}


@pytest.fixture
def base(tiny_checkpoint, settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    return register_version("tiny-base", str(tiny_checkpoint), ModelVersion.Source.PRETRAINED)


def test_it_prompts_with_the_articles_retrieved_and_declines_the_questions_it_should(
    articles, corpus
):
    examples = tuning_examples(corpus, CONFIG)

    declines = load_decline_questions()
    answers = [example for example in examples if not example.declines]
    refusals = [example for example in examples if example.declines]
    assert examples == answers + refusals
    assert len(refusals) == len(declines.off_topic) + len(declines.person_requests)
    assert len(answers) == 8  # two questions an intent, each retrieving its own article
    by_answer = {intent.answer: intent for intent in corpus.intents}
    for example in answers:
        intent = by_answer[example.reply]
        system, user = example.prompt
        assert (system["role"], user["role"]) == ("system", "user")
        assert user["content"] in intent.questions  # training questions only
        assert sum(title in system["content"] for title in articles) == 3  # KNOWLEDGE_TOP_K
        assert intent.answer in system["content"]
    topics = sorted({intent.topic for intent in corpus.intents})
    off_topic, person = refusals[0], refusals[-1]
    assert off_topic.prompt[1]["content"] == declines.off_topic[0]
    assert off_topic.reply == decline_text(person_asked=False, topics=topics)
    assert person.prompt[1]["content"] == declines.person_requests[-1]
    assert person.reply == decline_text(person_asked=True, topics=topics)
    assert all(example.declines for example in refusals)
    held_back = set(declines.off_topic_held_back)
    assert not held_back & {example.prompt[1]["content"] for example in examples}


def test_it_leaves_out_a_question_whose_articles_do_not_hold_its_answer(articles, corpus):
    # Staff rewrote one article: the corpus's answer is in no article, so nothing teaches the
    # model to give it (it answers from the articles it is shown, never from memory).
    track = articles["Track order"]
    old_answer = track.text
    track.text = "Track your parcel in the Northwind app under Orders."
    do_save_article(track)

    answers = [example for example in tuning_examples(corpus, CONFIG) if not example.declines]

    assert len(answers) == 6
    assert all(example.reply in example.prompt[0]["content"] for example in answers)
    assert old_answer not in {example.reply for example in answers}


def test_it_trains_the_top_layers_only_and_the_loss_falls(articles, corpus, tiny_checkpoint):
    model, tokenizer = load_checkpoint(tiny_checkpoint)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    lines = []

    result = tune(model, tokenizer, tuning_examples(corpus, CONFIG), CONFIG, log=lines.append)

    after = model.state_dict()
    changed = {name for name, tensor in after.items() if not tensor.equal(before[name])}
    top_layer = {name for name in before if name.startswith("model.layers.1.")}
    assert changed == top_layer | {"model.norm.weight"}
    assert len(result.losses) == 3 * 3  # 48 examples in batches of 16, three epochs
    first_epoch, last_epoch = sum(result.losses[:3]), sum(result.losses[-3:])  # same batches
    assert last_epoch < 0.75 * first_epoch
    assert all(parameter.requires_grad for parameter in model.parameters())
    assert lines[0].startswith("  frozen layers, batch 1/3  ")
    assert lines[-1].startswith(f"  step 9/9  loss {result.losses[-1]:.4f}  ")
    assert lines[-1].endswith(" elapsed, about 0m00s left")


def test_it_registers_the_tuned_model_as_a_root_and_activates_it(articles, corpus, base):
    lines = []

    tuned = tune_base_version(base, config=CONFIG, corpus=corpus, log=lines.append)

    assert tuned.name.startswith("tiny-base-grounded-")
    assert (tuned.source, tuned.status) == ("trained", "active")
    # The loop's θ₀ is the tuned model: its runs are pulled toward it, not toward the base.
    assert (tuned.parent, tuned.anchor) == (None, None)
    assert anchor_for(tuned, "base") == tuned
    base.refresh_from_db()
    assert base.status == "ready"  # θ₀ stays registered, and answers nobody
    metadata = read_metadata(tuned.checkpoint_path)
    assert (metadata["base_model"], metadata["tuning_examples"]) == ("tiny-base", 48)
    assert tuned.metrics["tuning_declines"] == 40
    assert tuned.metrics["tuning_final_loss"] == metadata["tuning_final_loss"]
    assert any(line.startswith("  step 9/9  loss ") for line in lines)
    assert lines[-1].startswith("Tuned in ")
    tuned_layer = load_checkpoint(tuned.checkpoint_path)[0].model.layers[1]
    base_layer = load_checkpoint(base.checkpoint_path)[0].model.layers[1]
    assert not torch.equal(tuned_layer.mlp.up_proj.weight, base_layer.mlp.up_proj.weight)


def test_it_reuses_a_tuned_checkpoint_of_the_same_base_and_examples(
    articles, corpus, base, monkeypatch
):
    first = tune_base_version(base, config=CONFIG, corpus=corpus, log=lambda line: None)
    first.delete()  # a new database on the same CHECKPOINT_DIR
    monkeypatch.setattr(grounded_tuning, "tune", lambda *args, **kwargs: pytest.fail("tuned"))

    again = tune_base_version(base, config=CONFIG, corpus=corpus, log=lambda line: None)

    assert (again.name, again.checkpoint_path) == (first.name, first.checkpoint_path)
    assert again.status == "active"
    assert again.metrics["tuning_examples"] == 48


def test_it_refuses_to_tune_without_a_knowledge_base(tiny_encoder, corpus, base):
    with pytest.raises(TuningError) as refused:
        tune_base_version(base, config=CONFIG, corpus=corpus, log=lambda line: None)

    assert str(refused.value) == (
        "The knowledge base has no embedded article to ground the base model in: run "
        "`manage.py seed_knowledge_base` first (bin/start does)."
    )
    assert ModelVersion.objects.get() == base


def test_the_migration_makes_an_earlier_tuned_base_the_anchor_of_its_runs(base, tmp_path):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("learning.migrations.0006_tuned_base_is_its_own_root")
    tuned = register_version(
        "tiny-base-grounded-0123456789", str(tmp_path), "trained", parent=base, anchor=base
    )
    run = register_version("run-1-a1", str(tmp_path), "trained", parent=tuned, anchor=base)

    migration.tuned_bases_become_roots(apps, None)

    tuned.refresh_from_db()
    run.refresh_from_db()
    assert (tuned.parent, tuned.anchor) == (None, None)
    assert (run.parent, run.anchor) == (tuned, tuned)
    assert anchor_for(run, "base") == tuned
