"""seed_knowledge_base (idempotent, --force) and embed_articles (missing, --all)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from knowledge import services
from knowledge.demo.corpus import CORPUS_PATH, load_corpus
from knowledge.models import KnowledgeArticle
from knowledge.services import do_save_article, intent_title

pytestmark = pytest.mark.django_db

# The corpus's first intents (two topics): each article embeds ~25 example questions, and the
# whole corpus's 1,500 take the tiny encoder seconds per seeding.
INTENTS = load_corpus().intents[:12]


@pytest.fixture
def corpus_path(tmp_path) -> str:
    """A corpus file of INTENTS."""
    data = json.loads(CORPUS_PATH.read_text())
    data["intents"] = data["intents"][: len(INTENTS)]
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps(data))
    return str(path)


def run_command(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


def test_it_makes_readable_titles_from_intent_names():
    assert intent_title("track_order") == "Track order"
    assert intent_title("po_box_delivery") == "PO box delivery"
    assert intent_title("invoice_vat") == "Invoice VAT"


def test_seeding_adds_one_embedded_article_per_intent(corpus_path, tiny_encoder):
    output = run_command("seed_knowledge_base", "--corpus", corpus_path)

    assert f"knowledge base: {len(INTENTS)}/{len(INTENTS)}" in output
    assert f"{len(INTENTS)} added" in output
    assert KnowledgeArticle.objects.count() == len(INTENTS)
    assert not KnowledgeArticle.objects.exclude(embedding_encoder=tiny_encoder.name).exists()
    track = KnowledgeArticle.objects.get(title="Track order")
    first = INTENTS[0]
    assert (track.text, track.topic, track.is_active) == (first.answer, first.topic, True)


def test_seeding_gives_each_article_its_intents_training_questions_never_the_held_out_ones(
    corpus_path, tiny_encoder
):
    run_command("seed_knowledge_base", "--corpus", corpus_path)

    for intent in INTENTS:
        article = KnowledgeArticle.objects.get(title=intent_title(intent.name))
        assert article.example_questions.splitlines() == list(intent.questions)
        assert not set(intent.eval_questions) & set(article.example_questions.splitlines())
        assert article.embedding_count == 1 + len(set(intent.questions))


def test_seeding_again_changes_nothing_and_loads_no_encoder(corpus_path, tiny_encoder, monkeypatch):
    run_command("seed_knowledge_base", "--corpus", corpus_path)
    track = KnowledgeArticle.objects.get(title="Track order")
    track.text = "Staff's own words."
    do_save_article(track)
    before = KnowledgeArticle.objects.get(pk=track.pk)
    monkeypatch.setattr(services, "get_encoder", pytest.fail)

    output = run_command("seed_knowledge_base", "--corpus", corpus_path)

    assert "nothing seeded (0 embedded)" in output
    assert KnowledgeArticle.objects.count() == len(INTENTS)
    after = KnowledgeArticle.objects.get(pk=track.pk)
    assert (after.text, after.updated_at) == ("Staff's own words.", before.updated_at)


def test_force_writes_the_corpus_back_and_keeps_the_staff_text_as_a_revision(
    corpus_path, tiny_encoder
):
    run_command("seed_knowledge_base", "--corpus", corpus_path)
    track = KnowledgeArticle.objects.get(title="Track order")
    track.text = "Staff's own words."
    do_save_article(track)
    returns = KnowledgeArticle.objects.get(title=intent_title(INTENTS[1].name))
    returns.example_questions = ""  # as an article seeded before there were example questions
    do_save_article(returns)
    KnowledgeArticle.objects.filter(title="Gift wrapping").delete()
    do_save_article(KnowledgeArticle(title="Store opening", text="9 to 6."))

    output = run_command("seed_knowledge_base", "--corpus", corpus_path, "--force")

    assert "1 added, 2 updated" in output
    assert KnowledgeArticle.objects.count() == len(INTENTS) + 1  # the staff's article stays
    track.refresh_from_db()
    assert track.text == INTENTS[0].answer
    assert track.revisions.first().text == "Staff's own words."
    returns.refresh_from_db()
    assert returns.example_questions.splitlines() == list(INTENTS[1].questions)
    assert returns.embedding_count == 1 + len(set(INTENTS[1].questions))
    again = run_command("seed_knowledge_base", "--corpus", corpus_path, "--force")
    assert again.count("0 added, 0 updated") == 1


def test_embed_articles_embeds_the_missing_ones_or_all(corpus_path, tiny_encoder):
    run_command("seed_knowledge_base", "--corpus", corpus_path)
    KnowledgeArticle.objects.filter(topic="orders").update(embedding=None, embedded_at=None)
    missing = sum(intent.topic == "orders" for intent in INTENTS)

    output = run_command("embed_articles")
    assert f"embedded {missing}/{missing}" in output
    assert f"{missing} article(s) embedded by {tiny_encoder.name}." in output
    assert not KnowledgeArticle.objects.filter(embedding__isnull=True).exists()

    assert "0 article(s) embedded" in run_command("embed_articles")
    assert f"{len(INTENTS)} article(s) embedded" in run_command("embed_articles", "--all")


def test_seeding_embeds_articles_left_by_another_encoder(
    corpus_path, tiny_encoder, settings, second_tiny_encoder_dir
):
    run_command("seed_knowledge_base", "--corpus", corpus_path)
    settings.KNOWLEDGE_ENCODER = str(second_tiny_encoder_dir)

    output = run_command("seed_knowledge_base", "--corpus", corpus_path)

    assert f"nothing seeded ({len(INTENTS)} embedded)" in output
    assert not KnowledgeArticle.objects.filter(embedding_encoder=tiny_encoder.name).exists()
