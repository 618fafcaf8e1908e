"""Chatting over /ws/chat/: a message is stored, the reply streams, is stored, and survives."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from conversations import services
from conversations.models import Conversation, Feedback, Message
from tests.conversations.chat_sockets import (
    TIMEOUT,
    chat_socket,
    chat_turn,
    expect_error,
    new_session_cookie,
    open_chat,
    receive,
    still_open,
)

pytestmark = pytest.mark.usefixtures("chat_test")


@database_sync_to_async
def messages_of(conversation: str) -> list[Message]:
    return list(Message.objects.filter(conversation_id=conversation).order_by("id"))


@database_sync_to_async
def add_user_messages(conversation: str, count: int, age_seconds: float = 0) -> None:
    created = timezone.now() - timedelta(seconds=age_seconds)
    for n in range(count):
        message = Message.objects.create(conversation_id=conversation, role="user", text=f"q{n}")
        Message.objects.filter(pk=message.pk).update(created_at=created)


async def test_it_streams_a_reply_and_stores_both_messages(cookie, active_model_version):
    socket, hello = await open_chat(cookie)
    assert hello["messages"] == []

    turn = await chat_turn(socket, "  hi, where is my order?  ", client_id="c-1")

    question, reply = await messages_of(hello["conversation"])
    assert turn["saved"] == {"type": "user_message.saved", "id": question.pk, "client_id": "c-1"}
    assert (question.role, question.text, question.client_id) == (
        "user",
        "hi, where is my order?",
        "c-1",
    )
    assert turn["start"] == {"type": "bot_message.start", "id": reply.pk}
    assert turn["deltas"] and all(turn["deltas"])
    end = turn["end"]
    assert end["id"] == reply.pk
    assert "".join(turn["deltas"]) == end["text"] == reply.text
    assert end["model_version"] == active_model_version.name
    assert reply.role == "assistant"
    assert reply.model_version_id == active_model_version.pk
    assert reply.finish_reason in ("stop", "length")
    assert reply.token_count and reply.token_count > 0
    assert reply.generation_ms is not None and reply.time_to_first_token_ms is not None
    await socket.disconnect()


async def test_it_prompts_with_the_whole_conversation(cookie, active_model_version, monkeypatch):
    from serving import backends

    seen: list[list[dict[str, str]]] = []
    engine = backends.get_engine()
    real_stream_reply = engine.stream_reply

    def recording_stream_reply(version, turns):
        seen.append(turns)
        return real_stream_reply(version, turns)

    monkeypatch.setattr(engine, "stream_reply", recording_stream_reply)
    socket, _ = await open_chat(cookie)
    first = await chat_turn(socket, "first question")
    await chat_turn(socket, "second question")

    assert seen[1] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": first["end"]["text"]},
        {"role": "user", "content": "second question"},
    ]
    await socket.disconnect()


async def test_it_shows_history_and_ratings_on_reconnect(cookie, active_model_version):
    socket, hello = await open_chat(cookie)
    turn = await chat_turn(socket, "do you ship to canada")
    reply_id = turn["end"]["id"]
    await socket.send_json_to({"type": "feedback", "message_id": reply_id, "rating": -1})
    assert (await receive(socket))["type"] == "feedback.saved"
    await socket.disconnect()

    again, resumed = await open_chat(cookie, hello["conversation"])

    assert resumed["conversation"] == hello["conversation"]
    assert resumed["messages"] == [
        {
            "id": turn["saved"]["id"],
            "role": "user",
            "text": "do you ship to canada",
            "rating": None,
        },
        {"id": reply_id, "role": "assistant", "text": turn["end"]["text"], "rating": -1},
    ]
    await again.disconnect()


async def test_it_starts_a_new_conversation_for_the_session(cookie):
    socket, hello = await open_chat(cookie)
    await socket.disconnect()

    conversation = await database_sync_to_async(Conversation.objects.get)(pk=hello["conversation"])
    assert conversation.session_key == cookie.split("=", 1)[1]
    assert conversation.user_id is None


async def test_it_answers_busy_while_a_reply_is_generating(cookie, active_model_version):
    socket, hello = await open_chat(cookie)
    await socket.send_json_to({"type": "user_message", "text": "first"})
    await socket.send_json_to({"type": "user_message", "text": "second"})

    frames = []
    while (frame := await receive(socket))["type"] != "bot_message.end":
        frames.append(frame)
    await still_open(socket)

    assert [f for f in frames if f["type"] == "error"] == [
        {
            "type": "error",
            "code": "busy",
            "detail": "Wait for the reply before sending another message.",
        }
    ]
    assert [m.text for m in await messages_of(hello["conversation"]) if m.role == "user"] == [
        "first"
    ]
    await socket.disconnect()


async def test_it_acknowledges_a_repeated_client_id_without_replying_again(
    cookie, active_model_version
):
    socket, hello = await open_chat(cookie)
    turn = await chat_turn(socket, "where is my parcel", client_id="retry-1")

    await socket.send_json_to(
        {"type": "user_message", "text": "where is my parcel", "client_id": "retry-1"}
    )

    assert await receive(socket) == {
        "type": "user_message.saved",
        "id": turn["saved"]["id"],
        "client_id": "retry-1",
    }
    assert await socket.receive_nothing(timeout=0.5)
    roles = [m.role for m in await messages_of(hello["conversation"])]
    assert roles == ["user", "assistant"]
    await socket.disconnect()


async def test_it_rate_limits_an_owner_across_conversations(cookie, settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 3
    earlier, first = await open_chat(cookie)
    await earlier.disconnect()
    await add_user_messages(first["conversation"], 2, age_seconds=90)  # outside the window
    await add_user_messages(first["conversation"], 3)

    socket, hello = await open_chat(cookie)
    await socket.send_json_to({"type": "user_message", "text": "hello?"})

    await expect_error(socket, "rate_limited")
    await still_open(socket)
    assert await messages_of(hello["conversation"]) == []
    await socket.disconnect()


async def test_it_does_not_count_other_sessions_against_the_limit(settings, active_model_version):
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    other, theirs = await open_chat(await new_session_cookie())
    await other.disconnect()
    await add_user_messages(theirs["conversation"], 3)

    socket, _ = await open_chat(await new_session_cookie())
    turn = await chat_turn(socket, "hello")

    assert turn["end"]["text"] is not None
    await socket.disconnect()


async def test_it_rate_limits_one_networks_sessions_together(settings, active_model_version):
    # Sessions cost nothing: the cap per network holds across them, and across addresses of one
    # IPv6 /64; another network is not held back.
    settings.CHAT_MESSAGES_PER_MINUTE = 10
    settings.CHAT_MESSAGES_PER_MINUTE_PER_NETWORK = 3
    for n in range(3):
        socket, hello = await open_chat(await new_session_cookie(), client=f"2001:db8::{n + 1}")
        await socket.disconnect()
        await add_user_messages(hello["conversation"], 1)

    crowd, _ = await open_chat(await new_session_cookie(), client="2001:db8::99")
    await crowd.send_json_to({"type": "user_message", "text": "hello?"})
    elsewhere, _ = await open_chat(await new_session_cookie(), client="2001:db8:1::1")
    turn = await chat_turn(elsewhere, "hello")

    error = await expect_error(crowd, "rate_limited")
    assert "your network" in error["detail"]
    assert turn["end"]["text"] is not None
    stored = await database_sync_to_async(
        lambda: set(Conversation.objects.values_list("network", flat=True))
    )()
    assert len(stored) == 2 and "2001" not in "".join(stored)  # a keyed hash, no address
    await crowd.disconnect()
    await elsewhere.disconnect()


async def test_it_refuses_a_message_past_the_conversation_length_limit(cookie, settings):
    settings.CHAT_MAX_CONVERSATION_MESSAGES = 4
    socket, hello = await open_chat(cookie)
    await add_user_messages(hello["conversation"], 3, age_seconds=120)

    await socket.send_json_to({"type": "user_message", "text": "one more"})

    error = await expect_error(socket, "too_long")
    assert "limit of 4 messages" in error["detail"]
    await still_open(socket)
    assert len(await messages_of(hello["conversation"])) == 3
    await socket.disconnect()


async def test_it_answers_busy_and_stores_nothing_without_an_active_model(cookie):
    socket, hello = await open_chat(cookie)
    await socket.send_json_to({"type": "user_message", "text": "anyone there?"})

    saved = await receive(socket)
    assert saved["type"] == "user_message.saved"
    # No `bot_message.start`: no reply is announced that will not come.
    error = await expect_error(socket, "busy")
    assert error["detail"] == "The assistant is unavailable right now; please try again later."
    await still_open(socket)
    # The question is kept; the empty reply row is gone, so history shows no empty bubble.
    assert [(m.pk, m.role) for m in await messages_of(hello["conversation"])] == [
        (saved["id"], "user")
    ]
    assert await database_sync_to_async(Feedback.objects.count)() == 0
    await socket.disconnect()


class FailingStream:
    """A reply stream whose model breaks after its first words."""

    result = None

    def __aiter__(self):
        return self

    def __init__(self) -> None:
        self.sent = False

    async def open(self) -> bool:
        return True

    async def __anext__(self) -> str:
        if not self.sent:
            self.sent = True
            return "We ship"
        raise RuntimeError("checkpoint vanished")


async def test_it_keeps_the_partial_reply_as_an_error_when_generation_fails(
    cookie, active_model_version, monkeypatch
):
    from serving import backends

    monkeypatch.setattr(
        backends.get_engine(), "stream_reply", lambda version, turns: FailingStream()
    )
    socket, hello = await open_chat(cookie)
    await socket.send_json_to({"type": "user_message", "text": "shipping?"})

    assert (await receive(socket))["type"] == "user_message.saved"
    start = await receive(socket)
    assert await receive(socket) == {
        "type": "bot_message.delta",
        "id": start["id"],
        "text": "We ship",
    }
    await expect_error(socket, "busy")
    await still_open(socket)

    reply = (await messages_of(hello["conversation"]))[-1]
    assert (reply.pk, reply.text, reply.finish_reason) == (start["id"], "We ship", "error")
    assert reply.model_version_id == active_model_version.pk
    # Shown in the history, but never put back into the model's prompt.
    again, resumed = await open_chat(cookie, hello["conversation"])
    assert [m["text"] for m in resumed["messages"]] == ["shipping?", "We ship"]
    assert await database_sync_to_async(services.prompt_turns)(hello["conversation"]) == [
        {"role": "user", "content": "shipping?"}
    ]
    await again.disconnect()
    await socket.disconnect()


async def test_it_hides_a_reply_still_being_written_from_history(cookie):
    socket, hello = await open_chat(cookie)
    await socket.disconnect()
    await add_user_messages(hello["conversation"], 1)
    await database_sync_to_async(Message.objects.create)(
        conversation_id=hello["conversation"], role="assistant", text="", finish_reason=""
    )

    again, resumed = await open_chat(cookie, hello["conversation"])

    assert [m["role"] for m in resumed["messages"]] == ["user"]
    await again.disconnect()


def test_it_acknowledges_a_client_id_that_a_racing_connection_stored(db, monkeypatch):
    conversation = Conversation.objects.create(session_key="racer")
    owner = services.Owner(user_id=None, session_key="racer")
    first = services.do_post_user_message(conversation.pk, owner, "hi", "dup")
    real_lookup = services._existing_message
    lookups = []

    def lookup_that_loses_the_race(conversation_id, client_id):
        lookups.append(client_id)
        # The first look finds nothing: the other connection commits right after it.
        return None if len(lookups) == 1 else real_lookup(conversation_id, client_id)

    monkeypatch.setattr(services, "_existing_message", lookup_that_loses_the_race)

    again = services.do_post_user_message(conversation.pk, owner, "hi", "dup")

    assert (again.user_message_id, again.bot_message_id) == (first.user_message_id, None)
    assert len(lookups) == 2
    assert Message.objects.filter(conversation=conversation).count() == 2


async def test_one_network_opens_at_most_its_sockets_a_minute(settings, active_model_version):
    # Counted in the shared cache (Redis in CI): a fresh network each run, so that counts an
    # earlier run left in the current minute do not matter.
    settings.CHAT_CONNECTIONS_PER_MINUTE_PER_NETWORK = 3
    prefix = f"2001:db8:{uuid.uuid4().int % 0xFFFF:x}"
    for n in range(3):
        socket, _ = await open_chat(await new_session_cookie(), client=f"{prefix}::{n + 1}")
        await socket.disconnect()

    refused = chat_socket(await new_session_cookie(), client=f"{prefix}::99")
    connected, _ = await refused.connect(timeout=TIMEOUT)
    assert connected  # accepted, then closed: a browser only sees a close code after accept
    closing = await refused.receive_output(timeout=TIMEOUT)
    await refused.disconnect()
    elsewhere, hello = await open_chat(await new_session_cookie(), client=f"{prefix}:1::1")
    await elsewhere.disconnect()

    assert closing == {"type": "websocket.close", "code": 4429}
    assert hello["type"] == "conversation"  # another network is not held back
    opened = await database_sync_to_async(Conversation.objects.count)()
    assert opened == 4  # the refused socket opened no conversation
