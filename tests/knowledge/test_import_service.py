"""do_import_knowledge: all or nothing, idempotent by external id (or title), revisions kept,
--replace switching off, embedded as a save embeds, and announced once committed."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge import imports
from knowledge.importing import ArticleRecord
from knowledge.imports import do_import_knowledge
from knowledge.models import EMBEDDING_DTYPE, ArticleRevision, KnowledgeArticle
from knowledge.signals import knowledge_imported
from tests.knowledge.articles import add_article

pytestmark = pytest.mark.django_db


def record(title: str, text: str = "", **fields: object) -> ArticleRecord:
    return ArticleRecord(title=title, text=text or f"All about {title.lower()}.", **fields)


RECORDS = [
    record("Track order", external_id="kb-1", example_questions=("wheres my stuff",)),
    record("Return window", external_id="kb-2", topic="returns"),
    record("Payment methods", example_questions=("can i pay with paypal", "klarna?")),
]


def titles(changes) -> list[str]:
    return [change.title for change in changes]


def vectors(article: KnowledgeArticle) -> np.ndarray:
    flat = np.frombuffer(bytes(article.embedding), dtype=EMBEDDING_DTYPE)
    return flat.reshape(article.embedding_count, article.embedding_dimension)


@pytest.fixture
def announced():
    """The results knowledge_imported was sent with."""
    results = []

    def receive(sender, result, **kwargs):
        results.append(result)

    knowledge_imported.connect(receive)
    yield results
    knowledge_imported.disconnect(receive)


def test_it_creates_embedded_articles_as_a_save_would(
    tiny_encoder, staff_user, announced, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = do_import_knowledge(RECORDS, dry_run=False, replace=False, by=staff_user)

    assert titles(result.created) == ["Track order", "Return window", "Payment methods"]
    assert result.embedded == 3
    track = KnowledgeArticle.objects.get(external_id="kb-1")
    assert (track.title, track.example_questions, track.is_active) == (
        "Track order",
        "wheres my stuff",
        True,
    )
    assert track.updated_by == staff_user
    assert track.embedding_encoder == tiny_encoder.name
    np.testing.assert_allclose(vectors(track), tiny_encoder.encode(track.passages), atol=1e-6)
    payment = KnowledgeArticle.objects.get(title="Payment methods")
    assert payment.external_id == ""
    np.testing.assert_allclose(vectors(payment), tiny_encoder.encode(payment.passages), atol=1e-6)
    assert announced == [result]


def test_importing_the_same_records_again_changes_nothing(
    tiny_encoder, announced, django_capture_on_commit_callbacks, monkeypatch
):
    do_import_knowledge(RECORDS, dry_run=False, replace=False)
    before = list(KnowledgeArticle.objects.order_by("id").values())

    def never(*args, **kwargs):
        raise AssertionError("nothing needs encoding")

    monkeypatch.setattr(imports, "get_encoder", never)
    with django_capture_on_commit_callbacks(execute=True):
        result = do_import_knowledge(RECORDS, dry_run=False, replace=False)

    assert result.counts() == {
        "created": 0,
        "updated": 0,
        "unchanged": 3,
        "switched_off": 0,
        "embedded": 0,
    }
    assert list(KnowledgeArticle.objects.order_by("id").values()) == before
    assert ArticleRevision.objects.count() == 0
    assert announced == []  # nothing changed: nobody recalibrates


def test_it_updates_by_external_id_keeping_revisions_and_embeds_only_what_changed(
    tiny_encoder, staff_user
):
    do_import_knowledge(RECORDS, dry_run=False, replace=False)
    payment = KnowledgeArticle.objects.get(title="Payment methods")
    payment_embedding = bytes(payment.embedding)
    changed = [
        record(
            "Where is my order?",
            "New text.",
            external_id="kb-1",
            example_questions=("wheres my stuff",),
        ),
        record("Return window", external_id="kb-2", topic="refunds"),
        RECORDS[2],
    ]

    result = do_import_knowledge(changed, dry_run=False, replace=False, by=staff_user)

    assert [(c.title, c.fields) for c in result.updated] == [
        ("Where is my order?", ("title", "text")),
        ("Return window", ("topic",)),
    ]
    assert result.embedded == 1  # moving to another topic is not re-encoded
    track = KnowledgeArticle.objects.get(external_id="kb-1")
    assert (track.title, track.text, track.updated_by) == (
        "Where is my order?",
        "New text.",
        staff_user,
    )
    np.testing.assert_allclose(vectors(track), tiny_encoder.encode(track.passages), atol=1e-6)
    revision = track.revisions.get()
    assert (revision.title, revision.text) == ("Track order", "All about track order.")
    assert KnowledgeArticle.objects.get(external_id="kb-2").revisions.get().topic == "returns"
    assert bytes(KnowledgeArticle.objects.get(pk=payment.pk).embedding) == payment_embedding


def test_a_record_without_external_id_finds_the_article_of_its_title_without_one(tiny_encoder):
    written = add_article("Payment methods", "Old text.", questions="old question")
    add_article("Track order", "Kept.")
    KnowledgeArticle.objects.filter(title="Track order").update(external_id="zendesk-9")

    result = do_import_knowledge(
        [record("Payment methods", "New text."), record("Track order", "Another.")],
        dry_run=False,
        replace=False,
    )

    assert titles(result.updated) == ["Payment methods"]
    assert titles(result.created) == ["Track order"]  # that title's article has an external id
    payment = KnowledgeArticle.objects.get(pk=written.pk)
    assert payment.text == "New text."
    assert payment.example_questions == "old question"  # the record does not say: kept


def test_the_active_flag_is_written_when_given_and_kept_when_not(tiny_encoder):
    do_import_knowledge(
        [record("A", external_id="a", is_active=False), record("B", external_id="b")],
        dry_run=False,
        replace=False,
    )
    assert dict(KnowledgeArticle.objects.values_list("title", "is_active")) == {
        "A": False,
        "B": True,
    }

    do_import_knowledge([record("A", external_id="a")], dry_run=False, replace=False)
    assert not KnowledgeArticle.objects.get(title="A").is_active


def test_a_dry_run_says_what_would_change_and_writes_nothing(tiny_encoder, monkeypatch):
    add_article("Payment methods", "Old text.")
    monkeypatch.setattr(imports, "get_encoder", lambda: pytest.fail("a dry run encodes nothing"))
    before = list(KnowledgeArticle.objects.values())

    result = do_import_knowledge(RECORDS, dry_run=True, replace=True)

    assert result.dry_run
    assert titles(result.created) == ["Track order", "Return window"]
    assert titles(result.updated) == ["Payment methods"]
    assert result.embedded == 3
    assert list(KnowledgeArticle.objects.values()) == before
    assert ArticleRevision.objects.count() == 0


def test_replace_switches_off_the_active_articles_the_records_do_not_have(tiny_encoder, staff_user):
    do_import_knowledge(RECORDS, dry_run=False, replace=False)
    staff_written = add_article("Gift wrapping", "3.50 EUR.")
    inactive = add_article("Old promotion", "Gone.")
    inactive.is_active = False
    inactive.save()

    result = do_import_knowledge(RECORDS[:1], dry_run=False, replace=True, by=staff_user)

    assert titles(result.switched_off) == ["Return window", "Payment methods", "Gift wrapping"]
    assert titles(result.unchanged) == ["Track order"]
    assert set(KnowledgeArticle.objects.filter(is_active=True).values_list("title", flat=True)) == {
        "Track order"
    }
    gift = KnowledgeArticle.objects.get(pk=staff_written.pk)
    assert gift.updated_by == staff_user
    assert gift.revisions.get().is_active is True  # the version before, kept
    assert KnowledgeArticle.objects.count() == 5  # switched off, never deleted

    again = do_import_knowledge(RECORDS[:1], dry_run=False, replace=True)
    assert again.switched_off == ()


def test_an_article_edited_while_the_import_encodes_is_encoded_again(tiny_encoder, monkeypatch):
    do_import_knowledge(RECORDS[:1], dry_run=False, replace=False)
    encode = imports.encode_passages
    calls = []

    def encode_then_someone_edits(passage_lists, **kwargs):
        calls.append(len(passage_lists))
        if len(calls) == 1:
            KnowledgeArticle.objects.filter(external_id="kb-1").update(text="Edited meanwhile.")
        return encode(passage_lists, **kwargs)

    monkeypatch.setattr(imports, "encode_passages", encode_then_someone_edits)
    changed = [record("Track order", external_id="kb-1", topic="orders")]  # the topic alone

    result = do_import_knowledge(changed, dry_run=False, replace=False)

    assert calls == [0, 1]  # a topic needs no vectors; writing the file's text over the edit does
    assert [c.fields for c in result.updated] == [("text", "topic")]
    track = KnowledgeArticle.objects.get(external_id="kb-1")
    assert track.text == "All about track order."
    assert track.revisions.get().text == "Edited meanwhile."
    np.testing.assert_allclose(vectors(track), tiny_encoder.encode(track.passages), atol=1e-6)


def test_it_embeds_unchanged_articles_a_new_encoder_has_not_embedded(
    tiny_encoder, settings, second_tiny_encoder_dir
):
    do_import_knowledge(RECORDS, dry_run=False, replace=False)
    settings.KNOWLEDGE_ENCODER = str(second_tiny_encoder_dir)

    result = do_import_knowledge(RECORDS, dry_run=False, replace=False)

    assert len(result.unchanged) == 3
    assert result.embedded == 3
    assert KnowledgeArticle.objects.exclude(embedding_encoder=tiny_encoder.name).count() == 3
    assert ArticleRevision.objects.count() == 0


def test_progress_counts_distinct_passages(tiny_encoder):
    reports = []
    repeated = [
        record("A", external_id="a", example_questions=("same question", "other")),
        record("B", external_id="b", example_questions=("same question",)),
    ]

    do_import_knowledge(
        repeated, dry_run=False, replace=False, progress=lambda *done: reports.append(done)
    )

    assert reports == [(4, 4)]  # two titles-and-texts, and "same question" encoded once
