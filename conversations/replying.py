"""One reply, from the customer's message to the frames the customer sees.

``Reply.frames`` stores the message, retrieves the articles for it, lets
``knowledge.answering.decide_reply`` decide, then declines (and hands the conversation to a
person when the rules say so) or streams the active model's reply, and ends it: every outcome
is a frame of the protocol (docs/protocol.md), never an exception. The chat consumer only
moves these frames to its socket; a benchmark can drive a reply without one.

A failed generation is expected (the engine reports it in the reply's result) and logged as
one line; only an unexpected exception gets a traceback. When the engine's queue is full, or
the generation server (GENERATION_BACKEND=openai) refuses the request, the message is kept and
answered ``busy`` at once. A decline is stored and sent with the same frames as a generated
reply (``bot_message.end`` then carries ``"model_version": null``: no model wrote it).

``Reply.cancel`` (the customer went away) tells the engine to stop generating at its next
step; the reply still stores the text produced so far, with finish reason ``disconnected``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async

from conversations import handoff, handoff_events, services
from conversations.models import Message
from conversations.protocol import ProtocolError
from knowledge import answering, faithfulness, retrieval
from knowledge.profile import business_contact
from serving import backends
from serving.generation import ActiveVersion, EngineBusy

if TYPE_CHECKING:
    from serving.generation import GenerationStream

logger = logging.getLogger(__name__)

UNAVAILABLE = "The assistant is unavailable right now; please try again later."
UNEXPECTED = "Something went wrong on our side; please try again."
BUSY = "The assistant is answering many customers right now; please try again in a moment."

Frame = dict[str, Any]


class Reply:
    """The reply to one customer message in ``conversation_id``, owned by ``owner``."""

    def __init__(self, conversation_id: uuid.UUID, owner: services.Owner) -> None:
        self.conversation_id = conversation_id
        self.owner = owner
        self.cancelled = False
        self._stream: GenerationStream | None = None

    def cancel(self) -> None:
        """The customer has gone: stop generating; what was produced is still stored."""
        self.cancelled = True
        if self._stream is not None:
            self._stream.cancel()

    async def frames(self, text: str, client_id: str) -> AsyncIterator[Frame]:
        """The frames of the reply to ``text``, as they happen.

        However generation ends, the engine's result says how, ``services.do_end_reply``
        decides what is kept, and the customer gets ``bot_message.end`` for a finished reply or
        an ``error`` frame for one that failed.
        """
        bot_message_id: int | None = None
        produced: list[str] = []
        version: ActiveVersion | None = None
        grounding: list[dict[str, Any]] = []
        try:
            posted = await database_sync_to_async(services.do_post_user_message)(
                self.conversation_id, self.owner, text, client_id
            )
            yield {
                "type": "user_message.saved",
                "id": posted.user_message_id,
                "client_id": client_id or None,
            }
            if posted.handed_off:  # a person answers: show the message in the inbox
                await handoff_events.new_message(self.conversation_id, posted.user_message_id)
                return
            if posted.bot_message_id is None:
                return  # a repeat of a stored message: it has (or is getting) its reply already
            if posted.reopened:
                await handoff_events.status_changed(self.conversation_id)
            bot_message_id = posted.bot_message_id
            found = await retrieval.retrieve(text)
            plan = answering.decide_reply(text, found, posted.turns)
            grounding = plan.grounding
            if plan.declined:
                await database_sync_to_async(services.do_decline_reply)(bot_message_id, plan)
                for frame in _whole_reply_frames(bot_message_id, plan.decline_text):
                    yield frame
                reason = handoff.Conversation.HandoffReason.ASKED if plan.person_asked else None
                async for frame in _hand_off_if_due(self.conversation_id, reason):
                    yield frame
                return
            version = await backends.get_active_version()
            if version is None:
                raise ProtocolError("busy", UNAVAILABLE)
            # Raises EngineBusy when the engine's queue is full or the generation server refuses
            # the request (stream_reply, open): no reply is announced.
            stream = backends.get_engine().stream_reply(version, plan.turns)
            self._stream = stream
            if self.cancelled:
                stream.cancel()  # gone before generation started: nothing will be produced
            if await stream.open():  # False: it failed before any text (a server that is down)
                yield {"type": "bot_message.start", "id": bot_message_id}
            async for delta in stream:
                produced.append(delta)
                yield {"type": "bot_message.delta", "id": bot_message_id, "text": delta}
            result = stream.result
            if result.error is not None:
                logger.warning("reply %s failed: %s", bot_message_id, result.error)
            sent = _guarded(result.text, plan, found, finished=result.error is None)
            ending = await database_sync_to_async(services.do_end_reply)(
                bot_message_id,
                text=sent.text,
                guard=sent.reason,
                generated_text=result.text if sent.reason else "",
                declined=sent.declined,
                finish_reason=result.finish_reason,
                model_version_id=result.model_version_id,
                token_count=result.token_count,
                time_to_first_token_ms=result.time_to_first_token_ms,
                generation_ms=result.generation_ms,
                grounding=grounding,
            )
            if ending is services.ReplyEnding.FINISHED:
                # The engine answers each request with the version it was given.
                yield {
                    "type": "bot_message.end",
                    "id": bot_message_id,
                    "text": sent.text,
                    "model_version": version.name,
                }
                async for frame in _hand_off_if_due(self.conversation_id):  # the model declines too
                    yield frame
            else:
                yield ProtocolError("busy", UNAVAILABLE).as_frame()
        except EngineBusy:
            await _end_failed_reply(bot_message_id, produced, version, grounding)
            yield ProtocolError("busy", BUSY).as_frame()
        except ProtocolError as error:
            await _end_failed_reply(bot_message_id, produced, version, grounding)
            yield error.as_frame()
        except Exception:
            logger.exception("chat reply failed (message %s)", bot_message_id)
            await _end_failed_reply(bot_message_id, produced, version, grounding)
            yield ProtocolError("busy", UNAVAILABLE).as_frame()
        finally:
            self._stream = None


async def hand_off(
    conversation_id: uuid.UUID, reason: str, *, always_answer: bool = False
) -> AsyncIterator[Frame]:
    """Queue the conversation for a person; everyone concerned hears of it through the
    conversation's group. A customer who asked (``always_answer``) is told the status even
    when nothing changed: that frame is the one yielded."""
    changed = await database_sync_to_async(handoff.do_request_handoff)(conversation_id, reason)
    if changed:
        await handoff_events.status_changed(conversation_id)
    elif always_answer:
        frame = await database_sync_to_async(handoff.status_frame)(conversation_id)
        if frame["status"] == handoff.Status.OPEN:  # handoff is off
            frame = {**frame, "detail": f"Our team is reachable at {business_contact()}."}
        yield frame


async def _hand_off_if_due(
    conversation_id: uuid.UUID, reason: str | None = None
) -> AsyncIterator[Frame]:
    """Hand off for ``reason`` (the customer asked for a person), or after
    HANDOFF_AFTER_DECLINES declines in a row."""
    if reason is None:
        if not await database_sync_to_async(handoff.declined_too_often)(conversation_id):
            return
        reason = handoff.Conversation.HandoffReason.DECLINES
    async for frame in hand_off(conversation_id, reason):
        yield frame


def _guarded(
    generated: str, plan: answering.ReplyPlan, found: retrieval.Retrieval, *, finished: bool
) -> faithfulness.GuardedReply:
    """What the customer gets for the model's finished reply (``knowledge.faithfulness``); a
    failed one is kept as it is."""
    is_decline = answering.is_decline(generated)
    if not finished:
        return faithfulness.GuardedReply(generated, "", is_decline)
    decline = answering.decline_text(person_asked=False, topics=answering.decline_topics(found))
    confident = found.confident_score is not None and found.best_score >= found.confident_score
    return faithfulness.guard_reply(
        generated, plan.grounding, is_decline=is_decline, decline_text=decline, confident=confident
    )


def _whole_reply_frames(bot_message_id: int, text: str) -> list[Frame]:
    """A reply no model wrote, sent as any reply is sent: start, one delta, end."""
    return [
        {"type": "bot_message.start", "id": bot_message_id},
        {"type": "bot_message.delta", "id": bot_message_id, "text": text},
        {"type": "bot_message.end", "id": bot_message_id, "text": text, "model_version": None},
    ]


async def _end_failed_reply(
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
