"""Knowledge-base actions: saving an article (with its revision and embedding), embedding them all.

The admin, the commands and any code that edits articles call these, so that every edit keeps
the previous version as an ``ArticleRevision`` and every article's embedding matches its text.

Encoding takes milliseconds (a second or two when the encoder is first loaded), so it happens
before the transaction that writes, never inside it: ``do_save_article`` reads the stored row,
encodes the new title, text and example questions if they differ from it (or it was embedded by
another encoder), then locks the row and writes the revision, the content and the embedding in
one transaction. If someone else saved the same article in between, so that the vectors it kept
no longer fit, it starts again. ``do_embed_articles`` writes each article's vectors with a
conditional UPDATE that only matches while its title, text and example questions are still the
ones it encoded.

The encoder is loaded only to encode: saving an article whose text did not change, or seeding
a knowledge base that is already embedded (at every start-up), does not load it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from knowledge.encoder import current_encoder_name, get_encoder
from knowledge.index import forget_index
from knowledge.models import (
    EMBEDDING_FIELDS,
    ArticleRevision,
    KnowledgeArticle,
    article_passages,
    embedding_values,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from knowledge.demo.corpus import Corpus

SAVE_ATTEMPTS = 3
EMBED_BATCH = 32


class KnowledgeError(Exception):
    """An edit that cannot be carried out."""


def do_save_article(
    article: KnowledgeArticle, *, by: AbstractBaseUser | None = None
) -> KnowledgeArticle:
    """Save ``article`` (new, or edited in memory) as written by ``by``.

    Changing the title, text, example questions, topic or active flag stores the previous
    values as a revision; a save that changes none of them writes nothing. Only a new title,
    text or example questions (or a new encoder) is encoded: switching an article off and on, or
    moving it to another topic, is not.
    """
    name = current_encoder_name()
    for _attempt in range(SAVE_ATTEMPTS):
        vectors = None
        if not _embedding_fits(_stored(article.pk), article, name):
            vectors = get_encoder().encode(article.passages)
        with transaction.atomic():
            stored = _stored(article.pk, for_update=True)
            if vectors is None and not _embedding_fits(stored, article, name):
                continue  # saved by someone else since it was read: encode again
            if vectors is not None:
                for field, value in embedding_values(vectors, name, timezone.now()).items():
                    setattr(article, field, value)
            else:
                for field in EMBEDDING_FIELDS:
                    setattr(article, field, getattr(stored, field))
            revised = stored is not None and _revised(stored, article)
            if stored is not None and not revised and vectors is None:
                return article  # nothing changed: no revision, no new author
            if revised:
                _keep_revision(stored)
            article.updated_by = by
            article.save()
            transaction.on_commit(forget_index)
        return article
    raise KnowledgeError(
        f"“{article.title}” was saved by someone else at the same time, {SAVE_ATTEMPTS} times "
        "in a row; try again."
    )


def do_embed_articles(
    articles: QuerySet[KnowledgeArticle] | None = None,
    *,
    only_missing: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Embed ``articles`` (default: all of them) with the current encoder; how many were.

    ``only_missing`` leaves out those already embedded by this encoder. An article edited while
    this runs keeps the embedding its save wrote.
    """
    name = current_encoder_name()
    todo = KnowledgeArticle.objects.all() if articles is None else articles
    if only_missing:
        todo = todo.filter(Q(embedding__isnull=True) | ~Q(embedding_encoder=name))
    rows = list(todo.order_by("id").values_list("id", "title", "text", "example_questions"))
    if not rows:
        return 0
    encoder = get_encoder()
    embedded = 0
    for start in range(0, len(rows), EMBED_BATCH):
        batch = rows[start : start + EMBED_BATCH]
        passages = [article_passages(title, text, questions) for _, title, text, questions in batch]
        vectors = encoder.encode([passage for article in passages for passage in article])
        ends = np.cumsum([len(article) for article in passages])
        for (pk, title, text, questions), matrix in zip(
            batch, np.split(vectors, ends[:-1]), strict=True
        ):
            current = KnowledgeArticle.objects.filter(
                pk=pk, title=title, text=text, example_questions=questions
            )
            embedded += current.update(**embedding_values(matrix, encoder.name, timezone.now()))
        if progress is not None:
            progress(start + len(batch), len(rows))
    if embedded:
        forget_index()
    return embedded


def _stored(pk: int | None, *, for_update: bool = False) -> KnowledgeArticle | None:
    if pk is None:
        return None
    rows = KnowledgeArticle.objects.select_for_update() if for_update else KnowledgeArticle.objects
    return rows.filter(pk=pk).first()


def _embedding_fits(
    stored: KnowledgeArticle | None, article: KnowledgeArticle, encoder_name: str
) -> bool:
    """Whether the stored row's embedding is the one ``article`` needs."""
    return (
        stored is not None
        and stored.embedding is not None
        and stored.embedding_encoder == encoder_name
        and stored.passages == article.passages
    )


def _revised(stored: KnowledgeArticle, article: KnowledgeArticle) -> bool:
    fields = KnowledgeArticle.REVISED_FIELDS
    return any(getattr(stored, field) != getattr(article, field) for field in fields)


def _keep_revision(stored: KnowledgeArticle) -> ArticleRevision:
    return ArticleRevision.objects.create(
        article=stored,
        updated_by_id=stored.updated_by_id,
        updated_at=stored.updated_at,
        **{field: getattr(stored, field) for field in KnowledgeArticle.REVISED_FIELDS},
    )


@dataclass(frozen=True)
class SeedResult:
    created: int
    updated: int
    embedded: int  # articles embedded besides those created or updated (e.g. a new encoder)


ACRONYMS = {"po": "PO", "vat": "VAT", "klarna": "Klarna", "dhl": "DHL", "eu": "EU"}


def intent_title(name: str) -> str:
    """A readable title from an intent's name: ``po_box_delivery`` → "PO box delivery"."""
    words = [ACRONYMS.get(word, word) for word in name.split("_")]
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


def do_seed_articles(
    corpus: Corpus, *, force: bool = False, progress: Callable[[int, int], None] | None = None
) -> SeedResult:
    """One article per intent of ``corpus``: title from its name, the answer, its topic, and
    its training questions as example questions (never its ``eval_questions``: they stay held
    out, to measure how well unseen wordings are matched).

    With articles already there, it only embeds those that need it, unless ``force``: then each
    intent's answer and questions are written into the article of the same title (the staff's
    version is kept as a revision) or a new article, and other articles are left alone.
    """
    if not force and KnowledgeArticle.objects.exists():
        return SeedResult(created=0, updated=0, embedded=do_embed_articles(progress=progress))
    existing: dict[str, KnowledgeArticle] = {}
    for article in KnowledgeArticle.objects.order_by("-id"):
        existing[article.title] = article  # the oldest of equal titles wins
    created = updated = 0
    for done, intent in enumerate(corpus.intents, start=1):
        title = intent_title(intent.name)
        article = existing.get(title) or KnowledgeArticle(title=title)
        content = {
            "text": intent.answer,
            "example_questions": "\n".join(intent.questions),
            "topic": intent.topic,
            "is_active": True,
        }
        if article.pk is None:
            created += 1
        elif any(getattr(article, field) != value for field, value in content.items()):
            updated += 1
        for field, value in content.items():
            setattr(article, field, value)
        do_save_article(article)
        if progress is not None:
            progress(done, len(corpus.intents))
    return SeedResult(created=created, updated=updated, embedded=do_embed_articles())
