"""The `openai` generation backend: replies stream from an OpenAI-compatible server over HTTP.

The server is `manage.py serve_model` (this project's engine) or vLLM; the model a request
names is the version's name (`ModelVersion.name`, a new name for every promotion). The chat
consumer sees the same stream as the in-process engine's: text deltas, then ``result`` (a
``ReplyResult``), ``cancel()`` and ``open()``:

* ``open()`` sends the request and waits for the response's status: 429 or 503 raise
  ``EngineBusy`` (the consumer answers `busy` without announcing a reply); a server that cannot
  be reached within GENERATION_SERVER_CONNECT_TIMEOUT, or any other refusal, is not raised but
  ends the stream at once with finish reason ``error`` and ``open()`` returns False (the
  consumer keeps the question, drops the empty reply and says the assistant is unavailable,
  without announcing a reply: never a hang).
* The deltas are the ``content`` of the server-sent ``chat.completion.chunk`` events; more than
  GENERATION_SERVER_READ_TIMEOUT seconds without a chunk, a dropped connection or an error
  event end the reply with finish reason ``error`` and the text received so far.
* ``cancel()`` (the customer left) stops reading and closes the response, so the connection
  drops and the server stops generating; the result's finish reason is ``disconnected``.

One ``httpx.AsyncClient`` (one connection pool) per event loop: Daphne runs one loop per
process, tests a new one per test, and a client's connections belong to the loop that opened
them.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx
from django.conf import settings

from knowledge.prompt import neutralised_turns
from serving.generation import ActiveVersion, EngineBusy, FinishReason, ReplyResult

BUSY_STATUSES = (429, 503)


class RemoteGeneration:
    """Streams replies from the generation server at ``base_url`` (ending in /v1)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "",
        connect_timeout: float = 2.0,
        read_timeout: float = 30.0,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        max_concurrent: int = 0,
    ):
        self.base_url = base_url.rstrip("/")
        # Replies this process streams at once (0: no cap); more are answered busy at once
        # instead of queueing on the server. Weak: a stream dropped unfinished frees its place.
        self.max_concurrent = max_concurrent
        self.streams: weakref.WeakSet[RemoteStream] = weakref.WeakSet()
        self.api_key = api_key
        self.timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_settings(cls) -> RemoteGeneration:
        return cls(
            settings.GENERATION_SERVER_URL,
            api_key=settings.GENERATION_SERVER_API_KEY,
            connect_timeout=settings.GENERATION_SERVER_CONNECT_TIMEOUT,
            read_timeout=settings.GENERATION_SERVER_READ_TIMEOUT,
            max_new_tokens=settings.GENERATION_MAX_NEW_TOKENS,
            temperature=settings.GENERATION_TEMPERATURE,
            max_concurrent=settings.GENERATION_SERVER_MAX_CONCURRENT,
        )

    def client(self) -> httpx.AsyncClient:
        """This event loop's client (created on first use)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                timeout=self.timeout,
                # Every reply holds a connection while it streams: no pool limit on top of the
                # server's own queue (it answers 429 when full).
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            )
            self._clients[loop] = client
        return client

    def payload(self, version: ActiveVersion, turns: list[dict[str, str]]) -> dict[str, Any]:
        """The chat completion request for ``turns`` by ``version``."""
        body: dict[str, Any] = {
            "model": version.name,
            # the server applies the template: no text of a turn may become its markup
            "messages": [
                {"role": t["role"], "content": t["content"]} for t in neutralised_turns(turns)
            ],
            "stream": True,
            # vLLM reports usage in a last chunk only when asked; serve_model always does.
            "stream_options": {"include_usage": True},
        }
        if self.max_new_tokens is not None:
            body["max_tokens"] = self.max_new_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def stream_reply(self, version: ActiveVersion, turns: list[dict[str, str]]) -> RemoteStream:
        """The reply to ``turns`` by ``version``; nothing is sent before ``open()`` or the
        first ``__anext__``. Call it on the event loop that iterates the stream."""
        return RemoteStream(self, version, turns)


class RemoteStream(AsyncIterator[str]):
    """One reply streaming from the generation server (see the module's docstring)."""

    def __init__(
        self, backend: RemoteGeneration, version: ActiveVersion, turns: list[dict[str, str]]
    ):
        self._backend = backend
        self._version = version
        self._turns = turns
        self._submitted = time.perf_counter()
        self._first_at: float | None = None
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._reader: asyncio.Future[str] | None = None
        self._opened = False
        self._cancelled = False
        self._text: list[str] = []
        self._chunks = 0
        self._usage_tokens: int | None = None
        self._finish: FinishReason | None = None
        self._event_error: str | None = None
        self._result: ReplyResult | None = None

    @property
    def result(self) -> ReplyResult:
        if self._result is None:
            raise RuntimeError("The reply is not finished: iterate the stream first.")
        return self._result

    def cancel(self) -> None:
        """The customer went away: stop reading; the response is closed, and with it the
        connection, so the server stops generating."""
        self._cancelled = True
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()

    async def open(self) -> bool:
        """Send the request; return once the server accepted it: True, or False when the
        stream has already ended (unreachable, refused, or cancelled first; ``result`` says).

        Raises EngineBusy when the server refuses it as busy (HTTP 429 or 503), or when this
        process already streams ``max_concurrent`` replies.
        """
        if self._opened:
            return self._result is None
        self._opened = True
        if self._cancelled:
            await self._end("disconnected")
            return False
        backend = self._backend
        streaming = sum(1 for stream in backend.streams if stream._result is None)
        if backend.max_concurrent and streaming >= backend.max_concurrent:
            detail = f"{streaming} replies are streaming (GENERATION_SERVER_MAX_CONCURRENT)"
            await self._end("error", f"busy: {detail}")
            raise EngineBusy(f"This web process is at its limit: {detail}.")
        backend.streams.add(self)
        client = backend.client()
        request = client.build_request(
            "POST", "/chat/completions", json=self._backend.payload(self._version, self._turns)
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException:
            await self._end("error", f"The generation server did not answer ({request.url}).")
            return False
        except httpx.HTTPError as error:
            await self._end("error", f"The generation server is unreachable: {error!r}")
            return False
        self._response = response
        if response.status_code != 200:
            detail = await _error_detail(response)
            if response.status_code in BUSY_STATUSES:
                await self._end("error", f"busy: {detail}")
                raise EngineBusy(f"The generation server is busy: {detail}")
            status = response.status_code
            await self._end("error", f"The generation server answered {status}: {detail}")
            return False
        self._lines = response.aiter_lines()
        return True

    def __aiter__(self) -> RemoteStream:
        return self

    async def __anext__(self) -> str:
        if not self._opened:
            await self.open()
        while self._result is None:
            if self._cancelled:
                await self._end("disconnected")
                break
            line = await self._next_line()
            if line is None:
                continue  # the stream ended: _next_line set the result
            delta = self._take_event(line)
            if self._event_error is not None:
                await self._end("error", self._event_error)
                break
            if delta:
                return delta
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._result is None:
            await self._end("disconnected")

    async def _next_line(self) -> str | None:
        """The next line of the event stream; None once the stream has ended (result set)."""
        assert self._lines is not None
        self._reader = asyncio.ensure_future(anext(self._lines))
        try:
            return await self._reader
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # our reader is being cancelled
                self._cancelled = True
                await asyncio.shield(self._close())
                raise
            await self._end("disconnected")  # cancel() interrupted the read
        except StopAsyncIteration:
            if self._finish is not None:
                await self._end(self._finish)
            else:
                await self._end("error", "The generation server ended the reply early.")
        except httpx.TimeoutException:
            timeout = self._backend.timeout.read
            await self._end("error", f"The generation server sent nothing for {timeout} s.")
        except httpx.HTTPError as error:
            await self._end("error", f"The generation server's stream broke: {error!r}")
        finally:
            self._reader = None
        return None

    def _take_event(self, line: str) -> str:
        """Read one line of the event stream; returns its text delta ("" when none)."""
        if not line.startswith("data:"):
            return ""  # blank separators, comments, other fields
        data = line[5:].strip()
        if data == "[DONE]":
            self._finish = self._finish or "stop"
            return ""
        try:
            event = json.loads(data)
        except ValueError:
            return ""
        if not isinstance(event, dict):
            return ""
        if "error" in event:
            error = event["error"]
            message = error.get("message") if isinstance(error, dict) else error
            self._event_error = f"The generation server failed: {message}"
            return ""
        usage = event.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self._usage_tokens = usage["completion_tokens"]
        delta = ""
        for choice in event.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str) and content:
                delta += content
            reason = choice.get("finish_reason")
            if reason:
                self._finish = "length" if reason == "length" else "stop"
        if delta:
            self._chunks += 1
            if self._first_at is None:
                self._first_at = time.perf_counter()
            self._text.append(delta)
        return delta

    async def _end(self, finish: FinishReason, error: str | None = None) -> None:
        if self._result is None:
            self._result = self._make_result(finish, error)
        await self._close()

    def _make_result(self, finish: FinishReason, error: str | None) -> ReplyResult:
        now = time.perf_counter()
        return ReplyResult(
            text="".join(self._text),
            model_version_id=self._version.id,
            finish_reason="error" if error is not None else finish,
            token_count=self._usage_tokens if self._usage_tokens is not None else self._chunks,
            time_to_first_token_ms=round(((self._first_at or now) - self._submitted) * 1000, 2),
            generation_ms=round((now - self._submitted) * 1000, 2),
            error=error,
        )

    async def _close(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            await response.aclose()


async def _error_detail(response: httpx.Response) -> str:
    """The message of an OpenAI-style error body, or the start of whatever the body is."""
    try:
        body = (await response.aread()).decode("utf-8", "replace")
    except httpx.HTTPError:
        return response.reason_phrase
    try:
        error = json.loads(body).get("error")
        return str(error.get("message") if isinstance(error, dict) else error)
    except (ValueError, AttributeError):
        return body[:200] or response.reason_phrase
