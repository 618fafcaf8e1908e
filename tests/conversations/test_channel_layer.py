"""The websocket survives idle time on the production channel layer (channels-redis)."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings

from tests.conversations.chat_sockets import TIMEOUT, new_session_cookie, open_chat

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "channels_redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"],
        reason="needs REDIS_URL (channels-redis); CI sets it",
    ),
]


async def test_an_idle_socket_stays_open_longer_than_a_blocking_redis_read():
    # channels-redis blocks 5 s per read of the consumer's channel; with redis-py's default
    # 5 s socket timeout every idle consumer crashed ("Timeout reading from …").
    socket, _ = await open_chat(await new_session_cookie())
    try:
        await asyncio.sleep(7)
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
    finally:
        await socket.disconnect()
