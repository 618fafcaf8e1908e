"""The knowledge base as each web process searches it: one numpy matrix of article vectors.

A process holds the active embedded articles' vectors (each article's title and text, and each
of its example questions) as one (rows, d) float32 matrix of unit rows per encoder, an
article's rows side by side, and searches it with one matrix-vector product; an article scores
by its best row (the maximum over each article's rows, ``np.maximum.reduceat``). It reads the
database again only when the table's signature (the number of articles, the latest edit, the
latest embedding) changed, and checks that at most every ``KNOWLEDGE_POLL_SECONDS``: an edit
in the admin reaches every web process within the interval, and this process at once (the
services call ``forget_index`` when an edit commits). Reading the signature is one aggregate
query over indexed columns; the rows are read only after a change, in the retrieval thread (not
the consumers' database thread: at 10,000 articles of 9 vectors it takes about 200 ms,
bench/knowledge.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Max

from knowledge.models import EMBEDDING_DTYPE, KnowledgeArticle

Signature = tuple[int, datetime | None, datetime | None]

# Two texts whose unit vectors are this close are the same text (float32 rounding aside).
IDENTICAL_COSINE = 0.9999


@dataclass(frozen=True)
class ArticleMatrix:
    """Active articles embedded by one encoder, article i being ``ids[i]``: its vectors are the
    rows ``starts[i]`` up to ``starts[i + 1]`` (or the end) of ``vectors``."""

    ids: tuple[int, ...]
    titles: tuple[str, ...]
    texts: tuple[str, ...]
    vectors: np.ndarray  # (rows, d) float32, rows of length 1
    starts: np.ndarray  # (n,) intp, increasing: every article has at least one row
    topics: tuple[str, ...] = ()  # the articles' topics, each once, sorted: what the bot knows

    def search(
        self,
        query: np.ndarray,
        k: int,
        *,
        temperature: float = 0.0,
        skip_identical: bool = False,
    ) -> list[tuple[int, float]]:
        """(article i, cosine score) of the ``k`` articles nearest the unit vector ``query``, best
        first (``scored_search``'s first part)."""
        ranked, _ = self.scored_search(
            query, k, temperature=temperature, skip_identical=skip_identical
        )
        return ranked

    def scored_search(
        self,
        query: np.ndarray,
        k: int,
        *,
        temperature: float = 0.0,
        skip_identical: bool = False,
    ) -> tuple[list[tuple[int, float]], float]:
        """(article i, cosine score) of the ``k`` articles nearest the unit vector ``query``, best
        first, and the best score of any article; an article's score is that of its nearest
        vector.

        With ``temperature`` 0 articles rank by that score; above 0 by a soft maximum of their
        vectors' cosines, ``t·log Σ exp(cos/t)``: an article that several vectors match (several
        of its example questions are near the question) outranks one that a single vector
        matches slightly better. ``skip_identical`` ignores vectors identical to ``query`` (the
        question is one of an article's example questions): the articles score as they would
        for the question if it were not stored."""
        row_scores = self.vectors @ query
        if skip_identical:
            row_scores = np.where(row_scores >= IDENTICAL_COSINE, -1.0, row_scores)
        scores = np.maximum.reduceat(row_scores, self.starts)
        if temperature > 0:
            # Shifted by the best cosine so that exp never overflows; the order is the same.
            ranks = np.logaddexp.reduceat(
                (row_scores - row_scores.max()) / temperature, self.starts
            )
        else:
            ranks = scores
        k = min(k, len(scores))
        if k <= 0:
            return [], 0.0
        best = np.argpartition(-ranks, k - 1)[:k]
        best = best[np.argsort(-ranks[best], kind="stable")]
        return [(int(article), float(scores[article])) for article in best], float(scores.max())


@dataclass(frozen=True)
class IndexSnapshot:
    by_encoder: Mapping[str, ArticleMatrix]

    @property
    def is_empty(self) -> bool:
        """No active article is embedded (by any encoder): retrieval is off."""
        return not self.by_encoder

    def for_encoder(self, encoder_name: str) -> ArticleMatrix | None:
        return self.by_encoder.get(encoder_name)


EMPTY = IndexSnapshot({})


def read_signature() -> Signature:
    """Changes whenever an article is added, deleted, edited or embedded.

    Three queries, not one: with a single aggregate each, the databases answer from the indexes
    (a maximum is the last entry of an index) instead of reading the table.
    """
    articles = KnowledgeArticle.objects.order_by()
    return (
        articles.count(),
        articles.aggregate(latest=Max("updated_at"))["latest"],
        articles.aggregate(latest=Max("embedded_at"))["latest"],
    )


def load_snapshot() -> IndexSnapshot:
    """The active embedded articles, grouped by the encoder that embedded them."""
    rows = (
        KnowledgeArticle.objects.filter(is_active=True, embedding__isnull=False)
        .order_by("id")
        .values_list(
            "embedding_encoder",
            "id",
            "title",
            "text",
            "topic",
            "embedding",
            "embedding_count",
            "embedding_dimension",
        )
    )
    groups: dict[str, list[tuple[int, str, str, str, np.ndarray]]] = {}
    for encoder_name, pk, title, text, topic, embedding, count, dimension in rows:
        vectors = np.frombuffer(bytes(embedding), dtype=EMBEDDING_DTYPE).reshape(count, dimension)
        groups.setdefault(encoder_name, []).append((pk, title, text, topic, vectors))
    return IndexSnapshot(
        {encoder_name: _article_matrix(articles) for encoder_name, articles in groups.items()}
    )


def _article_matrix(articles: list[tuple[int, str, str, str, np.ndarray]]) -> ArticleMatrix:
    counts = [len(vectors) for *_, vectors in articles]
    return ArticleMatrix(
        ids=tuple(article[0] for article in articles),
        titles=tuple(article[1] for article in articles),
        texts=tuple(article[2] for article in articles),
        topics=tuple(sorted({article[3] for article in articles} - {""})),
        vectors=np.concatenate([vectors for *_, vectors in articles]).astype(
            np.float32, copy=False
        ),
        starts=np.cumsum([0, *counts[:-1]], dtype=np.intp),
    )


class KnowledgeIndex:
    """This process's snapshot of the knowledge base, re-read when the signature changed.

    ``current()`` may query the database: call it from a worker thread, never the event loop.
    """

    def __init__(self) -> None:
        self._snapshot = EMPTY
        self._signature: Signature | None = None
        self._checked_at: float | None = None
        self._forgotten = False
        self._lock = threading.Lock()

    def current(self) -> IndexSnapshot:
        """The articles as of the last check, checked again when the poll interval is over."""
        if not self._poll_due():
            return self._snapshot
        # While one thread reads, another answers from the snapshot it has (if it has one).
        if not self._lock.acquire(blocking=self._checked_at is None):
            return self._snapshot
        try:
            if self._poll_due():
                self._refresh()
            return self._snapshot
        finally:
            self._lock.release()

    def forget(self) -> None:
        """The next ``current()`` reads the database again."""
        self._forgotten = True
        self._signature = None
        self._checked_at = None

    def _poll_due(self) -> bool:
        checked_at = self._checked_at
        return (
            checked_at is None or time.monotonic() - checked_at >= settings.KNOWLEDGE_POLL_SECONDS
        )

    def _refresh(self) -> None:
        self._forgotten = False
        # As database_sync_to_async does around each call: no connection outlives its use
        # (CONN_MAX_AGE) or a broken one.
        close_old_connections()
        try:
            # The signature is read first: an edit between the two reads is seen at the next poll.
            signature = read_signature()
            if signature != self._signature:
                self._snapshot = load_snapshot()
        finally:
            close_old_connections()
        if not self._forgotten:  # else an edit here committed meanwhile: read again next time
            self._signature = signature
            self._checked_at = time.monotonic()


knowledge_index = KnowledgeIndex()


def forget_index() -> None:
    """Make this process re-read the knowledge base at its next retrieval."""
    knowledge_index.forget()
