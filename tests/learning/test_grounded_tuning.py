"""The base model's one-time tuning for the task, on the tiny starter model and the tiny encoder.

The tiny model's template renders no system turn, so its prompts hold the question alone; the
examples, the frozen layers, the training, the checkpoint and the registration are the real ones.
"""

from __future__ import annotations

import pytest
import torch

from knowledge.answering import decline_text
from knowledge.models import KnowledgeArticle
from knowledge.services import do_save_article
from learning import grounded_tuning
from learning.grounded_tuning import (
    TuningConfig,
    TuningError,
    load_decline_questions,
    tune,
    tune_base_version,
    tuning_data,
    tuning_examples,
)
from learning.models import ModelVersion
from learning.versions import anchor_for, register_version
from serving.checkpoints import load_checkpoint, read_metadata

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = TuningConfig(
    questions_per_intent=2, epochs=3, trained_layers=1, batch_size=16, learning_rate=1e-2
)
# A business nobody on the team wrote the product for: a bicycle workshop.
ARTICLES = {
    "Service prices": (
        "repairs",
        "A basic service costs 49 EUR and a full service 89 EUR, parts extra.",
        ["how much is a service", "price of a full service", "what does a tune-up cost"],
    ),
    "Opening times": (
        "visits",
        "The workshop is open Tue-Sat 10:00-18:00; no appointment is needed for small repairs.",
        ["when are you open", "are you open on monday", "do i need an appointment"],
    ),
    "Flat tyres": (
        "repairs",
        "We fix a flat tyre while you wait for 15 EUR, inner tube included.",
        ["can you fix a puncture", "how much to repair a flat", "my tyre is flat"],
    ),
    "E-bike batteries": (
        "e-bikes",
        "We test e-bike batteries for free and replace cells of Bosch and Shimano packs.",
        ["can you check my e-bike battery", "my battery dies quickly", "do you replace cells"],
    ),
}


@pytest.fixture
def articles(tiny_encoder, settings):
    """The workshop's four articles with three example questions each; three of them in every
    prompt."""
    settings.KNOWLEDGE_TOP_K = 3
    for title, (topic, text, questions) in ARTICLES.items():
        do_save_article(
            KnowledgeArticle(
                title=title, text=text, topic=topic, example_questions="\n".join(questions)
            )
        )
    return {article.title: article for article in KnowledgeArticle.objects.all()}


@pytest.fixture
def base(tiny_checkpoint, settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    return register_version("tiny-base", str(tiny_checkpoint), ModelVersion.Source.PRETRAINED)


def test_it_prompts_with_the_articles_retrieved_and_declines_the_questions_it_should(articles):
    data = tuning_data(CONFIG)
    examples = data.examples

    declines = load_decline_questions()
    answers = [example for example in examples if not example.declines]
    refusals = [example for example in examples if example.declines]
    assert examples == answers + refusals
    assert len(refusals) == len(declines.off_topic) + len(declines.person_requests)
    assert 0 < len(answers) <= 8  # two questions an article, when it retrieves its own article
    by_text = {text: questions for _, text, questions in ARTICLES.values()}
    trained = set()
    for example in answers:
        system, user = example.prompt
        assert (system["role"], user["role"]) == ("system", "user")
        assert user["content"] in by_text[example.reply]  # the article's example questions
        assert sum(title in system["content"] for title in articles) == 3  # KNOWLEDGE_TOP_K
        assert example.reply in system["content"]  # answered from the article shown
        trained.add(user["content"])
    # One more question of each article is held out for the gate, never trained on.
    assert len(data.held_out) == 4
    assert not trained & {item.question for item in data.held_out}
    assert {item.article_text for item in data.held_out} == set(by_text)
    topics = sorted({topic for topic, _, _ in ARTICLES.values()})
    off_topic, person = refusals[0], refusals[-1]
    assert off_topic.prompt[1]["content"] == declines.off_topic[0]
    assert off_topic.reply == decline_text(person_asked=False, topics=topics)
    assert person.prompt[1]["content"] == declines.person_requests[-1]
    assert person.reply == decline_text(person_asked=True, topics=topics)
    assert all(example.declines for example in refusals)
    held_back = set(declines.off_topic_held_back)
    assert not held_back & {example.prompt[1]["content"] for example in examples}


def test_the_declines_speak_in_the_business_profiles_words(articles):
    from knowledge.models import BusinessProfile

    BusinessProfile.objects.create(pk=1, contact="workshop@spokes.example", helps_with="bikes")

    refusals = [example for example in tuning_examples(CONFIG) if example.declines]

    assert "questions about bikes" in refusals[0].reply
    assert "workshop@spokes.example" in refusals[0].reply


def test_it_leaves_out_a_question_whose_articles_do_not_hold_its_article(articles, settings):
    # With one article shown, an example question that retrieves another article teaches
    # nothing: the model answers from the article it is shown, never from memory.
    settings.KNOWLEDGE_TOP_K = 1

    answers = [example for example in tuning_examples(CONFIG) if not example.declines]

    assert all(example.reply in example.prompt[0]["content"] for example in answers)
    assert all(example.prompt[0]["content"].count("\n1. ") == 1 for example in answers)


def test_it_trains_the_top_layers_only_and_the_loss_falls(articles, tiny_checkpoint):
    model, tokenizer = load_checkpoint(tiny_checkpoint)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    lines, steps = [], []
    examples = tuning_examples(CONFIG)

    result = tune(
        model,
        tokenizer,
        examples,
        CONFIG,
        log=lines.append,
        progress=lambda step, total, loss: steps.append((step, total)),
    )

    after = model.state_dict()
    changed = {name for name, tensor in after.items() if not tensor.equal(before[name])}
    top_layer = {name for name in before if name.startswith("model.layers.1.")}
    assert changed == top_layer | {"model.norm.weight"}
    batches = -(-len(examples) // 16)
    assert len(result.losses) == 3 * batches  # three epochs
    # The frozen layers' pass, a batch at a time, then the steps: progress throughout.
    assert steps == [(step, 4 * batches) for step in range(1, 4 * batches + 1)]
    first_epoch = sum(result.losses[:batches])
    last_epoch = sum(result.losses[-batches:])  # the same batches, in another order
    assert last_epoch < 0.75 * first_epoch
    assert all(parameter.requires_grad for parameter in model.parameters())
    assert lines[0].startswith(f"  frozen layers, batch 1/{batches}  ")
    assert lines[-1].startswith(f"  step {3 * batches}/{3 * batches}  loss ")
    assert lines[-1].endswith(" elapsed, about 0m00s left")


def test_it_registers_the_tuned_model_as_a_root_and_activates_it(articles, base):
    lines = []
    examples = tuning_examples(CONFIG)

    tuned = tune_base_version(base, config=CONFIG, log=lines.append)

    assert tuned.name.startswith("tiny-base-grounded-")
    assert (tuned.source, tuned.status) == ("trained", "active")
    # The loop's θ₀ is the tuned model: its runs are pulled toward it, not toward the base.
    assert (tuned.parent, tuned.anchor) == (None, None)
    assert anchor_for(tuned, "base") == tuned
    base.refresh_from_db()
    assert base.status == "ready"  # θ₀ stays registered, and answers nobody
    metadata = read_metadata(tuned.checkpoint_path)
    assert (metadata["base_model"], metadata["tuning_examples"]) == ("tiny-base", len(examples))
    assert tuned.metrics["tuning_declines"] == sum(e.declines for e in examples)
    assert tuned.metrics["tuning_final_loss"] == metadata["tuning_final_loss"]
    assert any(line.startswith("  step ") for line in lines)
    assert lines[-1].startswith("Tuned in ")
    tuned_layer = load_checkpoint(tuned.checkpoint_path)[0].model.layers[1]
    base_layer = load_checkpoint(base.checkpoint_path)[0].model.layers[1]
    assert not torch.equal(tuned_layer.mlp.up_proj.weight, base_layer.mlp.up_proj.weight)


def test_it_reuses_a_tuned_checkpoint_of_the_same_base_and_examples(articles, base, monkeypatch):
    first = tune_base_version(base, config=CONFIG, log=lambda line: None)
    first.delete()  # a new database on the same CHECKPOINT_DIR
    monkeypatch.setattr(grounded_tuning, "tune", lambda *args, **kwargs: pytest.fail("tuned"))

    again = tune_base_version(base, config=CONFIG, log=lambda line: None)

    assert (again.name, again.checkpoint_path) == (first.name, first.checkpoint_path)
    assert again.status == "active"
    assert again.metrics["tuning_examples"] == first.metrics["tuning_examples"]


def test_it_refuses_to_tune_without_a_knowledge_base(tiny_encoder, base):
    with pytest.raises(TuningError) as refused:
        tune_base_version(base, config=CONFIG, log=lambda line: None)

    assert "knowledge base" in str(refused.value)
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
