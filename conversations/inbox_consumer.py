"""The staff inbox's websocket (`/ws/inbox/`): agents claim conversations and answer customers.

Only active staff with the `answer_customers` permission may connect (anyone else is accepted,
then closed with 4403, as the chat refuses a conversation), and every frame, a transcript's
included, and every message the group sends checks again that the user still may
(`handoff.check_agent`): one who may not any more is closed out with 4403. On connect the
socket gets the queue (`inbox`); afterwards every
inbox socket, on every web process, gets each change (`conversation.updated`, `message`)
through the inbox group. An agent's reply is stored, then sent to the customer's conversation
group, then (after delivery, so that it adds no latency) made a training example when it
answers a question the bot could not (`agent_answers.do_record_agent_answer`, with the articles
retrieved for that question). The frames are in docs/protocol.md ("The staff inbox socket").
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from conversations import agent_answers, handoff, handoff_events, inbox_views, protocol
from conversations.consumers import CLOSE_FORBIDDEN
from conversations.protocol import AgentMessageFrame, InboxPageFrame, ProtocolError
from conversations.replying import UNEXPECTED
from knowledge import answering, retrieval

logger = logging.getLogger(__name__)


class InboxConsumer(AsyncWebsocketConsumer):
    user_id: int | None

    async def connect(self) -> None:
        self.user_id = None
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        try:
            agent = await database_sync_to_async(handoff.check_agent)(user.pk)
        except ProtocolError:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.user_id = agent.pk
        await self.channel_layer.group_add(handoff_events.INBOX_GROUP, self.channel_name)
        await database_sync_to_async(handoff.do_agent_seen)(agent.pk, self.channel_name)
        page = await database_sync_to_async(inbox_views.inbox_page)()
        await self._send_frame(
            {
                "type": "inbox",
                "protocol": protocol.PROTOCOL_VERSION,
                "agent": {"id": agent.pk, "name": handoff.agent_name(agent)},
                "conversations": page["conversations"],
                "total": page["total"],
            }
        )

    async def disconnect(self, code: int) -> None:
        if self.user_id is None:
            return
        await self.channel_layer.group_discard(handoff_events.INBOX_GROUP, self.channel_name)
        await database_sync_to_async(handoff.do_agent_left)(self.channel_name)

    async def inbox_frame(self, event: dict[str, Any]) -> None:
        # What the group sends goes only to a user still allowed to answer customers: staff
        # status or the permission may have been taken away since the socket opened.
        if not await self._still_an_agent():
            return
        await self._send_frame(event["frame"])

    async def _still_an_agent(self) -> bool:
        """Whether this socket's user may still answer customers; if not, the socket leaves the
        inbox group and closes (4403)."""
        try:
            await database_sync_to_async(handoff.check_agent)(self.user_id)
        except ProtocolError:
            await self.channel_layer.group_discard(handoff_events.INBOX_GROUP, self.channel_name)
            await database_sync_to_async(handoff.do_agent_left)(self.channel_name)
            self.user_id = None
            await self.close(code=CLOSE_FORBIDDEN)
            return False
        return True

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.user_id is None:
            return  # refused at connect; the close is on its way
        try:
            frame_type, payload = protocol.decode_frame(
                text_data, bytes_data, protocol.INBOX_FRAME_TYPES
            )
            if frame_type == "ping":
                await database_sync_to_async(handoff.do_agent_seen)(self.user_id, self.channel_name)
                await self._send_frame({"type": "pong"})
                return
            frame = protocol.parse_inbox_frame(payload)
            if isinstance(frame, AgentMessageFrame):
                await self._agent_message(frame)
            elif isinstance(frame, InboxPageFrame):
                await database_sync_to_async(handoff.check_agent)(self.user_id)
                page = await database_sync_to_async(inbox_views.inbox_page)(frame.offset)
                await self._send_frame({"type": "inbox.page", **page})
            elif frame.type == "claim":
                conversation = await database_sync_to_async(handoff.do_claim)(
                    frame.conversation, self.user_id
                )
                await handoff_events.status_changed(conversation.pk)
                await self._send_transcript(conversation.pk)
            elif frame.type == "transcript":
                await self._send_transcript(frame.conversation)
            else:
                release = handoff.do_close if frame.type == "close" else handoff.do_hand_back
                conversation = await database_sync_to_async(release)(
                    frame.conversation, self.user_id
                )
                await handoff_events.status_changed(conversation.pk)
        except ProtocolError as error:
            await self._send_frame(error.as_frame())
        except Exception:
            logger.exception("inbox frame failed")
            await self._send_frame(ProtocolError("busy", UNEXPECTED).as_frame())

    async def _agent_message(self, frame: AgentMessageFrame) -> None:
        reply = await database_sync_to_async(handoff.do_post_agent_message)(
            frame.conversation, self.user_id, frame.text, frame.client_id or ""
        )
        saved = {
            "type": "agent_message.saved",
            "conversation": str(reply.conversation_id),
            "id": reply.message_id,
            "client_id": reply.client_id or None,
        }
        if reply.repeat:
            await self._send_frame(saved)
            return
        await handoff_events.to_customer(reply.conversation_id, reply.customer_frame())
        await self._send_frame(saved)
        await handoff_events.new_message(reply.conversation_id, reply.message_id)
        try:
            await self._learn_from(reply.message_id)
        except Exception:
            logger.exception("could not record agent answer %s for training", reply.message_id)

    async def _learn_from(self, message_id: int) -> None:
        question = await database_sync_to_async(agent_answers.answered_question)(message_id)
        if question is None:
            return
        found = await retrieval.retrieve(question.text)
        await database_sync_to_async(agent_answers.do_record_agent_answer)(
            message_id, answering.grounding_of(found)
        )

    async def _send_transcript(self, conversation_id: Any) -> None:
        await database_sync_to_async(handoff.check_agent)(self.user_id)  # a transcript too
        frame = await database_sync_to_async(inbox_views.transcript)(conversation_id)
        await self._send_frame(frame)

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        try:
            await self.send(text_data=json.dumps(frame, ensure_ascii=False))
        except Exception:
            logger.debug("dropped a frame for a closed inbox socket", exc_info=True)
