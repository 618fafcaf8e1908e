"""What the staff inbox shows: its queue's rows, a conversation's transcript, a message.

Plain dicts for the inbox socket's frames (docs/protocol.md, "The staff inbox socket"), read
from the database; the changes themselves are `conversations.handoff`'s.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings

from conversations.handoff import agent_name, conversation_or_refuse
from conversations.models import Conversation, Feedback, Message

Role = Message.Role


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def conversation_summary(conversation: Conversation) -> dict[str, Any]:
    """One row of the inbox."""
    last = (
        Message.objects.finished()
        .filter(conversation=conversation)
        .order_by("-created_at", "-id")
        .values_list("role", "text")
        .first()
    )
    return {
        "id": str(conversation.pk),
        "status": conversation.status,
        "agent": agent_name(conversation.agent),
        "agent_id": conversation.agent_id,
        "reason": conversation.handoff_reason,
        "waiting_since": _iso(conversation.handed_off_at),
        "last_message": {"role": last[0], "text": last[1][:200]} if last else None,
    }


def summary_of(conversation_id: str | uuid.UUID) -> dict[str, Any]:
    return conversation_summary(conversation_or_refuse(conversation_id))


def inbox_page(offset: int = 0, size: int | None = None) -> dict[str, Any]:
    """Waiting and assigned conversations, the longest waiting first: ``size`` of them
    (HANDOFF_INBOX_PAGE_SIZE) from ``offset``, and how many there are in all."""
    size = settings.HANDOFF_INBOX_PAGE_SIZE if size is None else size
    rows = (
        Conversation.objects.filter(status__in=Conversation.HANDED_OFF)
        .select_related("agent")
        .order_by("handed_off_at", "created_at", "id")
    )
    return {
        "conversations": [conversation_summary(c) for c in rows[offset : offset + size]],
        "offset": offset,
        "total": rows.count(),
    }


def message_entry(message: Message, ratings: dict[int, int] | None = None) -> dict[str, Any]:
    """A message as the inbox shows it: who wrote it, the bot's articles, the customer's rating."""
    return {
        "id": message.pk,
        "role": message.role,
        "text": message.text,
        "agent": agent_name(message.author) if message.role == Role.AGENT else None,
        "declined": message.declined,
        "articles": [article.get("title", "") for article in message.grounding or []]
        if message.role == Role.ASSISTANT
        else [],
        "rating": (ratings or {}).get(message.pk),
        "created_at": _iso(message.created_at),
    }


def transcript(conversation_id: str | uuid.UUID) -> dict[str, Any]:
    """The inbox's `transcript` frame: the whole conversation with the customer's ratings."""
    conversation = conversation_or_refuse(conversation_id)
    ratings = dict(
        Feedback.objects.filter(
            conversation=conversation, source=Feedback.Source.CUSTOMER
        ).values_list("message_id", "rating")
    )
    messages = (
        Message.objects.finished()
        .filter(conversation=conversation)
        .select_related("author")
        .order_by("created_at", "id")
    )
    return {
        "type": "transcript",
        "conversation": conversation_summary(conversation),
        "messages": [message_entry(message, ratings) for message in messages],
    }
