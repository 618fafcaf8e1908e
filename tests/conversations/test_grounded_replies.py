"""Grounded replies over /ws/chat/: the articles go into the prompt, or the bot declines.

`knowledge.retrieval.retrieve` is replaced by one that returns fixed articles: these tests are
about what the chat does with a retrieval, not about finding the articles.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from conversations.models import Feedback, Message
from knowledge.prompt import grounded_turns
from knowledge.retrieval import NOTHING
from serving.engine import GenerationEngine
from tests.conversations.chat_sockets import (
    chat_turn,
    new_session_cookie,
    open_chat,
    receive,
)
from tests.conversations.retrieval_stubs import AS_STORED, RETURNS, SHIPPING, found, low

pytestmark = pytest.mark.usefixtures("chat_test")

CONTACT = "help@shop.example or +49 40 1234"


@pytest.fixture(autouse=True)
def knowledge_settings(settings):
    settings.KNOWLEDGE_MIN_SCORE = 0.45
    settings.BUSINESS_CONTACT = CONTACT


@pytest.fixture
def engine_prompts(monkeypatch):
    """The turns every reply was asked for with, as the engine received them."""
    prompts: list[list[dict[str, str]]] = []
    real_stream_reply = GenerationEngine.stream_reply

    def stream_reply(self, version, turns):
        prompts.append(turns)
        return real_stream_reply(self, version, turns)

    monkeypatch.setattr(GenerationEngine, "stream_reply", stream_reply)
    return prompts


@database_sync_to_async
def reply_of(turn) -> Message:
    return Message.objects.get(pk=turn["end"]["id"])


async def test_it_declines_when_no_article_matches_well_enough(
    retrieved, engine_prompts, active_model_version
):
    retrieved["answer"] = found(low(SHIPPING, 0.31), low(RETURNS, 0.22))
    socket, _ = await open_chat(await new_session_cookie())

    turn = await chat_turn(socket, "What's the weather tomorrow?")

    text = turn["end"]["text"]
    assert text == (
        "Sorry, I can't help with that: I can only answer questions about what our help "
        f"articles cover. If you'd like to talk to a person, our team can take over: {CONTACT}."
    )
    assert turn["deltas"] == [text]
    assert turn["end"] == {
        "type": "bot_message.end",
        "id": turn["start"]["id"],
        "text": text,
        "model_version": None,
    }
    assert engine_prompts == []  # no model ran
    assert retrieved["questions"] == ["What's the weather tomorrow?"]
    reply = await reply_of(turn)
    assert (reply.text, reply.declined, reply.finish_reason) == (text, True, "stop")
    assert reply.model_version_id is None
    assert reply.grounding == [{**AS_STORED[0], "score": 0.31}, {**AS_STORED[1], "score": 0.22}]
    await socket.disconnect()


async def test_it_declines_when_the_customer_asks_for_a_person_whatever_the_score(
    retrieved, engine_prompts, active_model_version, settings
):
    settings.HANDOFF_ENABLED = False  # the decline names the contact (tests/.../test_handoff.py)
    retrieved["answer"] = found(SHIPPING, RETURNS)
    socket, _ = await open_chat(await new_session_cookie())

    turn = await chat_turn(socket, "Can I talk to a human?")

    assert turn["end"]["text"] == (
        f"Of course: a person from our team can take over. You can reach them at {CONTACT}. "
        "Until then, I'm happy to answer questions about what our help articles cover."
    )
    assert engine_prompts == []
    reply = await reply_of(turn)
    assert reply.declined and reply.grounding == AS_STORED
    await socket.disconnect()


async def test_a_decline_needs_no_model_and_can_be_rated(retrieved):
    retrieved["answer"] = found(low(SHIPPING, 0.1))
    socket, _ = await open_chat(await new_session_cookie())

    turn = await chat_turn(socket, "tell me a joke")
    await socket.send_json_to({"type": "feedback", "message_id": turn["end"]["id"], "rating": -1})

    assert (await receive(socket))["type"] == "feedback.saved"
    feedback = await database_sync_to_async(Feedback.objects.get)()
    assert feedback.message_id == turn["end"]["id"]
    await socket.disconnect()


@pytest.mark.parametrize("history", [0, 2])
async def test_it_answers_from_the_articles_when_they_match(
    retrieved, engine_prompts, active_model_version, settings, history
):
    settings.CHAT_HISTORY_TURNS = history
    retrieved["answer"] = found(SHIPPING, RETURNS)
    socket, _ = await open_chat(await new_session_cookie())

    first = await chat_turn(socket, "how much is shipping?")
    await chat_turn(socket, "and returns?")

    question = {"role": "user", "content": "how much is shipping?"}
    assert engine_prompts[0] == grounded_turns([question], AS_STORED)
    assert engine_prompts[0][0]["role"] == "system"
    assert "1. Shipping cost\nStandard shipping costs 4.90 EUR." in engine_prompts[0][0]["content"]
    # The next turn is grounded in its own retrieval; the earlier turns are plain history, as
    # many as CHAT_HISTORY_TURNS keeps.
    assert engine_prompts[1][0]["role"] == "system"
    conversation = [
        question,
        {"role": "assistant", "content": first["end"]["text"]},
        {"role": "user", "content": "and returns?"},
    ]
    assert engine_prompts[1][1:] == conversation[2 - history :]
    assert first["end"]["model_version"] == active_model_version.name
    reply = await reply_of(first)
    assert reply.grounding == AS_STORED
    assert not reply.declined
    assert reply.model_version_id == active_model_version.pk
    assert reply.finish_reason in ("stop", "length")
    await socket.disconnect()


async def test_without_a_knowledge_base_it_answers_as_before(
    retrieved, engine_prompts, active_model_version
):
    retrieved["answer"] = NOTHING  # no embedded article: retrieval is disabled
    socket, _ = await open_chat(await new_session_cookie())

    turn = await chat_turn(socket, "can I talk to a human?")

    assert engine_prompts == [[{"role": "user", "content": "can I talk to a human?"}]]
    assert turn["end"]["model_version"] == active_model_version.name
    reply = await reply_of(turn)
    assert (reply.declined, reply.grounding) == (False, [])
    await socket.disconnect()
