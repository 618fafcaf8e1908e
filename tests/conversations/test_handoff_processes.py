"""An agent's reply crosses web processes: the customer's socket on a live Daphne process, the
agent's inbox socket in this test process, the two meeting only in Redis (channels-redis).

This is the production layout behind a load balancer: nothing but the channel layer's groups
connects the two processes. Needs REDIS_URL (CI sets it); the in-memory layer cannot cross
processes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.conversations.chat_sockets import (
    TIMEOUT,
    login_cookie,
    new_session_cookie,
    open_inbox,
    receive_until,
)
from tests.conversations.live_server import daphne_serving

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "channels_redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"],
        reason="needs REDIS_URL (channels-redis) to cross processes; CI sets it",
    ),
]


@pytest.fixture
def live_server_url(transactional_db: None, tmp_path: Path) -> Iterator[str]:
    with daphne_serving(tmp_path) as url:
        yield url


async def _next(socket: Any, frame_type: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))
        if frame["type"] == frame_type:
            return frame


async def test_an_agents_reply_reaches_a_customer_on_another_process(live_server_url, staff_user):
    from websockets.asyncio.client import connect

    cookie = await new_session_cookie()
    chat_url = live_server_url.replace("http://", "ws://") + "/ws/chat/"
    async with connect(
        chat_url, origin=live_server_url, additional_headers={"Cookie": cookie}
    ) as customer:
        conversation = (await _next(customer, "conversation"))["conversation"]
        await customer.send(json.dumps({"type": "handoff"}))
        assert (await _next(customer, "status"))["status"] == "waiting_for_agent"
        inbox, hello = await open_inbox(await login_cookie(staff_user))
        assert [row["id"] for row in hello["conversations"]] == [conversation]

        await inbox.send_json_to({"type": "claim", "conversation": conversation})
        claimed = await _next(customer, "status")
        await inbox.send_json_to(
            {"type": "agent_message", "conversation": conversation, "text": "Hello from B"}
        )
        delivered = await _next(customer, "agent_message")
        # And back: the customer's next message shows in this process's inbox.
        await customer.send(json.dumps({"type": "user_message", "text": "thanks!"}))
        while (shown := await receive_until(inbox, "message"))["message"]["role"] != "user":
            pass  # the agent's own message is shown to every inbox first

        assert claimed["status"] == "with_agent" and claimed["agent"] == "staff"
        assert (delivered["text"], delivered["agent"]) == ("Hello from B", "staff")
        assert (shown["conversation"], shown["message"]["text"]) == (conversation, "thanks!")
        await inbox.disconnect()
