"""A retrieval the test decides: fixed articles instead of the knowledge base's search.

For tests about what the chat does with a retrieval, not about finding the articles. A plugin
of tests/conftest.py: the `retrieved` fixture is there for every test.
"""

from __future__ import annotations

import pytest

from knowledge import retrieval
from knowledge.retrieval import NOTHING, Retrieval, RetrievedArticle

SHIPPING = RetrievedArticle(7, "Shipping cost", "Standard shipping costs 4.90 EUR.", 0.82)
RETURNS = RetrievedArticle(9, "Return window", "You can return items within 30 days.", 0.51)
AS_STORED = [
    {"id": 7, "title": "Shipping cost", "text": "Standard shipping costs 4.90 EUR.", "score": 0.82},
    {
        "id": 9,
        "title": "Return window",
        "text": "You can return items within 30 days.",
        "score": 0.51,
    },
]


def found(*articles: RetrievedArticle) -> Retrieval:
    return Retrieval(articles=articles, best_score=articles[0].score, enabled=True)


def low(article: RetrievedArticle, score: float) -> RetrievedArticle:
    return RetrievedArticle(article.id, article.title, article.text, score)


@pytest.fixture
def retrieved(monkeypatch):
    """Make `retrieve` answer with the Retrieval the test sets; records the questions asked."""
    state = {"answer": NOTHING, "questions": []}

    async def retrieve(question: str, *, k: int | None = None) -> Retrieval:
        state["questions"].append(question)
        return state["answer"]

    monkeypatch.setattr(retrieval, "retrieve", retrieve)
    return state
