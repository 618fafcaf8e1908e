"""Article edits proposed from customers' corrections, and staff's decisions on them.

The bot answers from the article it retrieves, so a correction that contradicts that article
says one of two things: the article is out of date (the shop changed a policy and nobody edited
it), or the customer is wrong (or wants a full refund, no questions asked). Training on such
corrections would teach the model to contradict its own article, for that wording and the
next; editing the article fixes every wording at once, on the next message. Only staff can
tell which it is, so ``do_propose_edits`` (the feedback admin's action) turns corrections into
proposals (one per article and proposed text, however many ratings say it), and staff accept
one (``do_accept_proposal``: the article is edited through ``do_save_article``, with its
revision) or dismiss them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from knowledge.models import ArticleProposal, KnowledgeArticle
from knowledge.services import KnowledgeError, do_save_article

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from conversations.models import Feedback

Pending = ArticleProposal.Status.PENDING


@dataclass(frozen=True)
class ProposalOutcome:
    proposed: int  # new proposals
    supported: int  # corrections that joined a pending proposal of the same text
    skipped: int  # no correction, rejected, not from an article, declined, or agreeing with it


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def do_propose_edits(
    feedback: QuerySet[Feedback], *, by: AbstractBaseUser | None = None
) -> ProposalOutcome:
    """A proposal for each correction of a reply written from an article that it contradicts.

    The article is the one shown first with the reply (``Message.grounding``); a rejected
    rating, a declined reply (its articles did not answer the question) or an article deleted
    since proposes nothing.
    """
    rows = list(feedback.select_related("message").order_by("id"))
    shown_ids = {row.message.grounding[0]["id"] for row in rows if row.message.grounding}
    articles = KnowledgeArticle.objects.defer("embedding").in_bulk(shown_ids)
    proposed = supported = skipped = 0
    for row in rows:
        correction = row.correction.strip()
        grounding = row.message.grounding or []
        article = articles.get(grounding[0]["id"]) if grounding else None
        rejected = row.review_status == row.ReviewStatus.REJECTED
        if not correction or rejected or row.message.declined or article is None:
            skipped += 1
            continue
        if correction == article.text.strip():
            skipped += 1
            continue
        proposal, created = _pending_proposal(article, correction, grounding[0]["text"], by)
        proposal.feedback.add(row)
        proposed += created
        supported += not created
    return ProposalOutcome(proposed, supported, skipped)


def _pending_proposal(
    article: KnowledgeArticle, text: str, based_on: str, by: AbstractBaseUser | None
) -> tuple[ArticleProposal, bool]:
    digest = text_digest(text)
    lookup = {"article": article, "text_digest": digest, "status": Pending}
    try:
        with transaction.atomic():
            return ArticleProposal.objects.get_or_create(
                **lookup, defaults={"text": text, "based_on": based_on, "proposed_by": by}
            )
    except IntegrityError:  # proposed at the same moment by another request
        return ArticleProposal.objects.get(**lookup), False


def do_accept_proposal(
    proposal: ArticleProposal, *, by: AbstractBaseUser | None = None
) -> KnowledgeArticle:
    """Write the proposal's text into its article (keeping the old text as a revision).

    Raises ``KnowledgeError`` when the proposal was already accepted or dismissed. Other
    pending proposals of the article stay pending: staff see them as written for an older text.
    """
    claimed = ArticleProposal.objects.filter(pk=proposal.pk, status=Pending).update(
        status=ArticleProposal.Status.ACCEPTED, decided_by=by, decided_at=timezone.now()
    )
    if not claimed:
        raise KnowledgeError(f"{proposal} was already decided.")
    article = KnowledgeArticle.objects.get(pk=proposal.article_id)
    article.text = proposal.text
    try:
        return do_save_article(article, by=by)
    except Exception:
        ArticleProposal.objects.filter(pk=proposal.pk).update(
            status=Pending, decided_by=None, decided_at=None
        )
        raise


def do_dismiss_proposals(
    proposals: QuerySet[ArticleProposal], *, by: AbstractBaseUser | None = None
) -> int:
    """Dismiss the pending ones of ``proposals``; how many were."""
    return ArticleProposal.objects.filter(pk__in=proposals.values("pk"), status=Pending).update(
        status=ArticleProposal.Status.DISMISSED, decided_by=by, decided_at=timezone.now()
    )
