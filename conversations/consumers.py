"""The chat websocket (`/ws/chat/`): speaks the protocol of DESIGN.md, nothing more.

Frames are decoded and validated in `conversations.protocol`, the rules live in
`conversations.services` (what is kept of a reply: `do_end_reply`); this module moves frames,
runs each reply as a background task and turns every failure into an `error` frame, so no
exception closes the socket with 1011. A failed generation is expected (the engine reports it
in the reply's result) and logged as one line; only an unexpected exception gets a traceback.

A reply's generation is a detached asyncio task kept alive by `_REPLY_TASKS`, not a child of
the consumer: when the client goes away mid-reply, Channels stops the consumer, the engine is
told to stop generating (the sequence leaves its batch at the next step), and the task still
stores the text produced so far with finish reason `disconnected`; its sends are dropped.
When the engine's queue is full, or the generation server (GENERATION_BACKEND=openai) refuses
the request, the message is kept and answered `busy` at once.

Before each reply the consumer awaits `knowledge.retrieval.retrieve` (off the event loop) and
`services.decide_reply` decides: a grounded prompt for the engine, or a decline, which is
stored and sent with the same frames as a generated reply (`bot_message.end` then carries
`"model_version": null`: no model wrote it).

Handoff: each socket joins its conversation's group (`conversations.handoff_events`), through
which agents' messages, status changes and the satisfaction question arrive from whatever
process the agent's inbox is on. A person-request decline, or the bot's
HANDOFF_AFTER_DECLINES-th decline in a row, hands the conversation to a person; while a person
has it, the customer's messages are stored and shown in the inbox, and no reply is generated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from conversations import handoff, handoff_events, protocol, satisfaction, services
from conversations.models import Message
from conversations.protocol import ProtocolError
from knowledge import retrieval
from serving import backends
from serving.generation import ActiveVersion, EngineBusy

if TYPE_CHECKING:
    from serving.generation import GenerationStream

logger = logging.getLogger(__name__)

# Close codes for a refused `?conversation=`: the socket is accepted first and then closed,
# because a handshake refused before `accept` reaches browsers as a bare HTTP 403.
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_SERVER_ERROR = 1011

UNAVAILABLE = "The assistant is unavailable right now; please try again later."
UNEXPECTED = "Something went wrong on our side; please try again."
BUSY = "The assistant is answering many customers right now; please try again in a moment."

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
        self.reply_stream: GenerationStream | None = None
        self.feedback_times: deque[float] = deque()
        await self.accept()
        try:
            self.owner = await self._resolve_owner()
            query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
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
        if self.reply_stream is not None:
            self.reply_stream.cancel()
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
            await self._send_error(ProtocolError("busy", UNEXPECTED))

    # --- user messages and replies ------------------------------------------------------

    async def _receive_user_message(self, payload: dict[str, Any]) -> None:
        frame = protocol.parse_user_message(payload)
        if self.reply_task is not None and not self.reply_task.done():
            raise ProtocolError("busy", "Wait for the reply before sending another message.")
        task = asyncio.create_task(self._reply(frame.text, frame.client_id))
        _REPLY_TASKS.add(task)
        task.add_done_callback(_REPLY_TASKS.discard)
        self.reply_task = task

    async def _reply(self, text: str, client_id: str) -> None:
        """Store the user's message, retrieve the articles for it, then generate, stream and
        store the reply, or decline.

        However generation ends, the engine's result says how, `services.do_end_reply` decides
        what is kept, and the client gets `bot_message.end` for a finished reply or an `error`
        frame for one that failed (after a disconnect, nothing is sent).
        """
        bot_message_id: int | None = None
        produced: list[str] = []
        version: ActiveVersion | None = None
        grounding: list[dict[str, Any]] = []
        try:
            posted = await database_sync_to_async(services.do_post_user_message)(
                self.conversation_id, self.owner, text, client_id
            )
            await self._send_frame(
                {
                    "type": "user_message.saved",
                    "id": posted.user_message_id,
                    "client_id": client_id or None,
                }
            )
            if posted.handed_off:  # a person answers: show the message in the inbox
                await handoff_events.new_message(self.conversation_id, posted.user_message_id)
                return
            if posted.bot_message_id is None:
                return  # a repeat of a stored message: it has (or is getting) its reply already
            if posted.reopened:
                await handoff_events.status_changed(self.conversation_id)
            bot_message_id = posted.bot_message_id
            found = await retrieval.retrieve(text)
            plan = services.decide_reply(text, found, posted.turns)
            grounding = plan.grounding
            if plan.declined:
                await self._decline(bot_message_id, plan)
                if plan.person_asked:
                    await self._hand_off(handoff.Conversation.HandoffReason.ASKED)
                else:
                    await self._hand_off_after_declines()
                return
            version = await backends.get_active_version()
            if version is None:
                raise ProtocolError("busy", UNAVAILABLE)
            # Raises EngineBusy when the engine's queue is full or the generation server refuses
            # the request (stream_reply, open): no reply is announced.
            stream = backends.get_engine().stream_reply(version, plan.turns)
            self.reply_stream = stream
            if self.disconnected:
                stream.cancel()  # gone before generation started: nothing will be produced
            if await stream.open():  # False: it failed before any text (a server that is down)
                await self._send_frame({"type": "bot_message.start", "id": bot_message_id})
            async for delta in stream:
                produced.append(delta)
                await self._send_frame(
                    {"type": "bot_message.delta", "id": bot_message_id, "text": delta}
                )
            result = stream.result
            if result.error is not None:
                logger.warning("reply %s failed: %s", bot_message_id, result.error)
            ending = await database_sync_to_async(services.do_end_reply)(
                bot_message_id,
                text=result.text,
                finish_reason=result.finish_reason,
                model_version_id=result.model_version_id,
                token_count=result.token_count,
                time_to_first_token_ms=result.time_to_first_token_ms,
                generation_ms=result.generation_ms,
                grounding=grounding,
            )
            if ending is services.ReplyEnding.FINISHED:
                end = {"type": "bot_message.end", "id": bot_message_id, "text": result.text}
                # The engine answers each request with the version it was given.
                await self._send_frame({**end, "model_version": version.name})
                await self._hand_off_after_declines()  # the model may decline too
            else:
                await self._send_error(ProtocolError("busy", UNAVAILABLE))
        except EngineBusy:
            await self._end_failed_reply(bot_message_id, produced, version, grounding)
            await self._send_error(ProtocolError("busy", BUSY))
        except ProtocolError as error:
            await self._end_failed_reply(bot_message_id, produced, version, grounding)
            await self._send_error(error)
        except Exception:
            logger.exception("chat reply failed (message %s)", bot_message_id)
            await self._end_failed_reply(bot_message_id, produced, version, grounding)
            await self._send_error(ProtocolError("busy", UNAVAILABLE))
        finally:
            self.reply_stream = None

    async def _decline(self, bot_message_id: int, plan: services.ReplyPlan) -> None:
        """Store the decline, then send it as any reply is sent: start, one delta, end."""
        await database_sync_to_async(services.do_decline_reply)(bot_message_id, plan)
        text = plan.decline_text
        await self._send_frame({"type": "bot_message.start", "id": bot_message_id})
        await self._send_frame({"type": "bot_message.delta", "id": bot_message_id, "text": text})
        end = {"type": "bot_message.end", "id": bot_message_id, "text": text}
        await self._send_frame({**end, "model_version": None})

    async def _end_failed_reply(
        self,
        bot_message_id: int | None,
        produced: list[str],
        version: ActiveVersion | None,
        grounding: list[dict[str, Any]],
    ) -> None:
        """End a reply that failed without the engine's result: the text sent so far decides."""
        if bot_message_id is None:
            return
        try:
            await database_sync_to_async(services.do_end_reply)(
                bot_message_id,
                text="".join(produced),
                finish_reason=Message.FinishReason.ERROR,
                model_version_id=version.id if version is not None else None,
                grounding=grounding,
            )
        except Exception:
            logger.exception("could not end failed reply %s", bot_message_id)

    # --- handoff to a person ------------------------------------------------------------

    async def _hand_off(self, reason: str, *, always_answer: bool = False) -> None:
        """Queue the conversation for a person; everyone concerned hears of it. A customer who
        asked (`always_answer`) is told the status even when nothing changed."""
        changed = await database_sync_to_async(handoff.do_request_handoff)(
            self.conversation_id, reason
        )
        if changed:
            await handoff_events.status_changed(self.conversation_id)
        elif always_answer:
            frame = await database_sync_to_async(handoff.status_frame)(self.conversation_id)
            if frame["status"] == handoff.Status.OPEN:  # handoff is off
                detail = f"Our team is reachable at {settings.BUSINESS_CONTACT}."
                frame = {**frame, "detail": detail}
            await self._send_frame(frame)

    async def _hand_off_after_declines(self) -> None:
        if await database_sync_to_async(handoff.declined_too_often)(self.conversation_id):
            await self._hand_off(handoff.Conversation.HandoffReason.DECLINES)

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
    def _resolve_owner(self) -> services.Owner:
        return services.resolve_owner(self.scope.get("user"), self.scope["session"])

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
