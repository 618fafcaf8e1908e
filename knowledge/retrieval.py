"""Retrieval: the knowledge-base articles that answer a customer's turn, best first.

The chat consumer awaits ``retrieve`` before each reply. ``Retrieval.enabled`` is False while the
knowledge base holds no embedded active article: the bot then answers ungrounded, as before
there was a knowledge base.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrievedArticle:
    id: int
    title: str
    text: str
    score: float  # cosine similarity of the question and the article, in [-1, 1]


@dataclass(frozen=True)
class Retrieval:
    articles: tuple[RetrievedArticle, ...]
    best_score: float
    enabled: bool


NOTHING = Retrieval(articles=(), best_score=0.0, enabled=False)


async def retrieve(question: str, *, k: int | None = None) -> Retrieval:
    """The top ``k`` (KNOWLEDGE_TOP_K) active articles for ``question``."""
    return NOTHING
