"""A value read from the database once per process and again at most every KNOWLEDGE_POLL_SECONDS.

The business profile and the decline threshold are read for every reply, on the event loop as
well as in threads. A ``PolledValue`` queries only off the loop (Django forbids the ORM there):
on the loop it returns what it last read, which the retrieval threads keep fresh (they read it
before each reply), or its fallback before the first read.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings

T = TypeVar("T")


class PolledValue(Generic[T]):
    def __init__(self, load: Callable[[], T], fallback: Callable[[], T]) -> None:
        self._load = load
        self._fallback = fallback
        self._value: T | None = None
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The value as last read, read again when the poll interval is over (off the loop)."""
        fresh = self._read_at is not None and (
            time.monotonic() - self._read_at < settings.KNOWLEDGE_POLL_SECONDS
        )
        if fresh or _on_event_loop():
            return self._fallback() if self._read_at is None else self._value  # type: ignore[return-value]
        with self._lock:
            self._value, self._read_at = self._load(), time.monotonic()
            return self._value

    def forget(self, **_signal_arguments: object) -> None:
        """The next ``get`` off the loop reads the database again (a receiver for save signals)."""
        self._read_at = None


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
