"""Bad frames on /ws/chat/ get an `error` frame with the right code; the socket stays usable."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from conversations.models import Message
from tests.conversations.chat_sockets import (
    expect_error,
    new_session_cookie,
    open_chat,
    send_text,
    still_open,
)

pytestmark = pytest.mark.usefixtures("chat_test")


@pytest.fixture
async def socket():
    socket, _ = await open_chat(await new_session_cookie())
    yield socket
    await socket.disconnect()


@pytest.mark.parametrize(
    ("text", "code", "detail"),
    [
        ("this is not json", "bad_json", "Frame is not valid JSON."),
        ('{"type": "user_message", "text": "hi"', "bad_json", "Frame is not valid JSON."),
        ("[" * 5000 + "]" * 5000, "bad_json", "Frame is not valid JSON."),
        ('["user_message"]', "invalid", "Frame must be a JSON object."),
        ('"ping"', "invalid", "Frame must be a JSON object."),
        ("{}", "unknown_type", "Frame has no string 'type'."),
        ('{"type": 7}', "unknown_type", "Frame has no string 'type'."),
        ('{"type": "delete_everything"}', "unknown_type", "Unknown frame type."),
        ('{"type": "user_message"}', "invalid", "text is required"),
        ('{"type": "user_message", "text": 12}', "invalid", "text: Input should be a valid string"),
        ('{"type": "user_message", "text": "   "}', "invalid", "text must not be empty"),
        (
            json.dumps({"type": "user_message", "text": "hi", "client_id": "x" * 65}),
            "invalid",
            "client_id: String should have at most 64 characters",
        ),
        ('{"type": "feedback", "rating": 1}', "invalid", "message_id is required"),
        (
            '{"type": "feedback", "message_id": 0, "rating": 1}',
            "invalid",
            "message_id: Input should be greater than or equal to 1",
        ),
        (
            json.dumps({"type": "feedback", "message_id": 2**70, "rating": 1}),
            "invalid",
            "message_id: Input should be less than or equal to 9223372036854775807",
        ),
    ],
)
async def test_it_answers_a_bad_frame_and_stays_open(socket, text, code, detail):
    await send_text(socket, text)

    error = await expect_error(socket, code)

    assert error["detail"] == detail
    await still_open(socket)


async def test_it_refuses_text_over_the_message_limit(socket, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 10

    await socket.send_json_to({"type": "user_message", "text": "x" * 11})

    error = await expect_error(socket, "too_long")
    assert error["detail"] == "text is longer than 10 characters"
    await still_open(socket)
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_it_measures_the_frame_limit_in_utf8_bytes(socket, settings):
    settings.CHAT_MAX_FRAME_BYTES = 300
    settings.CHAT_MAX_MESSAGE_CHARS = 1000
    # 100 characters, but 400 bytes in UTF-8: over the frame limit before it is parsed.
    frame = '{"type": "user_message", "text": "' + "😀" * 100 + '"}'
    assert len(frame) < 300 < len(frame.encode())

    await send_text(socket, frame)

    error = await expect_error(socket, "too_long")
    assert error["detail"] == "Frame is larger than 300 bytes."
    await still_open(socket)


async def test_it_refuses_a_frame_over_the_size_limit_even_if_it_is_not_json(socket, settings):
    await send_text(socket, "x" * (settings.CHAT_MAX_FRAME_BYTES + 1))

    await expect_error(socket, "too_long")
    await still_open(socket)


async def test_it_refuses_binary_frames(socket):
    await socket.send_to(bytes_data=b'{"type": "ping"}')

    error = await expect_error(socket, "invalid")
    assert error["detail"] == "Binary frames are not supported; send JSON text."
    await still_open(socket)


async def test_it_answers_an_unexpected_failure_with_an_error_frame(socket, monkeypatch):
    from conversations import services

    def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(services, "do_rate_message", broken)

    await socket.send_json_to({"type": "feedback", "message_id": 1, "rating": 1})

    await expect_error(socket, "busy")
    await still_open(socket)
