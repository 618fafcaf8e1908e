"""The `openai` backend streams at most GENERATION_SERVER_MAX_CONCURRENT replies per web
process; more are answered busy at once (serving.remote_generation)."""

from __future__ import annotations

import gc
import json

import httpx
import pytest

from serving.generation import ActiveVersion, EngineBusy
from serving.remote_generation import RemoteGeneration

VERSION = ActiveVersion(id=1, name="m", checkpoint_path="")
TURNS = [{"role": "user", "content": "hi"}]


def server(request: httpx.Request) -> httpx.Response:
    chunk = {"choices": [{"delta": {"content": "hello"}, "finish_reason": "stop"}]}
    body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


@pytest.fixture
def backend(monkeypatch) -> RemoteGeneration:
    remote = RemoteGeneration("http://model.test/v1", max_concurrent=1)
    client = httpx.AsyncClient(base_url=remote.base_url, transport=httpx.MockTransport(server))
    monkeypatch.setattr(remote, "client", lambda: client)
    return remote


async def test_a_reply_beyond_the_cap_is_busy_until_one_ends(backend):
    first = backend.stream_reply(VERSION, TURNS)
    assert await first.open()

    second = backend.stream_reply(VERSION, TURNS)
    with pytest.raises(EngineBusy, match="GENERATION_SERVER_MAX_CONCURRENT"):
        await second.open()

    assert "".join([delta async for delta in first]) == "hello"
    third = backend.stream_reply(VERSION, TURNS)
    assert await third.open()  # the first ended: its place is free
    assert "".join([delta async for delta in third]) == "hello"


async def test_a_stream_dropped_unfinished_frees_its_place(backend):
    dropped = backend.stream_reply(VERSION, TURNS)
    assert await dropped.open()
    await dropped._close()  # its response closed, as a failed consumer's would be
    del dropped
    gc.collect()

    assert await backend.stream_reply(VERSION, TURNS).open()
