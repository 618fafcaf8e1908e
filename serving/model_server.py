"""`manage.py serve_model`: this project's engine behind an OpenAI-compatible HTTP API.

Several web processes (GENERATION_BACKEND=openai) then share one model process and its
batches instead of each loading the model. Two endpoints, as OpenAI and vLLM speak them:

* ``GET /v1/models``: the active version first, then the ready ones (the model ids are
  ``ModelVersion.name``);
* ``POST /v1/chat/completions``: ``model`` (a version's name: any registered version is served,
  so a request naming the version that was active a moment ago still gets it), ``messages``,
  optional ``max_tokens`` (at most GENERATION_MAX_NEW_TOKENS) and ``stream``. Streaming answers
  are server-sent events: ``data: {chat.completion.chunk}`` lines, the last one with its
  ``finish_reason`` and ``usage`` (completion tokens), then ``data: [DONE]``. A generation that
  fails mid-stream sends ``data: {"error": ...}`` instead of the last chunk.

Refusals are OpenAI-style error objects: 401 (GENERATION_SERVER_API_KEY set and not sent as a
bearer token), 404 (unknown path or model), 400 (a bad body), 429 (the engine's queue,
GENERATION_ENGINE_MAX_QUEUE, is full). A client that disconnects mid-reply cancels its sequence in
the engine (it leaves the batch at the next step); each request's ending is logged as one line.

Only generation happens here: retrieval and the prompt's grounding stay in the web tier, which
sends the finished turns. The engine is always the in-process one, whatever
GENERATION_BACKEND says (the setting is the web processes' view of this server).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings

from learning.models import ModelVersion
from serving import backends
from serving.generation import ActiveVersion, EngineBusy, ReplyResult

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_BODY_BYTES = 1 << 20
ROLES = ("system", "user", "assistant")
# The engine's finish reasons as OpenAI's (a disconnected reply has no reader left to tell).
FINISH_REASONS = {"stop": "stop", "length": "length", "disconnected": "stop"}


class HttpError(Exception):
    """A refusal, answered as an OpenAI-style error object."""

    def __init__(self, status: int, message: str, kind: str, code: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": str(self), "type": self.kind, "param": None, "code": self.code}
        }


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application Daphne runs."""
    if scope["type"] != "http":
        return  # Daphne sends no lifespan events; nothing else is served
    started = False

    async def tracked_send(message: dict[str, Any]) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await _route(scope, receive, tracked_send)
    except Exception:
        logger.exception("%s %s failed", scope["method"], scope["path"])
        if not started:
            error = HttpError(500, "The model server failed; see its log.", "server_error")
            await _send_json(send, 500, error.body())


async def _route(scope: Scope, receive: Receive, send: Send) -> None:
    try:
        _check_api_key(scope)
        method, path = scope["method"], scope["path"].rstrip("/")
        if path == "/v1/models" and method == "GET":
            await _send_json(send, 200, await database_sync_to_async(list_models)())
        elif path == "/v1/chat/completions" and method == "POST":
            await chat_completions(json_body(await _read_body(receive)), receive, send)
        else:
            raise HttpError(404, f"No route for {method} {scope['path']}.", "not_found_error")
    except HttpError as error:
        await _send_json(send, error.status, error.body())


def list_models() -> dict[str, Any]:
    """The versions this server is meant to serve, the active one first (OpenAI list format)."""
    rows = ModelVersion.objects.filter(
        status__in=[ModelVersion.Status.ACTIVE, ModelVersion.Status.READY]
    ).order_by("status", "-created_at")  # "active" sorts before "ready"
    return {
        "object": "list",
        "data": [
            {
                "id": row.name,
                "object": "model",
                "created": int(row.created_at.timestamp()),
                "owned_by": "chatbot",
                "active": row.status == ModelVersion.Status.ACTIVE,
            }
            for row in rows
        ],
    }


# The versions a request may name: the active one and those ready to be (a rejected candidate,
# or one staff retired, is not served unless `serve_model --any-version` says so).
SERVED_STATUSES = (ModelVersion.Status.ACTIVE, ModelVersion.Status.READY)
_serve_any_version = False


def serve_any_version(allowed: bool) -> None:
    """Serve versions of every status (``serve_model --any-version``: to compare a rejected
    candidate by hand), or only ``SERVED_STATUSES``."""
    global _serve_any_version
    _serve_any_version = allowed


def find_version(name: str) -> ActiveVersion | None:
    """The version ``name``, if this server serves it. A version found once stays served by
    this process (``version_named``), so that replies in flight when it is retired end."""
    rows = ModelVersion.objects.filter(name=name)
    if not _serve_any_version:
        rows = rows.filter(status__in=SERVED_STATUSES)
    row = rows.first()
    if row is None:
        return None
    return ActiveVersion(id=row.pk, name=row.name, checkpoint_path=row.checkpoint_path)


# Versions found by name. A version's name, id and checkpoint never change (checkpoints are
# immutable, names unique), so each is read once: the lookup's hop to a database thread was
# about a millisecond of every reply's first token. Unknown names are not cached: a version
# registered a moment ago must be found.
_versions: dict[str, ActiveVersion] = {}


async def version_named(name: str) -> ActiveVersion | None:
    version = _versions.get(name)
    if version is None:
        version = await database_sync_to_async(find_version)(name)
        if version is not None:
            _versions[name] = version
    return version


def json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, "The body is not JSON.", "invalid_request_error") from None
    if not isinstance(body, dict):
        raise HttpError(400, "The body must be a JSON object.", "invalid_request_error")
    return body


def parse_turns(messages: Any) -> list[dict[str, str]]:
    """The chat turns of ``messages`` (content as a string or as OpenAI text parts)."""
    if not isinstance(messages, list) or not messages:
        raise HttpError(400, "`messages` must be a non-empty list.", "invalid_request_error")
    turns = []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            parts = [p.get("text") for p in content if isinstance(p, dict)]
            content = "".join(p for p in parts if isinstance(p, str))
        if role not in ROLES or not isinstance(content, str):
            raise HttpError(
                400,
                f"Each message needs a role ({', '.join(ROLES)}) and text content.",
                "invalid_request_error",
            )
        turns.append({"role": role, "content": content})
    return turns


def parse_max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise HttpError(400, "`max_tokens` must be a positive integer.", "invalid_request_error")
    return value


async def chat_completions(body: dict[str, Any], receive: Receive, send: Send) -> None:
    """Generate one reply with the engine and send it, streamed or whole."""
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise HttpError(400, "`model` must name a model version.", "invalid_request_error")
    turns = parse_turns(body.get("messages"))
    max_tokens = parse_max_tokens(body)
    version = await version_named(name)
    if version is None:
        raise HttpError(
            404,
            f"The model `{name}` does not exist or is not served (neither active nor ready).",
            "not_found_error",
            "model_not_found",
        )
    try:
        stream = backends.get_in_process_engine().stream_reply(
            version, turns, max_new_tokens=max_tokens
        )
    except EngineBusy as error:
        raise HttpError(429, str(error), "rate_limit_error", "engine_busy") from None
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    # Daphne reports the client's disconnect as the next message on `receive`.
    watcher = asyncio.create_task(_cancel_on_disconnect(receive, stream.cancel))
    try:
        if body.get("stream"):
            await _stream_chunks(stream, completion_id, name, send)
        else:
            async for _ in stream:
                pass
        result = stream.result
        if not body.get("stream"):
            await _send_whole(result, completion_id, name, send)
    finally:
        watcher.cancel()
    logger.info(
        "%s %s: %s, %d tokens in %.0f ms%s",
        completion_id,
        name,
        result.finish_reason,
        result.token_count,
        result.generation_ms,
        f" ({result.error})" if result.error else "",
    )


async def _stream_chunks(stream: Any, completion_id: str, model: str, send: Send) -> None:
    created = int(time.time())

    def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
            ],
        }
    )
    await _send_event(send, chunk({"role": "assistant", "content": ""}))
    async for delta in stream:
        await _send_event(send, chunk({"content": delta}))
    result: ReplyResult = stream.result
    if result.finish_reason == "error":
        error = HttpError(500, result.error or "Generation failed.", "server_error")
        await _send_event(send, error.body())
    else:
        last = chunk({}, FINISH_REASONS[result.finish_reason])
        last["usage"] = {"completion_tokens": result.token_count}
        await _send_event(send, last)
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _send_whole(result: ReplyResult, completion_id: str, model: str, send: Send) -> None:
    if result.finish_reason == "error":
        error = HttpError(500, result.error or "Generation failed.", "server_error")
        await _send_json(send, 500, error.body())
        return
    await _send_json(
        send,
        200,
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": FINISH_REASONS[result.finish_reason],
                }
            ],
            "usage": {"completion_tokens": result.token_count},
        },
    )


async def _cancel_on_disconnect(receive: Receive, cancel: Callable[[], None]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    cancel()


def _check_api_key(scope: Scope) -> None:
    key = settings.GENERATION_SERVER_API_KEY
    if not key:
        return
    headers = dict(scope.get("headers", []))
    sent = headers.get(b"authorization", b"").decode("latin-1")
    if not secrets.compare_digest(sent.encode(), f"Bearer {key}".encode()):
        raise HttpError(
            401, "A valid API key is required.", "authentication_error", "invalid_api_key"
        )


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "The client went away.", "invalid_request_error")
        body += message.get("body", b"")
        if len(body) > MAX_BODY_BYTES:
            raise HttpError(413, "The body is too large.", "invalid_request_error")
        if not message.get("more_body"):
            return body


async def _send_event(send: Send, data: dict[str, Any]) -> None:
    line = f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
    await send({"type": "http.response.body", "body": line.encode(), "more_body": True})


async def _send_json(send: Send, status: int, data: dict[str, Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(data).encode()})


def serves_locally(host: str, port: int) -> bool:
    """Whether the web processes are configured to use a serve_model listening on ``host`` and
    ``port`` of this machine: the Procfile's `model` process serves only then."""
    if settings.GENERATION_BACKEND != "openai":
        return False
    url = urlsplit(settings.GENERATION_SERVER_URL)
    local = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", host.strip("[]")}
    url_port = url.port or (443 if url.scheme == "https" else 80)
    return url.hostname in local and url_port == port


def run(host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM (blocking)."""
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server

    logger.info("serving the model API on http://%s:%d/v1", host, port)
    Server(
        application=application,
        endpoints=build_endpoint_description_strings(host=host, port=port),
        server_name="chatbot-model",
    ).run()
