"""Child processes for benchmarks and tests: `manage.py` commands, Daphne servers, Celery
workers, free ports, and stopping them.

Each child gets the environment it is given (a bench builds it from scratch for its own stores),
so what a bench measures never reads or writes the real database or channel layer. The tests'
live servers and workers (tests/conversations/live_server.py, tests/learning/worker_process.py)
start theirs with these helpers too.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent


def run_manage(env: dict[str, str], *arguments: str) -> str:
    """Run `manage.py` with ``arguments`` in ``env``; its stdout, or SystemExit with its stderr."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *arguments],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def spawn_daphne(port: int, env: dict[str, str], log: IO[str]) -> subprocess.Popen:
    """Start Daphne serving the site on 127.0.0.1:``port``, its stderr into ``log``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "chatbot_site.asgi:application",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def wait_until_listening(
    process: subprocess.Popen, port: int, log_path: Path, timeout: float = 60
) -> None:
    """Return once ``port`` accepts connections; SystemExit (with the log) if Daphne exits or
    does not listen within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"Daphne exited: {log_path.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"Daphne did not start listening within {timeout:.0f} s.")


def stop_process(process: subprocess.Popen | None) -> None:
    """Terminate ``process`` (if still running), killing it after 10 s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def celery_worker_command(queues: str, *extra: str) -> list[str]:
    """A Celery worker as production runs it (one prefork child), on ``queues``."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "chatbot_site",
        "worker",
        "-Q",
        queues,
        "--pool=prefork",
        "-c",
        "1",
        "--loglevel=INFO",
        "--without-mingle",
        "--without-gossip",
        *extra,
    ]


def resident_bytes(pid: int) -> int:
    """A process's resident memory (VmRSS from /proc), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
