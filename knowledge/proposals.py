"""Article edits proposed from customers' corrections, and staff's decisions on them.

The bot answers from the article it retrieves, so a correction that contradicts that article
says one of two things: the article is out of date (the shop changed a policy and nobody edited
it), or the customer is wrong (or wants a full refund, no questions asked). Training on such
corrections would teach the model to contradict its own article, for that wording and the
next; editing the article fixes every wording at once, on the next message. Only staff can
tell which it is, so the feedback admin's action
(``conversations.article_proposals.do_propose_edits``) turns corrections into proposals (one per
article and proposed text, however many ratings say it; ``pending_proposal``), and staff accept
one (``do_accept_proposal``: the article is edited through ``do_save_article``, with its
revision) or dismiss them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from knowledge.models import ArticleProposal, KnowledgeArticle
from knowledge.services import KnowledgeError, do_save_article

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

Pending = ArticleProposal.Status.PENDING


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def pending_proposal(
    article: KnowledgeArticle, text: str, based_on: str, by: AbstractBaseUser | None
) -> tuple[ArticleProposal, bool]:
    """The pending proposal to set ``article`` to ``text`` (made now, or made before by another
    correction of the same text), and whether it was made now."""
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
