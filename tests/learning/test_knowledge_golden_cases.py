"""The knowledge base's own golden cases: never empty while it has an article, and in step
with its edits (learning.protected.knowledge_golden_cases)."""

from __future__ import annotations

import pytest

from knowledge.models import KnowledgeArticle
from learning.protected import knowledge_golden_cases

pytestmark = pytest.mark.django_db


def article(title: str, text: str, questions: str = "", *, active: bool = True):
    return KnowledgeArticle.objects.create(
        title=title, text=text, example_questions=questions, is_active=active
    )


def test_each_active_article_promises_its_text_and_numbers_for_its_first_question():
    article("Refunds", "Refunds reach you in 10 days, 5 on weekdays, 10 at most.", "refund?\nmoney")
    article("Old", "Gone: 3 days.", "old?", active=False)
    article("No questions", "Shipping costs 4.90 EUR.")

    [case] = knowledge_golden_cases(16)

    assert case.question == "refund?" and case.grounded
    assert case.expected_answer == "Refunds reach you in 10 days, 5 on weekdays, 10 at most."
    assert case.required_facts == ("10", "5")
    assert case.turns[0]["role"] == "system" and "10 days" in case.turns[0]["content"]


def test_more_articles_than_the_limit_are_spread_evenly_and_follow_edits():
    rows = [article(f"A{n}", f"Answer {n}.", f"question {n}?") for n in range(10)]

    chosen = [case.question for case in knowledge_golden_cases(5)]

    assert chosen == ["question 0?", "question 2?", "question 4?", "question 6?", "question 8?"]
    assert knowledge_golden_cases(0) == []
    rows[0].text = "Answer 0, edited: 7 days."
    rows[0].save()
    assert knowledge_golden_cases(5)[0].required_facts == ("0", "7")
