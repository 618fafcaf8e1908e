"""Telling the other side of a handoff, through the channel layer's groups.

Every chat socket joins its conversation's group and every inbox socket the inbox group, so a
frame reaches the customer (all of their tabs) and the agents whatever web process each is
connected to: with channels-redis the groups live in Redis. A group message carries the frame
to send as it is (`{"type": "<handler>", "frame": {...}}`); the consumers' handlers only send
it. Sending is best effort: the change is stored before it is announced, and a socket that
missed a frame gets the state again when it reconnects (history, status, the inbox list).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from conversations import handoff, inbox_views

logger = logging.getLogger(__name__)

INBOX_GROUP = "inbox"
# The group handlers' names, as Channels maps "chat.frame" to `chat_frame`.
CHAT_FRAME = "chat.frame"
INBOX_FRAME = "inbox.frame"


def conversation_group(conversation_id: uuid.UUID | str) -> str:
    """The group of a conversation's chat sockets."""
    return f"conversation.{conversation_id}"


async def _group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, message)
    except Exception:
        logger.exception("could not send to group %s", group)


async def to_customer(conversation_id: uuid.UUID | str, frame: dict[str, Any]) -> None:
    await _group_send(conversation_group(conversation_id), {"type": CHAT_FRAME, "frame": frame})


async def to_inbox(frame: dict[str, Any]) -> None:
    await _group_send(INBOX_GROUP, {"type": INBOX_FRAME, "frame": frame})


def _status_messages(conversation_id: uuid.UUID | str) -> list[tuple[str, dict[str, Any]]]:
    """What a status change sends, group by group, read from the database: the customer's
    sockets get the new `status` (and `csat.request` once it is closed); the inbox gets the
    conversation's new row."""
    frame = handoff.status_frame(conversation_id)
    customer = conversation_group(conversation_id)
    messages = [(customer, {"type": CHAT_FRAME, "frame": frame})]
    if frame["status"] == handoff.Status.CLOSED:
        messages.append((customer, {"type": CHAT_FRAME, "frame": {"type": "csat.request"}}))
    summary = inbox_views.summary_of(conversation_id)
    update = {"type": "conversation.updated", "conversation": summary}
    messages.append((INBOX_GROUP, {"type": INBOX_FRAME, "frame": update}))
    return messages


async def status_changed(conversation_id: uuid.UUID | str) -> None:
    """Announce a status change (``_status_messages``)."""
    for group, message in await database_sync_to_async(_status_messages)(conversation_id):
        await _group_send(group, message)


async def conversation_updated(conversation_id: uuid.UUID | str) -> None:
    summary = await database_sync_to_async(inbox_views.summary_of)(conversation_id)
    await to_inbox({"type": "conversation.updated", "conversation": summary})


async def new_message(conversation_id: uuid.UUID | str, message_id: int) -> None:
    """A message in a conversation the inbox shows (the customer's while waiting, an agent's)."""
    entry = await database_sync_to_async(_entry)(message_id)
    await to_inbox({"type": "message", "conversation": str(conversation_id), "message": entry})
    await conversation_updated(conversation_id)


def _entry(message_id: int) -> dict[str, Any]:
    from conversations.models import Message

    return inbox_views.message_entry(Message.objects.select_related("author").get(pk=message_id))


def status_changed_now(conversation_id: uuid.UUID | str) -> None:
    """``status_changed`` from synchronous code (an admin action, a periodic task): the frames
    are read here, only the sending is asynchronous."""
    from asgiref.sync import async_to_sync

    send = async_to_sync(_group_send)
    for group, message in _status_messages(conversation_id):
        send(group, message)


def release_abandoned_claims() -> int:
    """Put claims whose agent left back in the queue (``handoff.release_abandoned_claims``) and
    tell each customer and the inbox; returns how many. For the periodic task."""
    released = handoff.release_abandoned_claims()
    for conversation_id in released:
        status_changed_now(conversation_id)
    return len(released)


def release_claim(conversation_id: uuid.UUID | str, supervisor: Any) -> None:
    """A supervisor's release (``handoff.do_release_claim``), announced like any status change."""
    conversation = handoff.do_release_claim(conversation_id, supervisor)
    status_changed_now(conversation.pk)


def reassign(conversation_id: uuid.UUID | str, supervisor: Any, agent_id: int) -> None:
    """A supervisor's reassignment (``handoff.do_reassign``), announced like any status change."""
    conversation = handoff.do_reassign(conversation_id, supervisor, agent_id)
    status_changed_now(conversation.pk)
