"""Customers' wordings proposed as example questions, and staff's decisions on them.

Retrieval finds an article mostly through its example questions (``knowledge.index``), and a
customer whose wording resembles none of them is shown the wrong article, or declined. The chat
knows which wordings an article answered: a reply written from it that the customer rated up.
Such a wording becomes a *candidate* example question of that article (``pending_wording``: one
per article and wording, however many ratings support it; ``conversations.wording_candidates``
makes them, since the ratings are the chat's). A wording is customer text that changes what
other customers are shown, so nothing happens until staff accept it (``do_accept_wordings``):
then it is added to the article's example questions through ``do_save_article`` (a revision,
and the article is embedded again at once, so the next question retrieves with it).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from knowledge.models import KnowledgeArticle, WordingCandidate, question_lines
from knowledge.services import do_save_article

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

Pending = WordingCandidate.Status.PENDING
MAX_WORDING_CHARS = 300  # longer than any question worth matching on; a pasted text is not one


def normalised(question: str) -> str:
    return " ".join(question.split()).casefold()


def question_digest(question: str) -> str:
    return hashlib.sha256(normalised(question).encode()).hexdigest()


def is_known_wording(article: KnowledgeArticle, question: str) -> bool:
    """Whether ``question`` is already one of the article's example questions (or its title)."""
    known = {normalised(line) for line in question_lines(article.example_questions)}
    return normalised(question) in known | {normalised(article.title)}


def pending_wording(
    article: KnowledgeArticle | None, question: str, source: str
) -> WordingCandidate | None:
    """The pending candidate of ``question`` for ``article`` (None: asked, not in the knowledge
    base), made now or before; None when the wording is empty, too long, already one of the
    article's example questions, or staff rejected it for this article before."""
    question = " ".join(question.split())
    if not question or len(question) > MAX_WORDING_CHARS:
        return None
    if article is not None and is_known_wording(article, question):
        return None
    if was_rejected(article, question):
        return None
    lookup = {"article": article, "question_digest": question_digest(question), "status": Pending}
    try:
        with transaction.atomic():
            candidate, _ = WordingCandidate.objects.get_or_create(
                **lookup, defaults={"question": question, "source": source}
            )
    except IntegrityError:  # proposed at the same moment by another request
        candidate = WordingCandidate.objects.get(**lookup)
    return candidate


def do_accept_wordings(
    candidates: QuerySet[WordingCandidate], *, by: AbstractBaseUser | None = None
) -> int:
    """Add the pending ``candidates`` to their articles' example questions (one save, and so
    one revision and one embedding, per article); returns how many were accepted. One without
    an article stays pending: staff pick its article first."""
    by_article: dict[int, list[WordingCandidate]] = defaultdict(list)
    pending = candidates.filter(status=Pending, article__isnull=False)
    for candidate in pending.select_related("article").order_by("id"):
        by_article[candidate.article_id].append(candidate)
    accepted = 0
    for group in by_article.values():
        article = KnowledgeArticle.objects.get(pk=group[0].article_id)
        lines = question_lines(article.example_questions)
        for candidate in group:
            if not is_known_wording(article, candidate.question):
                lines.append(candidate.question)
                article.example_questions = "\n".join(lines)
        do_save_article(article, by=by)
        WordingCandidate.objects.filter(pk__in=[c.pk for c in group], status=Pending).update(
            status=WordingCandidate.Status.ACCEPTED, decided_by=by, decided_at=timezone.now()
        )
        accepted += len(group)
    return accepted


def do_reject_wordings(
    candidates: QuerySet[WordingCandidate], *, by: AbstractBaseUser | None = None
) -> int:
    """Reject the pending ``candidates``: the wording is not proposed again for that article
    while a rejected candidate of it exists."""
    return candidates.filter(status=Pending).update(
        status=WordingCandidate.Status.REJECTED, decided_by=by, decided_at=timezone.now()
    )


def was_rejected(article: KnowledgeArticle | None, question: str) -> bool:
    return WordingCandidate.objects.filter(
        article=article,
        question_digest=question_digest(question),
        status=WordingCandidate.Status.REJECTED,
    ).exists()
