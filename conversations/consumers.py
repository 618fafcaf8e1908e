"""The chat websocket (`/ws/chat/`): speaks the protocol of docs/protocol.md, nothing more.

Frames are decoded and validated in `conversations.protocol`; a reply's frames come from
`conversations.replying`, the rules from `conversations.services` and `conversations.handoff`;
this module moves frames, runs each reply as a background task and turns every failure into
an `error` frame, so no exception closes the socket with 1011.

A reply is a detached asyncio task kept alive by `_REPLY_TASKS`, not a child of the consumer:
when the client goes away mid-reply, Channels stops the consumer, the reply is cancelled (the
engine stops generating at its next step), and the task still stores the text produced so far
with finish reason `disconnected`; its frames are dropped.

Handoff: each socket joins its conversation's group (`conversations.handoff_events`), through
which agents' messages, status changes and the satisfaction question arrive from whatever
process the agent's inbox is on. While a person has the conversation, the customer's messages
are stored and shown in the inbox, and no reply is generated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from conversations import (
    connection_limits,
    handoff,
    handoff_events,
    protocol,
    replying,
    satisfaction,
    services,
)
from conversations.network import client_address, network_key
from conversations.owner_tokens import session_from_owner_token
from conversations.protocol import ProtocolError

logger = logging.getLogger(__name__)

# Close codes for a refused `?conversation=`: the socket is accepted first and then closed,
# because a handshake refused before `accept` reaches browsers as a bare HTTP 403.
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY_CONNECTIONS = 4429
CLOSE_SERVER_ERROR = 1011


# Strong references to running replies: asyncio keeps only weak ones, and a reply must outlive
# the connection that asked for it.
_REPLY_TASKS: set[asyncio.Task[None]] = set()


async def wait_for_replies() -> None:
    """Wait until every reply being generated in this process is stored (tests, shutdown)."""
    while _REPLY_TASKS:
        await asyncio.gather(*_REPLY_TASKS, return_exceptions=True)


class ChatConsumer(AsyncWebsocketConsumer):
    owner: services.Owner
    conversation_id: uuid.UUID | None

    async def connect(self) -> None:
        self.conversation_id = None
        self.disconnected = False
        self.reply_task: asyncio.Task[None] | None = None
        self.reply: replying.Reply | None = None
        self.feedback_times: deque[float] = deque()
        await self.accept()
        try:
            query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
            self.owner = await self._resolve_owner(query.get("owner", [None])[0])
            if not await connection_limits.admit_connection(self.owner.network):
                await self.close(code=CLOSE_TOO_MANY_CONNECTIONS)
                return
            requested = query.get("conversation", [None])[0]
            conversation = await database_sync_to_async(services.do_open_conversation)(
                self.owner, requested
            )
            self.conversation_id = conversation.pk
            messages = await database_sync_to_async(services.conversation_history)(
                conversation.pk, self.owner
            )
            status = await database_sync_to_async(handoff.status_frame)(conversation.pk)
            needs_survey = await database_sync_to_async(satisfaction.needs_satisfaction)(
                conversation.pk
            )
            if self.channel_layer is not None:
                await self.channel_layer.group_add(
                    handoff_events.conversation_group(conversation.pk), self.channel_name
                )
        except services.ConversationForbidden:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        except services.ConversationNotFound:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        except Exception:
            logger.exception("chat connect failed")
            await self.close(code=CLOSE_SERVER_ERROR)
            return
        await self._send_frame(
            {
                "type": "conversation",
                "conversation": str(conversation.pk),
                "messages": messages,
                "protocol": protocol.PROTOCOL_VERSION,
                "status": status["status"],
            }
        )
        if status["status"] != handoff.Status.OPEN:
            await self._send_frame(status)
        if needs_survey:
            await self._send_frame({"type": "csat.request"})

    async def disconnect(self, code: int) -> None:
        # The reply task, if any, keeps running: the engine stops generating at its next step,
        # and the task stores the text produced so far (finish reason `disconnected`).
        self.disconnected = True
        if self.reply is not None:
            self.reply.cancel()
        if self.conversation_id is not None and self.channel_layer is not None:
            await self.channel_layer.group_discard(
                handoff_events.conversation_group(self.conversation_id), self.channel_name
            )

    async def chat_frame(self, event: dict[str, Any]) -> None:
        """A frame for the customer from elsewhere: an agent's message, a new status."""
        await self._send_frame(event["frame"])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.conversation_id is None:
            return  # refused at connect; the close is on its way
        try:
            frame_type, payload = protocol.decode_frame(text_data, bytes_data)
            if frame_type == "ping":
                await self._send_frame({"type": "pong"})
            elif frame_type == "user_message":
                await self._receive_user_message(payload)
            elif frame_type == "feedback":
                await self._receive_feedback(payload)
            elif frame_type == "handoff":
                self._check_feedback_rate()
                await self._hand_off(handoff.Conversation.HandoffReason.ASKED, always_answer=True)
            elif frame_type == "csat":
                self._check_feedback_rate()
                await self._receive_satisfaction(payload)
        except ProtocolError as error:
            await self._send_error(error)
        except Exception:
            logger.exception("chat frame failed")
            await self._send_error(ProtocolError("busy", replying.UNEXPECTED))

    # --- user messages and replies ------------------------------------------------------

    async def _receive_user_message(self, payload: dict[str, Any]) -> None:
        frame = protocol.parse_user_message(payload)
        if self.reply_task is not None and not self.reply_task.done():
            raise ProtocolError("busy", "Wait for the reply before sending another message.")
        self.reply = replying.Reply(self.conversation_id, self.owner)
        task = asyncio.create_task(self._send_reply(self.reply, frame.text, frame.client_id))
        _REPLY_TASKS.add(task)
        task.add_done_callback(_REPLY_TASKS.discard)
        self.reply_task = task

    async def _send_reply(self, reply: replying.Reply, text: str, client_id: str) -> None:
        async for frame in reply.frames(text, client_id):
            await self._send_frame(frame)

    async def _hand_off(self, reason: str, *, always_answer: bool = False) -> None:
        async for frame in replying.hand_off(
            self.conversation_id, reason, always_answer=always_answer
        ):
            await self._send_frame(frame)

    async def _receive_satisfaction(self, payload: dict[str, Any]) -> None:
        frame = protocol.parse_satisfaction(payload)
        answer = await database_sync_to_async(satisfaction.do_answer_satisfaction)(
            self.conversation_id, frame.score, frame.comment or ""
        )
        await self._send_frame({"type": "csat.saved", "score": answer.score})

    # --- feedback -----------------------------------------------------------------------

    async def _receive_feedback(self, payload: dict[str, Any]) -> None:
        self._check_feedback_rate()
        frame = protocol.parse_feedback(payload)
        feedback = await database_sync_to_async(services.do_rate_message)(
            self.conversation_id,
            self.owner,
            frame.message_id,
            rating=frame.rating,
            reason=frame.reason or "",
            comment=frame.comment or "",
            correction=frame.correction or "",
        )
        await self._send_frame(
            {"type": "feedback.saved", "message_id": feedback.message_id, "rating": feedback.rating}
        )

    def _check_feedback_rate(self) -> None:
        """At most CHAT_FEEDBACK_PER_MINUTE feedback, handoff and survey frames per
        connection, valid or not."""
        now = time.monotonic()
        while self.feedback_times and now - self.feedback_times[0] >= 60:
            self.feedback_times.popleft()
        if len(self.feedback_times) >= settings.CHAT_FEEDBACK_PER_MINUTE:
            raise ProtocolError("rate_limited", "Too many ratings; wait a minute and try again.")
        self.feedback_times.append(now)

    # --- plumbing -----------------------------------------------------------------------

    @database_sync_to_async
    def _resolve_owner(self, owner_token: str | None) -> services.Owner:
        """The user, else the anonymous session: the embedded chat's token's (no cookie reaches
        a frame on another site), or the cookie's."""
        user = self.scope.get("user")
        session = session_from_owner_token(owner_token, user)
        return services.resolve_owner(
            user,
            self.scope["session"] if session is None else session,
            network_key(client_address(self.scope)),
        )

    async def _send_error(self, error: ProtocolError) -> None:
        await self._send_frame(error.as_frame())

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        """Send one frame; after the client has gone, drop it (a reply finishing unattended)."""
        if self.disconnected:
            return
        try:
            await self.send(text_data=json.dumps(frame, ensure_ascii=False))
        except Exception:
            logger.debug("dropped a frame for a closed chat socket", exc_info=True)
