"""Saving articles: embedded when created, each edit kept as a revision, re-embedded if needed.

An article's embedding is one vector per passage: its title and text, then each example question.
"""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.models import EMBEDDING_DTYPE, ArticleRevision, KnowledgeArticle
from knowledge.services import do_embed_articles, do_save_article
from tests.knowledge.articles import ARTICLES, add_article

pytestmark = pytest.mark.django_db


def reload(article: KnowledgeArticle) -> KnowledgeArticle:
    return KnowledgeArticle.objects.get(pk=article.pk)


def vectors(article: KnowledgeArticle) -> np.ndarray:
    """The stored (count, dimension) matrix."""
    flat = np.frombuffer(bytes(article.embedding), dtype=EMBEDDING_DTYPE)
    return flat.reshape(article.embedding_count, article.embedding_dimension)


def test_it_embeds_a_new_article_with_the_current_encoder(tiny_encoder, staff_user):
    article = reload(add_article("Track order", by=staff_user))

    assert article.updated_by == staff_user
    assert article.embedding_encoder == tiny_encoder.name
    assert (article.embedding_count, article.embedding_dimension) == (1, tiny_encoder.dimension)
    expected = tiny_encoder.encode([f"Track order\n\n{ARTICLES['Track order'][1]}"])
    np.testing.assert_allclose(vectors(article), expected, rtol=0, atol=1e-6)
    assert article.revisions.count() == 0  # a new article has no earlier version


def test_it_embeds_the_title_and_text_and_each_example_question(tiny_encoder):
    article = add_article(
        "Track order", questions="  where is my parcel?\n\ntrack my order\nwhere is my parcel?\n"
    )

    stored = reload(article)
    passages = [
        f"Track order\n\n{ARTICLES['Track order'][1]}",
        "where is my parcel?",  # stripped, blank lines and repeats left out
        "track my order",
    ]
    assert stored.passages == passages
    assert stored.embedding_count == 3
    np.testing.assert_allclose(vectors(stored), tiny_encoder.encode(passages), atol=1e-6)


def test_editing_the_example_questions_keeps_a_revision_and_embeds_again(tiny_encoder):
    article = add_article("Track order", questions="where is my parcel?")
    first = reload(article)
    article.example_questions = "where is my parcel?\nhas my order shipped yet?"
    do_save_article(article)

    edited = reload(article)
    assert edited.embedding_count == 3
    np.testing.assert_allclose(vectors(edited)[:2], vectors(first), atol=1e-6)
    np.testing.assert_allclose(
        vectors(edited)[2], tiny_encoder.encode(["has my order shipped yet?"])[0], atol=1e-6
    )
    assert article.revisions.get().example_questions == "where is my parcel?"


def test_it_keeps_the_previous_version_and_embeds_the_new_text(
    tiny_encoder, staff_user, customer_user
):
    article = add_article("Track order", by=customer_user)
    first = reload(article)
    article.text = "Every order ships with a DHL tracking link by email."
    do_save_article(article, by=staff_user)

    edited = reload(article)
    assert edited.text == "Every order ships with a DHL tracking link by email."
    assert edited.updated_by == staff_user
    assert edited.embedded_at > first.embedded_at
    assert not np.allclose(vectors(edited), vectors(first))
    revision = ArticleRevision.objects.get(article=article)
    assert (revision.title, revision.text, revision.topic, revision.is_active) == (
        "Track order",
        ARTICLES["Track order"][1],
        "orders",
        True,
    )
    assert (revision.updated_by, revision.updated_at) == (customer_user, first.updated_at)


def test_it_does_not_encode_again_when_only_the_active_flag_or_topic_changes(
    tiny_encoder, staff_user, monkeypatch
):
    article = add_article("Track order")
    embedded = reload(article)
    monkeypatch.setattr(type(tiny_encoder), "encode", pytest.fail)

    article.is_active = False
    do_save_article(article, by=staff_user)
    article.topic = "shipping"
    do_save_article(article, by=staff_user)

    edited = reload(article)
    assert (edited.is_active, edited.topic) == (False, "shipping")
    assert (edited.embedding, edited.embedded_at) == (embedded.embedding, embedded.embedded_at)
    revisions = list(article.revisions.order_by("id").values_list("topic", "is_active"))
    assert revisions == [("orders", True), ("orders", False)]


def test_a_save_that_changes_nothing_writes_nothing(tiny_encoder, staff_user, customer_user):
    article = add_article("Track order", by=customer_user)
    before = reload(article)

    do_save_article(reload(article), by=staff_user)

    after = reload(article)
    assert (after.updated_at, after.updated_by) == (before.updated_at, customer_user)
    assert article.revisions.count() == 0


def test_a_new_encoder_embeds_an_unchanged_article_again_on_save(
    tiny_encoder, settings, second_tiny_encoder_dir
):
    article = add_article("Track order")
    settings.KNOWLEDGE_ENCODER = str(second_tiny_encoder_dir)

    do_save_article(reload(article))

    edited = reload(article)
    assert edited.embedding_encoder not in ("", tiny_encoder.name)
    assert edited.embedding_encoder.startswith("tiny-encoder:")
    assert article.revisions.count() == 0  # the content did not change


def test_it_embeds_the_missing_and_outdated_articles_or_all(
    tiny_encoder, settings, second_tiny_encoder_dir
):
    track, returns = add_article("Track order"), add_article("Return window")
    KnowledgeArticle.objects.filter(pk=track.pk).update(embedding=None, embedded_at=None)

    assert do_embed_articles() == 1
    assert reload(track).embedding_encoder == tiny_encoder.name
    assert do_embed_articles() == 0
    assert do_embed_articles(only_missing=False) == 2

    settings.KNOWLEDGE_ENCODER = str(second_tiny_encoder_dir)
    done: list[tuple[int, int]] = []
    assert do_embed_articles(progress=lambda n, total: done.append((n, total))) == 2
    assert done == [(2, 2)]
    assert reload(returns).embedding_encoder != tiny_encoder.name


def test_embedding_all_leaves_an_article_edited_meanwhile_alone(tiny_encoder, monkeypatch):
    article = add_article("Track order")
    encode = type(tiny_encoder).encode

    def encode_while_staff_edit(self, texts):
        vectors = encode(self, texts)
        KnowledgeArticle.objects.filter(pk=article.pk).update(text="Edited meanwhile.")
        return vectors

    monkeypatch.setattr(type(tiny_encoder), "encode", encode_while_staff_edit)

    assert do_embed_articles(only_missing=False) == 0


def test_deleting_an_article_deletes_its_revisions(tiny_encoder):
    article = add_article("Track order")
    article.text = "Changed."
    do_save_article(article)
    assert ArticleRevision.objects.count() == 1

    article.delete()

    assert ArticleRevision.objects.count() == 0


def test_a_save_racing_another_editor_embeds_the_text_it_writes(tiny_encoder, monkeypatch):
    from knowledge import services

    article = add_article("Track order")
    stored = services._stored
    reads = []

    def stored_then_someone_saves(pk, *, for_update=False):
        row = stored(pk, for_update=for_update)
        reads.append(for_update)
        if reads == [False]:  # between our read and our lock, another editor saves
            KnowledgeArticle.objects.filter(pk=pk).update(text="Another editor's text.")
        return row

    monkeypatch.setattr(services, "_stored", stored_then_someone_saves)
    article.topic = "shipping"  # our text is the original one: nothing to encode at first

    do_save_article(article)

    assert reads == [False, True, False, True]  # it read again and encoded
    saved = reload(article)
    assert (saved.text, saved.topic) == (ARTICLES["Track order"][1], "shipping")
    np.testing.assert_allclose(vectors(saved), tiny_encoder.encode(saved.passages), atol=1e-6)
    assert article.revisions.get().text == "Another editor's text."
