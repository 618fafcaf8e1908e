"""Many chats at once through /ws/chat/: separate complete streams, disconnects, `busy` overflow."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from conversations.models import Message
from knowledge.demo.corpus import load_corpus
from serving import backends
from serving.chat_template import greedy_replies
from serving.checkpoints import load_checkpoint
from serving.engine import GenerationEngine, GenerationOptions
from tests.conversations.chat_sockets import (
    TIMEOUT,
    chat_turn,
    expect_error,
    new_session_cookie,
    open_chat,
    receive,
    still_open,
)

pytestmark = pytest.mark.usefixtures("chat_test")

MAX_NEW_TOKENS = 40


QUESTIONS = [q for intent in load_corpus().intents[:3] for q in intent.questions[:2]] + ["hi"]


@pytest.fixture(scope="module")
def references(tiny_checkpoint) -> dict[str, str]:
    """What `generate` gives for each prompt on its own (no batch, no padding), greedy."""
    model, tokenizer = load_checkpoint(tiny_checkpoint)
    replies = greedy_replies(
        model, tokenizer, QUESTIONS, max_new_tokens=MAX_NEW_TOKENS, batch_size=1
    )
    return dict(zip(QUESTIONS, replies, strict=True))


@pytest.fixture
def use_engine():
    """Serve the chat with a fresh engine built with the given options."""
    previous = backends._engine

    def install(**options) -> GenerationEngine:
        backends._engine = GenerationEngine(
            GenerationOptions(max_new_tokens=MAX_NEW_TOKENS, **options)
        )
        return backends._engine

    yield install
    backends._engine = previous


@database_sync_to_async
def stored(message_id: int) -> Message | None:
    return Message.objects.filter(pk=message_id).first()


async def wait_until_ended(message_id: int) -> Message | None:
    """The reply row once its generation has ended (or None once it was deleted)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        message = await stored(message_id)
        if message is None or message.finish_reason:
            return message
        await asyncio.sleep(0.02)
    raise AssertionError(f"reply {message_id} never ended")


async def test_it_streams_concurrent_sessions_separately_and_completely(
    active_model_version, references, use_engine
):
    engine = use_engine(max_batch=32, batch_wait_ms=20)
    sockets = [await open_chat(await new_session_cookie()) for _ in QUESTIONS]

    turns = await asyncio.gather(
        *(
            chat_turn(socket, question)
            for (socket, _), question in zip(sockets, QUESTIONS, strict=True)
        )
    )

    assert engine.peak_batch > 1  # generated together, not one after another
    assert len({turn["end"]["id"] for turn in turns}) == len(QUESTIONS)
    for question, turn, (_, hello) in zip(QUESTIONS, turns, sockets, strict=True):
        reply = await stored(turn["end"]["id"])
        assert "".join(turn["deltas"]) == turn["end"]["text"] == reply.text
        assert reply.text == references[question], question
        assert str(reply.conversation_id) == hello["conversation"]
        assert reply.finish_reason in ("stop", "length")
        assert reply.model_version_id == active_model_version.pk
    for socket, _ in sockets:
        await socket.disconnect()


async def test_it_stops_a_reply_whose_client_left_and_keeps_what_it_wrote(
    active_model_version, references, use_engine, slow_steps
):
    engine = use_engine(max_queue=1)
    question = QUESTIONS[0]
    socket, _ = await open_chat(await new_session_cookie())
    await socket.send_json_to({"type": "user_message", "text": question})
    assert (await receive(socket))["type"] == "user_message.saved"
    start = await receive(socket)
    delta = await receive(socket)
    assert delta["type"] == "bot_message.delta"

    await socket.disconnect()
    reply = await wait_until_ended(start["id"])

    # Cut at the next step: the slot is free, and the row holds everything decoded for it.
    assert reply.finish_reason == "disconnected"
    assert reply.text.startswith(delta["text"])
    assert references[question].startswith(reply.text)
    assert len(reply.text) < len(references[question])
    assert reply.token_count <= 3 and reply.model_version_id == active_model_version.pk
    assert engine.accepted == 0
    # The one slot (GENERATION_ENGINE_MAX_QUEUE = 1) serves the next customer.
    other, _ = await open_chat(await new_session_cookie())
    turn = await chat_turn(other, QUESTIONS[1])
    assert turn["end"]["text"] == references[QUESTIONS[1]]
    await other.disconnect()


async def test_it_answers_busy_past_the_queue_limit_and_loses_nothing(
    active_model_version, references, use_engine, slow_steps
):
    use_engine(max_queue=2)
    chats = [await open_chat(await new_session_cookie()) for _ in range(3)]
    (first, _), (second, _), (third, third_hello) = chats
    for socket, question in ((first, QUESTIONS[0]), (second, QUESTIONS[2])):
        await socket.send_json_to({"type": "user_message", "text": question})
        assert (await receive(socket))["type"] == "user_message.saved"
        assert (await receive(socket))["type"] == "bot_message.start"

    await third.send_json_to({"type": "user_message", "text": QUESTIONS[4]})

    saved = await receive(third)
    assert saved["type"] == "user_message.saved"
    await expect_error(third, "busy")  # at once: no `bot_message.start`, no waiting
    await still_open(third)
    # The accepted replies all complete.
    for socket, question in ((first, QUESTIONS[0]), (second, QUESTIONS[2])):
        while (frame := await receive(socket))["type"] == "bot_message.delta":
            pass
        assert frame["type"] == "bot_message.end"
        assert frame["text"] == references[question]
        assert (await stored(frame["id"])).text == references[question]
    # The refused message is stored, with no empty reply beside it; asking again works.
    rows = await database_sync_to_async(list)(
        Message.objects.filter(conversation_id=third_hello["conversation"]).values_list(
            "role", "text"
        )
    )
    assert rows == [("user", QUESTIONS[4])]
    turn = await chat_turn(third, "hello again")
    assert turn["end"]["text"] and turn["end"]["model_version"] == active_model_version.name
    for socket, _ in chats:
        await socket.disconnect()
