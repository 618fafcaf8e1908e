"""Importing article records (``knowledge.importing``) into the knowledge base, all or nothing.

Each record finds its article by external id; a record without one finds the article of the
same title that has no external id either (the oldest, if several); otherwise it is a new
article. Importing the same file twice changes nothing the second time. A field the file does
not give (example questions, topic, the active flag) leaves an existing article's as it is. With
``replace``, every active article no record found is switched off (never deleted: its revisions
and the conversations grounded in it stay).

As ``do_save_article`` does, it encodes before the transaction that writes, never inside it,
but all at once: every passage of every new or changed article (and of an unchanged one not yet
embedded by the current encoder), repeats left out, fewest tokens first so that each batch pads
little, then one transaction locks the articles, works the changes out again, and writes
revisions, updates and new rows in bulk. Should someone have edited an article in between so
that a passage was not encoded, it encodes that one and tries again.

After a real import that changed anything, ``knowledge.signals.knowledge_imported`` is sent on
commit, and every web process re-reads the articles (``forget_index``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from django.db import models, transaction
from django.utils import timezone

from knowledge.encoder import current_encoder_name, get_encoder
from knowledge.importing.records import ArticleRecord
from knowledge.index import forget_index
from knowledge.models import (
    EMBEDDING_FIELDS,
    ArticleRevision,
    KnowledgeArticle,
    article_passages,
    embedding_values,
)
from knowledge.services import SAVE_ATTEMPTS, KnowledgeError
from knowledge.signals import knowledge_imported

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

ENCODE_CHUNK = 256  # passages encoded between two progress reports
WRITE_BATCH = 100
CONTENT_FIELDS = KnowledgeArticle.REVISED_FIELDS
AUTHOR_FIELDS = ("updated_by", "updated_at")


@dataclass(frozen=True)
class ArticleChange:
    """One article an import creates, updates, leaves or switches off."""

    title: str
    external_id: str = ""
    fields: tuple[str, ...] = ()  # updated: the fields that change
    article_id: int | None = None  # None: not written (a dry run's new article)


@dataclass(frozen=True)
class ImportResult:
    created: tuple[ArticleChange, ...] = ()
    updated: tuple[ArticleChange, ...] = ()
    unchanged: tuple[ArticleChange, ...] = ()
    switched_off: tuple[ArticleChange, ...] = ()
    embedded: int = 0  # articles whose passages are (or, in a dry run, would be) encoded
    dry_run: bool = False
    embed_seconds: float = 0.0
    write_seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.switched_off or self.embedded)

    def summary(self) -> str:
        """ "3 created, 1 updated, 0 switched off, 70 unchanged", or in a dry run "3 would be
        created, ..."."""
        would = "would be " if self.dry_run else ""
        return (
            f"{len(self.created)} {would}created, {len(self.updated)} {would}updated, "
            f"{len(self.switched_off)} {would}switched off, {len(self.unchanged)} unchanged"
        )

    def counts(self) -> dict[str, int]:
        return {
            "created": len(self.created),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "switched_off": len(self.switched_off),
            "embedded": self.embedded,
        }


@dataclass
class _Step:
    """What the import does to one article: ``article`` holds its new values."""

    kind: str  # "created", "updated", "unchanged" or "switched_off"
    article: KnowledgeArticle
    fields: tuple[str, ...] = ()
    needs_vectors: bool = False
    before: dict[str, object] = field(default_factory=dict)  # a revision's values

    @property
    def passages(self) -> tuple[str, ...]:
        article = self.article
        return tuple(article_passages(article.title, article.text, article.example_questions))

    def change(self) -> ArticleChange:
        article = self.article
        return ArticleChange(article.title, article.external_id, self.fields, article.pk)


def do_import_knowledge(
    records: Sequence[ArticleRecord],
    *,
    dry_run: bool,
    replace: bool,
    by: AbstractBaseUser | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Write ``records`` (already checked: a ``ReadResult`` without problems) into the
    knowledge base, or with ``dry_run`` only say what that would do.

    ``progress(done, total)`` is called as passages are encoded. Raises ``KnowledgeError`` when
    others keep editing the same articles while it encodes, SAVE_ATTEMPTS times in a row.
    """
    name = current_encoder_name()
    steps = _plan(records, replace=replace, encoder_name=name)
    if dry_run:
        return _result(steps, dry_run=True)
    vectors: dict[tuple[str, ...], np.ndarray] = {}
    embed_seconds = write_seconds = 0.0
    for _attempt in range(SAVE_ATTEMPTS):
        started = time.perf_counter()
        todo = [s.passages for s in steps if s.needs_vectors and s.passages not in vectors]
        vectors.update(encode_passages(todo, progress=progress))
        embed_seconds += time.perf_counter() - started
        started = time.perf_counter()
        with transaction.atomic():
            steps = _plan(records, replace=replace, encoder_name=name, for_update=True)
            encoded = all(s.passages in vectors for s in steps if s.needs_vectors)
            if encoded:
                _write(steps, vectors, encoder_name=name, by=by)
        write_seconds += time.perf_counter() - started
        if not encoded:
            continue  # edited by someone else since it was encoded: encode again
        result = _result(steps, embed_seconds=embed_seconds, write_seconds=write_seconds)
        if result.changed:  # on the commit of the caller's transaction, if it has one
            transaction.on_commit(forget_index)
            transaction.on_commit(partial(knowledge_imported.send, sender=None, result=result))
        return result
    raise KnowledgeError(
        f"Articles of the import were edited by someone else while it was encoding, "
        f"{SAVE_ATTEMPTS} times in a row; try again."
    )


def encode_passages(
    passage_lists: Sequence[tuple[str, ...]],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[tuple[str, ...], np.ndarray]:
    """Each list of passages → its (count, dimension) matrix, every distinct passage encoded
    once, in order of their tokens: a batch is padded to its longest passage, so sorted
    batches pad almost nothing (by characters, MiniLM padded a thousand articles' passages by
    18%; by tokens, under 1%)."""
    unique = list(dict.fromkeys(passage for passages in passage_lists for passage in passages))
    if not unique:
        return {}
    encoder = get_encoder()
    tokens = encoder.token_counts(unique)
    order = sorted(range(len(unique)), key=tokens.__getitem__)
    matrix = np.empty((len(unique), encoder.dimension), dtype=np.float32)
    for start in range(0, len(order), ENCODE_CHUNK):
        chunk = order[start : start + ENCODE_CHUNK]
        matrix[chunk] = encoder.encode([unique[index] for index in chunk])
        if progress is not None:
            progress(start + len(chunk), len(unique))
    row_of = {passage: row for row, passage in enumerate(unique)}
    return {
        passages: matrix[[row_of[passage] for passage in passages]] for passages in passage_lists
    }


def _plan(
    records: Sequence[ArticleRecord],
    *,
    replace: bool,
    encoder_name: str,
    for_update: bool = False,
) -> list[_Step]:
    """What the import does to each article, against the articles as stored now."""
    rows = KnowledgeArticle.objects.defer("embedding").annotate(
        has_embedding=models.ExpressionWrapper(
            models.Q(embedding__isnull=False), output_field=models.BooleanField()
        )
    )
    if for_update:
        rows = rows.select_for_update()
    by_external_id: dict[str, KnowledgeArticle] = {}
    by_title: dict[str, KnowledgeArticle] = {}
    stored = list(rows.order_by("-id"))
    for article in stored:
        if article.external_id:
            by_external_id[article.external_id] = article
        else:
            by_title[article.title] = article  # the oldest of equal titles wins
    steps = []
    found: set[int] = set()
    for record in records:
        if record.external_id:
            article = by_external_id.get(record.external_id)
        else:
            article = by_title.get(record.title)
        if article is None:
            steps.append(_Step("created", _new_article(record), needs_vectors=True))
            continue
        found.add(article.pk)
        steps.append(_update_step(article, record, encoder_name))
    if replace:
        for article in reversed(stored):  # oldest first, as the file lists them
            if article.pk not in found and article.is_active:
                before = _revision_values(article)
                article.is_active = False
                steps.append(_Step("switched_off", article, ("is_active",), before=before))
    return steps


def _new_article(record: ArticleRecord) -> KnowledgeArticle:
    return KnowledgeArticle(
        title=record.title,
        text=record.text,
        example_questions="\n".join(record.example_questions or ()),
        topic=record.topic or "",
        is_active=True if record.is_active is None else record.is_active,
        external_id=record.external_id,
    )


def _update_step(article: KnowledgeArticle, record: ArticleRecord, encoder_name: str) -> _Step:
    before = _revision_values(article)
    old_passages = article_passages(article.title, article.text, article.example_questions)
    article.title, article.text = record.title, record.text
    if record.topic is not None:
        article.topic = record.topic
    if record.example_questions is not None:
        article.example_questions = "\n".join(record.example_questions)
    if record.is_active is not None:
        article.is_active = record.is_active
    fields = tuple(name for name in CONTENT_FIELDS if getattr(article, name) != before[name])
    embedded = article.has_embedding and article.embedding_encoder == encoder_name
    needs_vectors = not embedded or article.passages != old_passages
    return _Step(
        "updated" if fields else "unchanged",
        article,
        fields,
        needs_vectors=needs_vectors,
        before=before,
    )


def _revision_values(article: KnowledgeArticle) -> dict[str, object]:
    return {
        **{name: getattr(article, name) for name in CONTENT_FIELDS},
        "updated_by_id": article.updated_by_id,
        "updated_at": article.updated_at,
    }


def _write(
    steps: list[_Step],
    vectors: dict[tuple[str, ...], np.ndarray],
    *,
    encoder_name: str,
    by: AbstractBaseUser | None,
) -> None:
    """Revisions, then updates grouped by the columns they write, then new articles."""
    now = timezone.now()
    revised = [s for s in steps if s.kind in ("updated", "switched_off")]
    ArticleRevision.objects.bulk_create(
        [ArticleRevision(article=s.article, **s.before) for s in revised], batch_size=WRITE_BATCH
    )
    groups: dict[tuple[str, ...], list[KnowledgeArticle]] = {}
    for step in steps:
        columns: tuple[str, ...] = ()
        if step.kind in ("updated", "switched_off"):
            step.article.updated_by = by
            step.article.updated_at = now
            columns += CONTENT_FIELDS + AUTHOR_FIELDS
        if step.needs_vectors:
            values = embedding_values(vectors[step.passages], encoder_name, now)
            for name, value in values.items():
                setattr(step.article, name, value)
            if step.kind != "created":
                columns += EMBEDDING_FIELDS
        if columns and step.kind != "created":
            groups.setdefault(columns, []).append(step.article)
    for columns, articles in groups.items():
        KnowledgeArticle.objects.bulk_update(articles, columns, batch_size=WRITE_BATCH)
    new = [s.article for s in steps if s.kind == "created"]
    for article in new:
        article.updated_by = by
    KnowledgeArticle.objects.bulk_create(new, batch_size=WRITE_BATCH)


def _result(
    steps: list[_Step],
    *,
    dry_run: bool = False,
    embed_seconds: float = 0.0,
    write_seconds: float = 0.0,
) -> ImportResult:
    def changes(kind: str) -> tuple[ArticleChange, ...]:
        return tuple(step.change() for step in steps if step.kind == kind)

    return ImportResult(
        created=changes("created"),
        updated=changes("updated"),
        unchanged=changes("unchanged"),
        switched_off=changes("switched_off"),
        embedded=sum(step.needs_vectors for step in steps),
        dry_run=dry_run,
        embed_seconds=embed_seconds,
        write_seconds=write_seconds,
    )
