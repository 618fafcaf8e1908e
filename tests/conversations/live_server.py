"""A live Daphne serving the real ASGI application on the test database, for browser tests.

Daphne runs as a subprocess (`python -m daphne chatbot_site.asgi:application`) on the test
database, so the browser goes through everything production does: the pages, the static
modules, the websockets with origin validation and the session, the consumers, the engine.
A subprocess rather than a forked server: forking after torch has run is not safe. It gets the
test process's environment: with REDIS_URL unset its channel layer is in memory, which serves
the customer's and the agent's sockets alike since both are on this one process.

A test module's `live_server_url` fixture wraps `daphne_serving`, after `transactional_db`
(Daphne's process sees only what is committed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from bench.web_process import free_ports, stop_process

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking"]
SERVER_START_SECONDS = 30


def _test_database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test database)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
    raise NotImplementedError(f"no live server for {connection.vendor}")


def _wait_until_serving(url: str, server: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{name} exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError:
            return  # it answers (a refusal, such as a missing API key, is an answer)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer {url} within {SERVER_START_SECONDS}s")


@contextmanager
def server_process(
    args: list[str], ready_path: str, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """``python <args>`` serving on a free port of 127.0.0.1 on the test database, until the
    block ends; yields its base URL and port once ``ready_path`` answers.

    ``args`` may contain ``{port}``. Its output goes to ``log_path``, shown in the error when
    it does not start."""
    [port] = free_ports(1)
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DEBUG": "true",
        "GENERATION_POLL_SECONDS": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, *(arg.format(port=port) for arg in args)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                _wait_until_serving(url + ready_path, server, args[0])
            except RuntimeError:
                server.kill()
                server.wait()
                raise RuntimeError(log_path.read_text(errors="replace")) from None
            yield url, port
        finally:
            stop_process(server)


@contextmanager
def daphne_serving(log_dir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Daphne serving the real ASGI application on the test database (``env`` added to its
    environment); yields its base URL.

    Its output goes to `log_dir/daphne.log`, shown in the error when it does not start."""
    args = ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "chatbot_site.asgi:application"]
    with server_process(args, "/", log_dir / "daphne.log", env) as (url, _):
        yield url
