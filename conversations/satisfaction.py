"""The satisfaction question: a closed conversation asks its customer for a 1-5 score, once.

Each answer records the model version that last answered in the conversation and whether a
person took part, so the trend page (`conversations.satisfaction_stats`) can compare versions
and handoffs.
"""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction

from conversations.models import Conversation, Message, Satisfaction
from conversations.protocol import ProtocolError

Status = Conversation.Status
Role = Message.Role


def needs_satisfaction(conversation_id: uuid.UUID) -> bool:
    """A closed conversation whose survey the customer has not answered."""
    return Conversation.objects.filter(
        pk=conversation_id, status=Status.CLOSED, satisfaction__isnull=True
    ).exists()


def do_answer_satisfaction(conversation_id: uuid.UUID, score: int, comment: str) -> Satisfaction:
    """Store the customer's 1-5 answer, once per conversation, for a closed conversation."""
    conversation = Conversation.objects.get(pk=conversation_id)
    if conversation.status != Status.CLOSED:
        raise ProtocolError("invalid", "The survey opens when the conversation is closed.")
    last_reply = (
        Message.objects.filter(
            conversation_id=conversation_id, role=Role.ASSISTANT, model_version__isnull=False
        )
        .order_by("-created_at", "-id")
        .values_list("model_version_id", flat=True)
        .first()
    )
    handed_off = conversation.handed_off_at is not None or (
        Message.objects.filter(conversation_id=conversation_id, role=Role.AGENT).exists()
    )
    try:
        with transaction.atomic():
            return Satisfaction.objects.create(
                conversation=conversation,
                score=score,
                comment=comment,
                model_version_id=last_reply,
                handed_off=handed_off,
            )
    except IntegrityError:
        raise ProtocolError("invalid", "You have already answered this survey.") from None
