"""The chat with GENERATION_BACKEND=openai: replies stream from a real `serve_model` process.

The chat socket runs in this process (the real ASGI application); the model runs in a
`manage.py serve_model` subprocess on the test database (tests.serving.model_server_process),
reached over HTTP with server-sent events, as several web processes would share it.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from channels.db import database_sync_to_async

from bench.web_process import free_ports
from conversations.consumers import wait_for_replies
from conversations.models import Message
from conversations.replying import BUSY, UNAVAILABLE
from serving import backends
from tests.conversations.chat_sockets import (
    chat_turn,
    expect_error,
    open_chat,
    receive,
    still_open,
)
from tests.serving.model_server_process import model_serving

pytestmark = pytest.mark.usefixtures("chat_test")


@pytest.fixture
def use_server(settings, monkeypatch):
    """Point the `openai` backend at a URL (a fresh client: settings are read on creation)."""

    def use(url: str) -> None:
        settings.GENERATION_BACKEND = "openai"
        settings.GENERATION_SERVER_URL = url
        settings.GENERATION_SERVER_CONNECT_TIMEOUT = 2.0
        monkeypatch.setattr(backends, "_remote", None)

    return use


@pytest.fixture
def server_log(tmp_path: Path) -> Path:
    return tmp_path / "serve_model.log"


@pytest.fixture
def model_server(active_model_version, server_log: Path, use_server) -> Iterator[str]:
    with model_serving(server_log) as url:
        use_server(url)
        yield url


@pytest.fixture
def slow_model_server(active_model_version, server_log: Path, use_server) -> Iterator[str]:
    env = {"GENERATION_MAX_NEW_TOKENS": "300"}
    with model_serving(server_log, slow=True, env=env) as url:
        use_server(url)
        yield url


def served(log: Path) -> list[tuple[str, str]]:
    """(model, finish reason) of each request the server logged as ended."""
    text = log.read_text(errors="replace")
    return re.findall(r"chatcmpl-\w+ (\S+): (\w+), \d+ tokens", text)


def wait_until_served(log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not served(log) and time.monotonic() < deadline:
        time.sleep(0.1)


@database_sync_to_async
def messages_of(conversation: str) -> list[Message]:
    return list(Message.objects.filter(conversation_id=conversation).order_by("id"))


async def test_a_reply_streams_from_the_model_server(
    cookie, model_server, active_model_version, server_log
):
    socket, hello = await open_chat(cookie)

    turn = await chat_turn(socket, "hi, where is my order?")

    end = turn["end"]
    assert turn["deltas"] and all(turn["deltas"])
    assert "".join(turn["deltas"]) == end["text"]
    assert end["model_version"] == active_model_version.name
    question, reply = await messages_of(hello["conversation"])
    assert (question.role, reply.pk, reply.text) == ("user", end["id"], end["text"])
    assert reply.model_version_id == active_model_version.pk
    assert reply.finish_reason in ("stop", "length")
    assert reply.token_count and reply.token_count >= len(turn["deltas"])
    assert reply.time_to_first_token_ms is not None and reply.generation_ms is not None
    # It was generated over there, not in this process.
    assert served(server_log) == [(active_model_version.name, reply.finish_reason)]
    await socket.disconnect()


async def test_leaving_mid_reply_stops_generation_on_the_server(
    cookie, slow_model_server, active_model_version, server_log
):
    socket, hello = await open_chat(cookie)
    await socket.send_json_to({"type": "user_message", "text": "hi, where is my order?"})
    assert (await receive(socket))["type"] == "user_message.saved"
    start = await receive(socket)
    assert start["type"] == "bot_message.start"
    assert (await receive(socket))["type"] == "bot_message.delta"

    await socket.disconnect()
    await wait_for_replies()

    # 300 tokens at 50 ms a step would take 15 s: the server stopped at once.
    await asyncio.to_thread(wait_until_served, server_log, 5)
    assert served(server_log) == [(active_model_version.name, "disconnected")]
    tokens = int(re.search(r"disconnected, (\d+) tokens", server_log.read_text()).group(1))
    assert tokens < 100
    reply = (await messages_of(hello["conversation"]))[-1]
    assert (reply.pk, reply.finish_reason) == (start["id"], "disconnected")
    assert reply.text


async def test_a_server_that_is_down_gets_an_error_at_once_and_keeps_the_question(
    cookie, active_model_version, use_server
):
    use_server(f"http://127.0.0.1:{free_ports(1)[0]}/v1")  # nothing listens there
    socket, hello = await open_chat(cookie)

    began = time.monotonic()
    await socket.send_json_to({"type": "user_message", "text": "hi, where is my order?"})
    saved = await receive(socket)
    assert saved["type"] == "user_message.saved"
    frame = await receive(socket)  # no reply is announced
    assert frame["type"] == "error" and frame["code"] == "busy", frame
    assert frame["detail"] == UNAVAILABLE
    assert time.monotonic() - began < 2
    await still_open(socket)

    await wait_for_replies()
    assert [(m.pk, m.role) for m in await messages_of(hello["conversation"])] == [
        (saved["id"], "user")
    ]
    await socket.disconnect()


class _Busy(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        body = b'{"error": {"message": "queue full", "type": "rate_limit_error"}}'
        self.send_response(429)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def busy_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_a_busy_server_is_answered_busy_before_any_reply_is_announced(
    cookie, active_model_version, use_server, busy_server
):
    use_server(f"http://127.0.0.1:{busy_server.server_address[1]}/v1")
    socket, hello = await open_chat(cookie)

    await socket.send_json_to({"type": "user_message", "text": "hi, where is my order?"})
    saved = await receive(socket)
    assert saved["type"] == "user_message.saved"
    error = await expect_error(socket, "busy")
    assert error["detail"] == BUSY
    assert busy_server.requests == ["/v1/chat/completions"]

    await wait_for_replies()
    assert [(m.pk, m.role) for m in await messages_of(hello["conversation"])] == [
        (saved["id"], "user")
    ]
    await socket.disconnect()


async def test_the_next_reply_names_a_newly_activated_version(
    cookie, model_server, active_model_version, second_model_version, server_log
):
    from learning.versions import activate_version

    socket, hello = await open_chat(cookie)
    first = await chat_turn(socket, "hi, where is my order?")
    assert first["end"]["model_version"] == active_model_version.name

    await database_sync_to_async(activate_version)(second_model_version, note="test")
    second = await chat_turn(socket, "hi, where is my order?")

    assert second["end"]["model_version"] == second_model_version.name
    reply = (await messages_of(hello["conversation"]))[-1]
    assert reply.model_version_id == second_model_version.pk
    assert [model for model, _ in served(server_log)] == [
        active_model_version.name,
        second_model_version.name,
    ]
    await socket.disconnect()
