"""Customers' wordings that the chat says an article answered, or should have, proposed to staff.

- A thumbs-up on a reply written from an article says that article answered the question as
  the customer worded it: the question becomes a candidate example question of that article.
- A thumbs-down on a decline (not a request for a person) says the question deserved an answer
  the bot did not find: a candidate without an article, "asked, not in the knowledge base".
- An agent's answer to a question the bot could not answer (``agent_answers``): a candidate of
  the article retrieved for it, if any; staff move it to the right one.

Questions are redacted as for training (``redaction``), and each candidate is one per article
and wording (``knowledge.wordings``). A changed rating, or one rejected in review, takes its
support back, and a candidate nobody supports any more is withdrawn. The ratings are the
chat's, so this step lives here and the knowledge base never reads a conversation.
"""

from __future__ import annotations

from conversations.models import Feedback, Message
from conversations.redaction import redact
from knowledge.models import KnowledgeArticle, WordingCandidate
from knowledge.person_request import asks_for_a_person
from knowledge.wordings import pending_wording

Source = WordingCandidate.Source

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


def supported_wording(feedback: Feedback) -> WordingCandidate | None:
    """The candidate ``feedback`` as it now stands supports (made if need be), or None."""
    if feedback.review_status == Feedback.ReviewStatus.REJECTED:
        return None
    reply = feedback.message
    if feedback.source == Feedback.Source.AGENT:
        question = feedback.answered_question
        if question is None:
            return None
        found = [a.get("id") for a in reply.grounding or []]
        article = KnowledgeArticle.objects.filter(pk__in=found[:1]).first()
        return pending_wording(article, redact(question.text), Source.AGENT)
    question = asked_question(reply)
    if question is None or reply.role != Role.ASSISTANT:
        return None
    if feedback.rating > 0 and (article := answering_article(reply)) is not None:
        return pending_wording(article, redact(question.text), Source.RATED_UP)
    if feedback.rating < 0 and reply.declined and not asks_for_a_person(question.text):
        return pending_wording(None, redact(question.text), Source.DECLINED)
    return None


def do_follow_rating(feedback: Feedback) -> WordingCandidate | None:
    """Keep the candidates in step with ``feedback`` as it now stands (``supported_wording``):
    it supports that candidate and no other. Returns the candidate it supports."""
    candidate = supported_wording(feedback)
    for stale in feedback.wording_candidates.filter(status=WordingCandidate.Status.PENDING):
        if stale != candidate:
            stale.feedback.remove(feedback)
            if not stale.feedback.exists():
                stale.delete()
    if candidate is not None:
        candidate.feedback.add(feedback)
    return candidate
