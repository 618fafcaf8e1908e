"""`conversations.replying`: a reply's frames, driven without a socket (as a benchmark does)."""

from __future__ import annotations

import dataclasses

import pytest
from channels.db import database_sync_to_async

from conversations import replying, services
from conversations.models import Message
from knowledge import answering
from tests.conversations.retrieval_stubs import SHIPPING, found, low

OWNER = services.Owner(user_id=None, session_key="replying-test-session")


async def reply_frames(text: str) -> tuple[list[dict], Message | None]:
    conversation = await database_sync_to_async(services.do_open_conversation)(OWNER, None)
    frames = [frame async for frame in replying.Reply(conversation.pk, OWNER).frames(text, "c-1")]
    bot = await Message.objects.filter(
        conversation=conversation, role=Message.Role.ASSISTANT
    ).afirst()
    return frames, bot


@pytest.mark.django_db(transaction=True)
async def test_a_decline_is_a_whole_reply_of_frames_and_is_stored(retrieved):
    retrieved["answer"] = found(low(SHIPPING, 0.05))  # nothing in the articles answers it

    frames, bot = await reply_frames("what is the airspeed of a swallow?")

    assert [frame["type"] for frame in frames] == [
        "user_message.saved",
        "bot_message.start",
        "bot_message.delta",
        "bot_message.end",
    ]
    assert frames[-1]["model_version"] is None
    assert frames[-1]["text"] == bot.text
    assert answering.is_decline(bot.text) and bot.declined


@pytest.mark.django_db(transaction=True)
async def test_a_grounded_reply_streams_from_the_active_model_and_is_stored(
    retrieved, active_model_version, settings
):
    settings.KNOWLEDGE_GUARD_FALLBACK = "off"  # the model's text as written: see below
    retrieved["answer"] = found(SHIPPING)

    frames, bot = await reply_frames("how much is shipping?")

    types = [frame["type"] for frame in frames]
    assert types[:2] == ["user_message.saved", "bot_message.start"]
    assert types[-1] == "bot_message.end" and set(types[2:-1]) <= {"bot_message.delta"}
    assert frames[-1]["model_version"] == active_model_version.name
    assert "".join(frame["text"] for frame in frames[2:-1]) == frames[-1]["text"] == bot.text
    assert bot.grounding[0]["id"] == SHIPPING.id
    assert retrieved["questions"] == ["how much is shipping?"]


@pytest.mark.django_db(transaction=True)
async def test_a_reply_that_says_what_its_article_does_not_is_replaced_by_the_article(
    retrieved, active_model_version
):
    # The tiny starter model learned the demo shop's answers by heart: shown the shipping
    # article, it tells the customer about something else (the faithfulness guard's case).
    retrieved["answer"] = found(SHIPPING)

    frames, bot = await reply_frames("how much is shipping?")

    generated = "".join(frame["text"] for frame in frames[2:-1])
    assert generated != SHIPPING.text
    assert frames[-1]["text"] == bot.text == SHIPPING.text  # what the customer is shown
    assert frames[-1]["model_version"] == active_model_version.name
    assert (bot.guard, bot.generated_text, bot.declined) == ("unsupported", generated, False)


@pytest.mark.django_db(transaction=True)
async def test_the_guard_falls_back_to_the_decline_when_told_to(
    retrieved, active_model_version, settings
):
    settings.KNOWLEDGE_GUARD_FALLBACK = "decline"
    retrieved["answer"] = found(SHIPPING)

    frames, bot = await reply_frames("how much is shipping?")

    assert answering.is_decline(frames[-1]["text"]) and frames[-1]["text"] == bot.text
    assert (bot.guard, bot.declined) == ("unsupported", True)


@pytest.mark.django_db(transaction=True)
async def test_with_no_active_model_the_reply_ends_in_an_error_frame(retrieved):
    retrieved["answer"] = found(SHIPPING)

    frames, bot = await reply_frames("how much is shipping?")

    assert frames == [
        {"type": "user_message.saved", "id": frames[0]["id"], "client_id": "c-1"},
        {"type": "error", "code": "busy", "detail": replying.UNAVAILABLE},
    ]
    assert bot is None  # nothing was produced: the failed reply is not kept


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("confident_score", "overruled"), [(0.8, True), (0.9, False), (None, False)]
)
async def test_a_model_decline_is_overruled_only_above_the_confident_score(
    retrieved, active_model_version, monkeypatch, confident_score, overruled
):
    # Whatever the tiny model writes is taken for a decline; SHIPPING scores 0.82.
    monkeypatch.setattr(answering, "is_decline", lambda text: True)
    retrieved["answer"] = dataclasses.replace(found(SHIPPING), confident_score=confident_score)

    frames, bot = await reply_frames("how much is shipping?")

    assert frames[-1]["text"] == bot.text and bot.guard == "model_decline"
    assert bot.generated_text == "".join(frame["text"] for frame in frames[2:-1])
    if overruled:
        assert (bot.text, bot.declined) == (SHIPPING.text, False)
    else:
        assert bot.declined and bot.text != SHIPPING.text
