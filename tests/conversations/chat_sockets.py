"""Browsers for the chat websocket tests: sessions, sockets on the real ASGI app, chat turns."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from chatbot_site.asgi import application
from conversations.consumers import wait_for_replies

TIMEOUT = 10  # seconds; a tiny model answers in well under one


@database_sync_to_async
def new_session_cookie() -> str:
    """A stored anonymous session, as the chat page would have set it."""
    session = SessionStore()
    session.create()
    return f"sessionid={session.session_key}"


@database_sync_to_async
def login_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def chat_socket(
    cookie: str | None,
    conversation: str | None = None,
    origin: str = "http://testserver",
    client: str | None = None,
) -> WebsocketCommunicator:
    """``client``: the peer's address, as the server would see it (none by default)."""
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    path = "/ws/chat/" + (f"?conversation={conversation}" if conversation else "")
    socket = WebsocketCommunicator(application, path, headers=headers)
    if client is not None:
        socket.scope["client"] = (client, 50123)
    return socket


async def open_chat(
    cookie: str | None, conversation: str | None = None, client: str | None = None
) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    """Connect and read the `conversation` frame."""
    socket = chat_socket(cookie, conversation, client=client)
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected
    hello = await socket.receive_json_from(timeout=TIMEOUT)
    assert hello["type"] == "conversation", hello
    return socket, hello


async def refused_with(cookie: str | None, conversation: str) -> int:
    """Connect to `conversation`; returns the close code the server answers with."""
    socket = chat_socket(cookie, conversation)
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected  # accepted, then closed: browsers only see a close code after accept
    closing = await socket.receive_output(timeout=TIMEOUT)
    assert closing["type"] == "websocket.close", closing
    await socket.disconnect()  # the browser acknowledges the close
    return closing["code"]


async def send_text(socket: WebsocketCommunicator, text: str) -> None:
    await socket.send_input({"type": "websocket.receive", "text": text})


async def receive(socket: WebsocketCommunicator) -> dict[str, Any]:
    return await socket.receive_json_from(timeout=TIMEOUT)


async def expect_error(socket: WebsocketCommunicator, code: str) -> dict[str, Any]:
    frame = await receive(socket)
    assert frame["type"] == "error", frame
    assert frame["code"] == code, frame
    assert isinstance(frame["detail"], str) and frame["detail"]
    return frame


async def still_open(socket: WebsocketCommunicator) -> None:
    await socket.send_json_to({"type": "ping"})
    assert await receive(socket) == {"type": "pong"}


async def chat_turn(
    socket: WebsocketCommunicator, text: str, client_id: str | None = None
) -> dict[str, Any]:
    """Send a user message and read the whole reply: saved, start, deltas, end."""
    frame: dict[str, Any] = {"type": "user_message", "text": text}
    if client_id is not None:
        frame["client_id"] = client_id
    await socket.send_json_to(frame)
    saved = await receive(socket)
    assert saved["type"] == "user_message.saved", saved
    start = await receive(socket)
    assert start["type"] == "bot_message.start", start
    deltas = []
    while (frame := await receive(socket))["type"] == "bot_message.delta":
        assert frame["id"] == start["id"]
        deltas.append(frame["text"])
    assert frame["type"] == "bot_message.end", frame
    return {"saved": saved, "start": start, "deltas": deltas, "end": frame}


def dumps(frame: Any) -> str:
    return json.dumps(frame)


@pytest.fixture
async def chat_test(transactional_db) -> AsyncIterator[None]:
    """What every test of the chat socket needs, in one place (``pytestmark =
    pytest.mark.usefixtures("chat_test")``): a database whose commits the consumer's threads
    see, and, after the test, every reply still generating stored before the database is
    flushed."""
    yield
    await wait_for_replies()


@pytest.fixture
async def cookie() -> str:
    """A new customer's session cookie."""
    return await new_session_cookie()


def inbox_socket(cookie: str | None) -> WebsocketCommunicator:
    """The staff inbox's socket (/ws/inbox/) for the browser with `cookie`."""
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, "/ws/inbox/", headers=headers)


async def open_inbox(cookie: str) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    """Connect an agent and read the `inbox` frame."""
    socket = inbox_socket(cookie)
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected
    hello = await socket.receive_json_from(timeout=TIMEOUT)
    assert hello["type"] == "inbox", hello
    return socket, hello


async def receive_until(socket: WebsocketCommunicator, frame_type: str) -> dict[str, Any]:
    """Skip frames until one of `frame_type` (the inbox hears about every conversation)."""
    while (frame := await receive(socket))["type"] != frame_type:
        pass
    return frame
