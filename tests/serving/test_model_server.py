"""`manage.py serve_model`: the engine behind an OpenAI-compatible API, spoken to over HTTP.

A real server process on the test database (tests.serving.model_server_process), a real HTTP client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving.model_server_process import model_serving

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = [{"role": "user", "content": "where is my order?"}]


@pytest.fixture
def server(active_model_version, second_model_version, tmp_path: Path) -> Iterator[str]:
    with model_serving(
        tmp_path / "serve_model.log", env={"GENERATION_SERVER_API_KEY": "k3y"}
    ) as url:
        yield url


def events(response: httpx.Response) -> list[str]:
    """The `data:` payloads of a server-sent event stream, in order."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def test_it_lists_the_active_version_first_then_the_ready_ones(
    server, active_model_version, second_model_version
):
    response = httpx.get(f"{server}/models", headers={"Authorization": "Bearer k3y"})

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["active"]) for m in body["data"]] == [
        (active_model_version.name, "model", True),
        (second_model_version.name, "model", False),
    ]


def test_it_streams_a_chat_completion_as_server_sent_events(server, active_model_version):
    request = {"model": active_model_version.name, "messages": QUESTION, "stream": True}
    with httpx.stream(
        "POST",
        f"{server}/chat/completions",
        json=request,
        headers={"Authorization": "Bearer k3y"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        payloads = events(response)

    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {active_model_version.name}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks]
    text = "".join(deltas)
    assert text.strip() and len([d for d in deltas if d]) > 1
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["usage"]["completion_tokens"] >= len([d for d in deltas if d])

    # The same request unstreamed gives the same text (greedy decoding), as one object.
    whole = httpx.post(
        f"{server}/chat/completions",
        json={**request, "stream": False},
        headers={"Authorization": "Bearer k3y"},
        timeout=30,
    )
    assert whole.status_code == 200
    assert whole.json()["choices"][0]["message"] == {"role": "assistant", "content": text}


def test_it_stops_at_max_tokens(server, active_model_version):
    request = {"model": active_model_version.name, "messages": QUESTION, "max_tokens": 2}
    response = httpx.post(
        f"{server}/chat/completions",
        json=request,
        headers={"Authorization": "Bearer k3y"},
        timeout=30,
    )

    assert response.status_code == 200
    body = response.json()
    assert body["usage"]["completion_tokens"] == 2
    assert body["choices"][0]["finish_reason"] == "length"


def test_it_refuses_unknown_models_bad_bodies_and_missing_keys(server, active_model_version):
    url = f"{server}/chat/completions"
    key = {"Authorization": "Bearer k3y"}

    unknown = httpx.post(url, json={"model": "nope", "messages": QUESTION}, headers=key)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert "nope" in unknown.json()["error"]["message"]

    bad = httpx.post(url, json={"model": active_model_version.name, "messages": []}, headers=key)
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"

    request = {"model": active_model_version.name, "messages": QUESTION}
    assert httpx.post(url, json=request).status_code == 401
    wrong = httpx.post(url, json=request, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{server}/models").status_code == 401


@pytest.mark.parametrize(("options", "served"), [((), False), (("--any-version",), True)])
def test_a_rejected_version_is_served_only_when_told(
    active_model_version, second_model_version, tmp_path, options, served
):
    second_model_version.status = "rejected"  # a candidate the gate turned down
    second_model_version.save(update_fields=["status"])
    request = {"model": second_model_version.name, "messages": QUESTION, "max_tokens": 2}

    with model_serving(tmp_path / "serve_model.log", options=options) as url:
        response = httpx.post(f"{url}/chat/completions", json=request, timeout=30)
        listed = httpx.get(f"{url}/models").json()["data"]

    assert response.status_code == (200 if served else 404)
    assert [m["id"] for m in listed] == [active_model_version.name]  # listed: never
