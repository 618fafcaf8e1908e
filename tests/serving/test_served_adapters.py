"""LoRA adapter versions on the inference server (serving.served_adapters), against a small
HTTP server started by each test that answers the runtime LoRA endpoints as vLLM does and
records every request."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone

from learning.models import ModelVersion
from learning.versions import activate_version, promote_version, register_version, rollback
from serving import served_adapters, tasks

pytestmark = pytest.mark.django_db(transaction=True)  # the activation commits: on_commit runs

API_KEY = "test-key-123"


class FakeVLLM:
    """``/v1/load_lora_adapter``, ``/v1/unload_lora_adapter`` and ``/v1/models`` with vLLM's
    answers (200 text on success, 400 "has already been loaded", 404 "cannot be found")."""

    def __init__(self, base_name: str = "base") -> None:
        self.base_name = base_name
        self.loaded: dict[str, str] = {}
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake.record(self, None)
                cards = [{"id": fake.base_name, "object": "model", "parent": None}] + [
                    {"id": name, "object": "model", "root": path, "parent": fake.base_name}
                    for name, path in fake.loaded.items()
                ]
                self.answer(200, json.dumps({"object": "list", "data": cards}), "application/json")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.record(self, body)
                name = body.get("lora_name", "")
                if self.path == "/v1/load_lora_adapter":
                    if name in fake.loaded:
                        message = f"The lora adapter '{name}' has already been loaded."
                        self.error(400, message, "InvalidUserInput")
                        return
                    fake.loaded[name] = body["lora_path"]
                    self.answer(200, f"Success: LoRA adapter '{name}' added successfully.")
                elif self.path == "/v1/unload_lora_adapter":
                    if fake.loaded.pop(name, None) is None:
                        self.error(404, f"The lora adapter '{name}' cannot be found.", "NotFound")
                        return
                    self.answer(200, f"Success: LoRA adapter '{name}' removed successfully.")
                else:
                    self.answer(404, '{"detail":"Not Found"}', "application/json")

            def error(self, status: int, message: str, kind: str) -> None:
                body = {"object": "error", "message": message, "type": kind, "code": status}
                self.answer(status, json.dumps(body), "application/json")

            def answer(self, status: int, body: str, content_type: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def record(self, handler: BaseHTTPRequestHandler, body: dict | None) -> None:
        # What the database says while the server is called: the activation's ordering.
        active = list(ModelVersion.objects.active().values_list("name", flat=True))
        connections.close_all()  # this handler thread's own connection
        self.requests.append(
            {
                "method": handler.command,
                "path": handler.path,
                "json": body,
                "authorization": handler.headers.get("Authorization"),
                "active_in_database": active,
            }
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def calls(self, method: str = "POST") -> list[tuple[str, str]]:
        return [
            (r["path"].removeprefix("/v1/"), (r["json"] or {}).get("lora_name", ""))
            for r in self.requests
            if r["method"] == method
        ]


@pytest.fixture
def vllm():
    fake = FakeVLLM()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def queued(monkeypatch) -> list[tuple[str, list, float]]:
    """Tasks sent to the broker (the tasks themselves are called directly in these tests)."""
    sent: list[tuple[str, list, float]] = []
    monkeypatch.setattr(
        served_adapters,
        "send_task",
        lambda task, args, *, countdown: sent.append((task, args, countdown)),
    )
    return sent


@pytest.fixture
def runtime_lora(settings, vllm, queued):
    settings.GENERATION_BACKEND = "openai"
    settings.GENERATION_SERVER_URL = vllm.url
    settings.GENERATION_SERVER_API_KEY = API_KEY
    settings.GENERATION_SERVER_LORA_RUNTIME = True
    settings.GENERATION_SERVER_UNLOAD_DELAY = 0.0
    return settings


@pytest.fixture
def base(tmp_path) -> ModelVersion:
    version = register_version("base", str(tmp_path / "base"), ModelVersion.Source.STARTER)
    return activate_version(version, note="the base")


def adapter_version(name: str, base: ModelVersion, tmp_path) -> ModelVersion:
    path = tmp_path / name
    path.mkdir()
    return register_version(
        name, str(path), ModelVersion.Source.TRAINED, parent=base, adapter_base=base
    )


def run_1_then_run_2_with_a_delayed_unload(
    runtime_lora, base: ModelVersion, tmp_path
) -> tuple[ModelVersion, ModelVersion]:
    runtime_lora.GENERATION_SERVER_UNLOAD_DELAY = 120.0
    run_1 = adapter_version("run-1", base, tmp_path)
    run_2 = adapter_version("run-2", base, tmp_path)
    promote_version(run_1)
    promote_version(run_2)
    return run_1, run_2


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_it_loads_a_promoted_adapter_under_its_name_before_the_activation_commits(
    runtime_lora, vllm, base, tmp_path
):
    run_1 = adapter_version("run-1", base, tmp_path)

    promote_version(run_1, note="gate")

    assert len(vllm.requests) == 1
    request = vllm.requests[0]
    assert request["method"] == "POST"
    assert request["path"] == "/v1/load_lora_adapter"
    assert request["json"] == {"lora_name": "run-1", "lora_path": str(tmp_path / "run-1")}
    assert request["authorization"] == f"Bearer {API_KEY}"
    assert request["active_in_database"] == ["base"]  # web processes cannot name it yet
    run_1.refresh_from_db()
    assert run_1.status == ModelVersion.Status.ACTIVE
    assert run_1.activation_note == "gate"
    assert vllm.loaded == {"run-1": str(tmp_path / "run-1")}


def test_it_sends_no_authorization_header_without_an_api_key(runtime_lora, vllm, base, tmp_path):
    runtime_lora.GENERATION_SERVER_API_KEY = ""

    promote_version(adapter_version("run-1", base, tmp_path))

    assert vllm.calls() == [("load_lora_adapter", "run-1")]
    assert vllm.requests[0]["authorization"] is None


def test_it_unloads_the_retired_adapter_once_the_delay_is_over(
    runtime_lora, vllm, base, tmp_path, queued
):
    run_1 = adapter_version("run-1", base, tmp_path)
    run_2 = adapter_version("run-2", base, tmp_path)
    promote_version(run_1)

    promote_version(run_2)

    assert vllm.calls() == [
        ("load_lora_adapter", "run-1"),
        ("load_lora_adapter", "run-2"),
        ("unload_lora_adapter", "run-1"),
    ]
    assert vllm.requests[-1]["authorization"] == f"Bearer {API_KEY}"
    assert vllm.loaded.keys() == {"run-2"}
    assert queued == []


def test_the_unload_waits_for_the_delay_and_spares_a_version_active_again(
    runtime_lora, vllm, base, tmp_path, queued
):
    run_1, _ = run_1_then_run_2_with_a_delayed_unload(runtime_lora, base, tmp_path)

    assert vllm.calls() == [("load_lora_adapter", "run-1"), ("load_lora_adapter", "run-2")]
    assert queued == [(served_adapters.UNLOAD_TASK, ["run-1"], 120.0)]

    rollback(
        to=ModelVersion.objects.get(pk=run_1.pk)
    )  # before the unload is due: run-1 is still loaded
    assert vllm.calls()[-1] == ("load_lora_adapter", "run-1")  # "already loaded": fine
    assert ModelVersion.objects.get(name="run-1").status == ModelVersion.Status.ACTIVE
    assert queued[-1] == (served_adapters.UNLOAD_TASK, ["run-2"], 120.0)

    assert tasks.unload_retired_adapter("run-1") is False  # the task queued by run-2's promotion
    assert tasks.unload_retired_adapter("run-2") is True
    assert [call for call in vllm.calls() if call[0] == "unload_lora_adapter"] == [
        ("unload_lora_adapter", "run-2")
    ]
    assert vllm.loaded.keys() == {"run-1"}


@pytest.mark.parametrize("backend, lora_runtime", [("in_process", True), ("openai", False)])
def test_it_calls_nothing_unless_the_openai_backend_loads_adapters_at_run_time(
    runtime_lora, vllm, base, tmp_path, queued, backend, lora_runtime
):
    runtime_lora.GENERATION_BACKEND = backend
    runtime_lora.GENERATION_SERVER_LORA_RUNTIME = lora_runtime
    run_1 = adapter_version("run-1", base, tmp_path)
    run_2 = adapter_version("run-2", base, tmp_path)

    promote_version(run_1)
    promote_version(run_2)
    rollback(to=ModelVersion.objects.get(pk=run_1.pk))

    assert vllm.requests == []
    assert queued == []
    assert ModelVersion.objects.get(name="run-1").status == ModelVersion.Status.ACTIVE
    with pytest.raises(CommandError, match="Runtime LoRA loading is off"):
        call_command("sync_served_adapters")


def test_a_full_weight_version_is_not_loaded_and_the_operator_is_told_to_restart(
    runtime_lora, vllm, base, tmp_path, caplog
):
    full = register_version(
        "full-2", str(tmp_path / "full-2"), ModelVersion.Source.TRAINED, parent=base
    )

    with caplog.at_level(logging.WARNING, logger="serving.served_adapters"):
        promote_version(full)

    assert vllm.requests == []
    assert ModelVersion.objects.get(name="full-2").status == ModelVersion.Status.ACTIVE
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "full-2 is a full-weight checkpoint" in warning
    assert "restart the server on" in warning
    assert "--served-model-name full-2" in warning


def test_a_server_that_is_down_does_not_stop_the_activation_and_sync_loads_it_later(
    runtime_lora, vllm, base, tmp_path, queued
):
    runtime_lora.GENERATION_SERVER_URL = closed_port_url()
    run_1 = adapter_version("run-1", base, tmp_path)

    started = time.monotonic()
    promote_version(run_1, note="gate")
    assert time.monotonic() - started < 5  # refused at once, no hang

    run_1.refresh_from_db()
    assert run_1.status == ModelVersion.Status.ACTIVE
    assert run_1.activation_note.startswith("gate" + served_adapters.NOT_LOADED_REMARK)
    assert run_1.activation_note.endswith("retrying, or run sync_served_adapters]")
    assert queued == [(served_adapters.LOAD_TASK, [run_1.pk], 5)]
    # The queued retry fails while the server is down, in a way Celery retries.
    with pytest.raises(served_adapters.InferenceServerUnreachable):
        tasks.load_served_adapter(run_1.pk)

    runtime_lora.GENERATION_SERVER_URL = vllm.url  # the server is back
    call_command("sync_served_adapters")

    assert vllm.calls() == [("load_lora_adapter", "run-1")]
    assert vllm.loaded == {"run-1": str(tmp_path / "run-1")}
    run_1.refresh_from_db()
    assert run_1.activation_note == "gate"  # the remark goes once the adapter is loaded
    assert tasks.load_served_adapter(run_1.pk) is True  # a late retry: "already loaded"


def test_a_refused_load_is_noted_and_does_not_stop_the_activation(
    runtime_lora, vllm, base, tmp_path
):
    runtime_lora.GENERATION_SERVER_URL = vllm.url.removesuffix("/v1") + "/nothing-here"
    run_1 = adapter_version("run-1", base, tmp_path)

    promote_version(run_1)

    run_1.refresh_from_db()
    assert run_1.status == ModelVersion.Status.ACTIVE
    assert "adapter not loaded: HTTP 404" in run_1.activation_note
    with pytest.raises(CommandError, match="did not answer as expected: HTTP 404"):
        call_command("sync_served_adapters")


def test_sync_unloads_retired_adapters_once_the_active_one_has_served_for_the_delay(
    runtime_lora, vllm, base, tmp_path, capsys
):
    runtime_lora.GENERATION_SERVER_UNLOAD_DELAY = 120.0
    run_1 = adapter_version("run-1", base, tmp_path)
    run_2 = adapter_version("run-2", base, tmp_path)
    promote_version(run_1)
    promote_version(run_2)  # run-1's unload is queued (the queue fixture drops it)
    vllm.loaded["someone-elses-adapter"] = "/elsewhere"

    call_command("sync_served_adapters")
    assert "run-1: kept while streams on it may still run." in capsys.readouterr().out
    assert vllm.loaded.keys() == {"run-1", "run-2", "someone-elses-adapter"}

    ModelVersion.objects.filter(pk=run_2.pk).update(
        activated_at=timezone.now() - timedelta(seconds=121)
    )
    call_command("sync_served_adapters")
    assert capsys.readouterr().out.splitlines() == ["run-2: loaded.", "run-1: unloaded."]
    assert vllm.loaded.keys() == {"run-2", "someone-elses-adapter"}

    call_command("sync_served_adapters")  # again: nothing left to do, nothing fails
    assert capsys.readouterr().out.splitlines() == ["run-2: loaded."]
    assert vllm.loaded.keys() == {"run-2", "someone-elses-adapter"}


def test_with_the_server_down_both_the_load_and_the_unload_are_queued_for_retry(
    runtime_lora, vllm, base, tmp_path, queued
):
    run_1 = adapter_version("run-1", base, tmp_path)
    run_2 = adapter_version("run-2", base, tmp_path)
    promote_version(run_1)
    runtime_lora.GENERATION_SERVER_URL = closed_port_url()

    promote_version(run_2)

    assert ModelVersion.objects.get(pk=run_2.pk).status == ModelVersion.Status.ACTIVE
    assert queued == [
        (served_adapters.LOAD_TASK, [run_2.pk], 5),
        (served_adapters.UNLOAD_TASK, ["run-1"], 5),
    ]
    runtime_lora.GENERATION_SERVER_URL = vllm.url
    assert tasks.load_served_adapter(run_2.pk) is True
    assert tasks.unload_retired_adapter("run-1") is True
    assert vllm.loaded.keys() == {"run-2"}


def test_a_rollback_that_races_the_delayed_unload_of_its_adapter_loads_it_again(
    runtime_lora, vllm, base, tmp_path, queued, monkeypatch
):
    """The load goes out before the activation's transaction, so the retired adapter's delayed
    unload can fall due between the two: the activation notices on commit and queues the load."""
    run_1, _ = run_1_then_run_2_with_a_delayed_unload(runtime_lora, base, tmp_path)
    load = served_adapters.load_adapter

    def load_then_the_due_unload_runs(name: str, path: str) -> None:
        load(name, path)
        assert tasks.unload_retired_adapter(name) is True  # run-1 is not active yet

    monkeypatch.setattr(served_adapters, "load_adapter", load_then_the_due_unload_runs)
    rollback(to=ModelVersion.objects.get(pk=run_1.pk))

    assert "run-1" not in vllm.loaded
    assert (served_adapters.LOAD_TASK, [run_1.pk], 5) in queued
    monkeypatch.setattr(served_adapters, "load_adapter", load)
    assert tasks.load_served_adapter(run_1.pk) is True
    assert "run-1" in vllm.loaded


def test_a_plain_rollback_asks_the_server_once_and_queues_nothing_to_load(
    runtime_lora, vllm, base, tmp_path, queued
):
    run_1, _ = run_1_then_run_2_with_a_delayed_unload(runtime_lora, base, tmp_path)

    rollback(to=ModelVersion.objects.get(pk=run_1.pk))

    assert vllm.calls("GET") == [("models", "")]
    assert not [task for task in queued if task[0] == served_adapters.LOAD_TASK]
