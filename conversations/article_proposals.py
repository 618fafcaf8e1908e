"""Customers' corrections turned into proposed article edits (the feedback admin's action).

A correction of a reply written from an article that it contradicts becomes a proposal to
edit that article (``knowledge.proposals``: one per article and proposed text, however many
ratings say it); staff accept or dismiss it there. The feedback is the chat's, so this step
lives here and the knowledge base never reads a conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import QuerySet

from conversations.models import Feedback
from knowledge.models import KnowledgeArticle
from knowledge.proposals import pending_proposal

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


@dataclass(frozen=True)
class ProposalOutcome:
    proposed: int  # new proposals
    supported: int  # corrections that joined a pending proposal of the same text
    skipped: int  # no correction, rejected, not from an article, declined, or agreeing with it


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
        proposal, created = pending_proposal(article, correction, grounding[0]["text"], by)
        proposal.feedback.add(row)
        proposed += created
        supported += not created
    return ProposalOutcome(proposed, supported, skipped)
