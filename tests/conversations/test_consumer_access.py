"""Who may open which conversation on /ws/chat/: only its owner, and only from our origin."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async

from conversations.models import Conversation
from tests.conversations.chat_sockets import (
    TIMEOUT,
    chat_socket,
    login_cookie,
    new_session_cookie,
    open_chat,
    refused_with,
)

pytestmark = pytest.mark.usefixtures("chat_test")


async def test_it_resumes_its_own_conversation():
    cookie = await new_session_cookie()
    socket, hello = await open_chat(cookie)
    await socket.disconnect()

    again, resumed = await open_chat(cookie, hello["conversation"])

    assert resumed == {
        "type": "conversation",
        "conversation": hello["conversation"],
        "messages": [],
        "protocol": 2,
        "status": "open",
    }
    await again.disconnect()


async def test_it_refuses_another_sessions_conversation_with_4403():
    socket, hello = await open_chat(await new_session_cookie())
    await socket.disconnect()

    assert await refused_with(await new_session_cookie(), hello["conversation"]) == 4403


@pytest.mark.parametrize("conversation", [str(uuid.uuid4()), "not-a-uuid", "%00"])
async def test_it_refuses_an_unknown_conversation_with_4404(conversation):
    assert await refused_with(await new_session_cookie(), conversation) == 4404


async def test_it_keeps_a_users_conversation_from_an_anonymous_session(customer_user):
    user_cookie = await login_cookie(customer_user)
    socket, hello = await open_chat(user_cookie)
    await socket.disconnect()
    conversation = await database_sync_to_async(Conversation.objects.get)(pk=hello["conversation"])
    assert conversation.user_id == customer_user.pk

    assert await refused_with(await new_session_cookie(), hello["conversation"]) == 4403
    assert await refused_with(None, hello["conversation"]) == 4403


async def test_it_lets_a_user_resume_from_another_browser(customer_user):
    socket, hello = await open_chat(await login_cookie(customer_user))
    await socket.disconnect()

    other_browser = await login_cookie(customer_user)
    again, resumed = await open_chat(other_browser, hello["conversation"])

    assert resumed["conversation"] == hello["conversation"]
    await again.disconnect()


async def test_it_keeps_another_users_conversation_out_of_reach(customer_user, staff_user):
    socket, hello = await open_chat(await login_cookie(customer_user))
    await socket.disconnect()

    staff_cookie = await login_cookie(staff_user)
    assert await refused_with(staff_cookie, hello["conversation"]) == 4403


async def test_it_gives_a_session_to_a_browser_without_one():
    socket, hello = await open_chat(None)
    await socket.disconnect()

    conversation = await database_sync_to_async(Conversation.objects.get)(pk=hello["conversation"])
    assert conversation.session_key


async def test_it_rejects_a_foreign_origin():
    socket = chat_socket(await new_session_cookie(), origin="http://evil.example")

    connected, _ = await socket.connect(timeout=TIMEOUT)

    assert not connected
    assert await database_sync_to_async(Conversation.objects.count)() == 0
