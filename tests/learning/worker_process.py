"""A real Celery worker process for the tests whose subject is Celery itself.

The worker runs ``celery -A chatbot_site worker -Q default,gpu --pool=prefork -c 1`` as a
subprocess against the test database (the SQLite test file, or the PostgreSQL test database:
tests using it need ``django_db(transaction=True)`` so that their rows are committed where the
worker can read them) and against the broker this process sends to (Redis when REDIS_URL is
set, else the server-less sqla+sqlite broker under VAR_DIR).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from bench.web_process import celery_worker_command
from chatbot_site.celery import app

QUEUES = ("default", "gpu")


def database_url() -> str:
    """The URL of the database the tests use now (the test database, not the configured one)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        name = str(db["NAME"])
        assert "memory" not in name, "the worker needs a file test database"
        return f"sqlite:///{name}"
    assert "postgresql" in db["ENGINE"], db["ENGINE"]
    auth = db["USER"] or ""
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{'@' if auth else ''}{host}{port}/{db['NAME']}"


def purge_queues() -> None:
    """Drop messages a killed earlier session left in the broker (run ids restart per session)."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in QUEUES:
            try:
                channel.queue_purge(queue)
            except Exception:  # a queue that was never declared
                pass


class WorkerProcess:
    """One worker (main process + one prefork child) with its log in a file."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = celery_worker_command(
            ",".join(QUEUES), "--without-heartbeat", "-n", f"test-{uuid.uuid4().hex[:8]}@%h"
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=settings.BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the child too
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


def wait_until(
    condition: Callable[[], Any], *, timeout: float, what: str, worker: WorkerProcess
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with the worker's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if worker.process is not None and worker.process.poll() is not None:
            pytest.fail(f"the worker exited while waiting for {what}:\n{worker.log()}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; worker log:\n{worker.log()}")


def child_pids(worker: WorkerProcess) -> set[int]:
    """The worker's prefork children now."""
    assert worker.process is not None
    pid = worker.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in children.read_text().split()} if children.exists() else set()


@pytest.fixture(name="celery_worker_process")
def worker_process_fixture(
    transactional_db, settings, tmp_path, request
) -> Iterator[WorkerProcess]:
    """A started worker sharing this test's database, broker and CHECKPOINT_DIR; a test's
    ``worker_env`` marker adds to its environment."""
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatbot_site.settings",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": app.conf.broker_url,
        "CHECKPOINT_DIR": str(settings.CHECKPOINT_DIR),
        "LEARNING_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",  # the test machines are small and shared
        "PYTHONUNBUFFERED": "1",
    }
    if marker := request.node.get_closest_marker("worker_env"):
        env.update(marker.kwargs)
    purge_queues()
    worker = WorkerProcess(tmp_path / "worker.log", env)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
