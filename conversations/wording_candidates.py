"""Customers' wordings that their ratings say an article answered, proposed to staff.

A thumbs-up on a reply written from an article says that article answered the question as the
customer worded it: the question (personal data redacted) becomes a candidate example question
of that article (``knowledge.wordings``). A thumbs-down on it later, or the rating rejected in
review, takes that support back, and a candidate nobody supports any more is withdrawn. The
ratings are the chat's, so this step lives here and the knowledge base never reads a
conversation.
"""

from __future__ import annotations

from conversations.models import Feedback, Message
from conversations.redaction import redact
from knowledge.models import KnowledgeArticle, WordingCandidate
from knowledge.wordings import pending_wording

Role = Message.Role


def asked_question(reply: Message) -> Message | None:
    """The customer's message the bot's ``reply`` answered (the one just before it)."""
    return (
        Message.objects.filter(
            conversation_id=reply.conversation_id, role=Role.USER, id__lt=reply.pk
        )
        .order_by("-created_at", "-id")
        .first()
    )


def answering_article(reply: Message) -> KnowledgeArticle | None:
    """The article the reply was written from (the first it was shown), if it still exists."""
    if reply.role != Role.ASSISTANT or reply.declined or not reply.grounding:
        return None
    return KnowledgeArticle.objects.filter(pk=reply.grounding[0].get("id")).first()


def do_follow_rating(feedback: Feedback) -> WordingCandidate | None:
    """Keep the candidates in step with ``feedback`` as it now stands: a thumbs-up, not
    rejected, on a reply written from an article supports its question as a candidate of that
    article; otherwise the rating supports none. Returns the candidate it supports."""
    candidate = None
    reply = feedback.message
    article = answering_article(reply)
    if (
        feedback.rating > 0
        and feedback.review_status != Feedback.ReviewStatus.REJECTED
        and article is not None
        and (question := asked_question(reply)) is not None
    ):
        candidate = pending_wording(
            article, redact(question.text), WordingCandidate.Source.RATED_UP
        )
    for stale in feedback.wording_candidates.filter(status=WordingCandidate.Status.PENDING):
        if stale != candidate:
            stale.feedback.remove(feedback)
            if not stale.feedback.exists():
                stale.delete()
    if candidate is not None:
        candidate.feedback.add(feedback)
    return candidate
