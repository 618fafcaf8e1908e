"""The knowledge base as each web process searches it: one numpy matrix of article vectors.

A process holds the active embedded articles as an (n, d) float32 matrix of unit rows per
encoder, and searches it with one matrix-vector product. It reads the database again only when
the table's signature (the number of articles, the latest edit, the latest embedding) changed,
and checks that at most every ``KNOWLEDGE_POLL_SECONDS``: an edit in the admin reaches every
web process within the interval, and this process at once (the services call ``forget_index``
when an edit commits). Reading the signature is one aggregate query; the rows are read only
after a change.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import Count, Max

from knowledge.models import EMBEDDING_DTYPE, KnowledgeArticle

Signature = tuple[int, datetime | None, datetime | None]


@dataclass(frozen=True)
class ArticleMatrix:
    """Active articles embedded by one encoder: row i of ``vectors`` is article ``ids[i]``."""

    ids: tuple[int, ...]
    titles: tuple[str, ...]
    texts: tuple[str, ...]
    vectors: np.ndarray  # (n, d) float32, rows of length 1

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(row, cosine score) of the ``k`` rows nearest the unit vector ``query``, best first."""
        scores = self.vectors @ query
        k = min(k, len(scores))
        if k <= 0:
            return []
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(row), float(scores[row])) for row in best]


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
    """Changes whenever an article is added, deleted, edited or embedded."""
    row = KnowledgeArticle.objects.aggregate(
        count=Count("id"), edited=Max("updated_at"), embedded=Max("embedded_at")
    )
    return (row["count"], row["edited"], row["embedded"])


def load_snapshot() -> IndexSnapshot:
    """The active embedded articles, grouped by the encoder that embedded them."""
    rows = (
        KnowledgeArticle.objects.filter(is_active=True, embedding__isnull=False)
        .order_by("id")
        .values_list("embedding_encoder", "id", "title", "text", "embedding")
    )
    groups: dict[str, list[tuple[int, str, str, bytes]]] = {}
    for encoder_name, *article in rows:
        groups.setdefault(encoder_name, []).append(tuple(article))
    return IndexSnapshot(
        {
            encoder_name: ArticleMatrix(
                ids=tuple(row[0] for row in articles),
                titles=tuple(row[1] for row in articles),
                texts=tuple(row[2] for row in articles),
                vectors=np.stack(
                    [np.frombuffer(bytes(row[3]), dtype=EMBEDDING_DTYPE) for row in articles]
                ).astype(np.float32, copy=False),
            )
            for encoder_name, articles in groups.items()
        }
    )


def _read_if_changed(known: Signature | None) -> tuple[Signature, IndexSnapshot | None]:
    # The signature is read first: an edit between the two reads is then seen at the next poll.
    signature = read_signature()
    if signature == known:
        return signature, None
    return signature, load_snapshot()


class KnowledgeIndex:
    def __init__(self) -> None:
        self._snapshot = EMPTY
        self._signature: Signature | None = None
        self._checked_at: float | None = None

    async def snapshot(self) -> IndexSnapshot:
        """The current articles, checked against the database at most every poll interval."""
        checked_at = self._checked_at
        if (
            checked_at is not None
            and time.monotonic() - checked_at < settings.KNOWLEDGE_POLL_SECONDS
        ):
            return self._snapshot
        signature, snapshot = await database_sync_to_async(_read_if_changed)(self._signature)
        if snapshot is not None:
            self._snapshot = snapshot
        self._signature = signature
        self._checked_at = time.monotonic()
        return self._snapshot

    def forget(self) -> None:
        """The next ``snapshot()`` reads the database again."""
        self._signature = None
        self._checked_at = None


knowledge_index = KnowledgeIndex()


def forget_index() -> None:
    """Make this process re-read the knowledge base at its next retrieval."""
    knowledge_index.forget()
