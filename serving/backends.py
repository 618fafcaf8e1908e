"""What the chat consumers use to answer: the active version (cached) and the backend.

Importing this module does not import torch: the engine, and with it the model code, is
loaded on the first ``get_in_process_engine()`` (``get_engine()`` with the in-process backend).
With GENERATION_BACKEND=openai the web process never loads a model: replies stream from the
generation server (``serving.remote_generation``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from django.conf import settings

from learning.models import ModelVersion
from serving.generation import ActiveVersion, GenerationBackend

if TYPE_CHECKING:
    from serving.engine import GenerationEngine
    from serving.remote_generation import RemoteGeneration


@dataclass(frozen=True)
class _CachedLookup:
    version: ActiveVersion | None
    at: float


_cached: _CachedLookup | None = None
_engine: GenerationEngine | None = None
_remote: RemoteGeneration | None = None
_engine_lock = threading.Lock()


async def get_active_version() -> ActiveVersion | None:
    """The active version, read from the database at most every GENERATION_POLL_SECONDS.

    Every web process polls, so a version promoted by a worker reaches all of them within the
    poll interval; activations in this process take effect at once (``forget_active_version``).
    """
    global _cached
    cached = _cached
    now = time.monotonic()
    if cached is not None and now - cached.at < settings.GENERATION_POLL_SECONDS:
        return cached.version
    version = await database_sync_to_async(_read_active_version)()
    _cached = _CachedLookup(version, time.monotonic())
    return version


def forget_active_version() -> None:
    """Drop the cached lookup: the next ``get_active_version`` reads the database."""
    global _cached
    _cached = None


def _read_active_version() -> ActiveVersion | None:
    row = ModelVersion.objects.active().first()
    if row is None:
        return None
    return ActiveVersion(id=row.pk, name=row.name, checkpoint_path=row.checkpoint_path)


def get_engine() -> GenerationBackend:
    """The backend GENERATION_BACKEND chooses: this process's engine or the generation server."""
    if settings.GENERATION_BACKEND == "openai":
        return get_remote_generation()
    return get_in_process_engine()


def get_in_process_engine() -> GenerationEngine:
    """The process-wide engine, created (with its worker thread) on first use."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                from serving.engine import GenerationEngine

                _engine = GenerationEngine.from_settings()
    return _engine


def get_remote_generation() -> RemoteGeneration:
    """The process-wide client of the generation server (GENERATION_SERVER_URL)."""
    global _remote
    if _remote is None:
        with _engine_lock:
            if _remote is None:
                from serving.remote_generation import RemoteGeneration

                _remote = RemoteGeneration.from_settings()
    return _remote
