"""Make sure some model answers: used by the start-up script through ``ensure_base_model``."""

from __future__ import annotations

import fcntl
import re
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from learning.models import ModelVersion
from learning.versions import activate_version, register_version


def ensure_base_model(
    *, base_model: str | None = None, build_starter: Callable[[], ModelVersion], log=print
) -> tuple[ModelVersion, bool]:
    """(the active version, whether this call created or activated it); idempotent.

    With no active version, ``base_model`` (a hub id or a local path, CHATBOT_BASE_MODEL by
    default) is loaded once to check it, registered as source=pretrained and activated; without
    one the starter model is built. A file lock keeps two processes starting at once from
    building twice.
    """
    base_model = settings.CHATBOT_BASE_MODEL if base_model is None else base_model
    lock_dir = Path(settings.CHECKPOINT_DIR)
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".ensure_base_model.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        active = ModelVersion.objects.active().first()
        if active is not None:
            return active, False
        if base_model:
            return _activate_pretrained(base_model, log), True
        return build_starter(), True


def _activate_pretrained(base_model: str, log) -> ModelVersion:
    from learning.checkpoints import load_checkpoint

    log(f"Checking that {base_model} loads…")
    model, _ = load_checkpoint(base_model)
    del model
    name = "base-" + re.sub(r"[^A-Za-z0-9._-]+", "-", base_model.strip("/"))[-90:]
    version = ModelVersion.objects.filter(name=name).first() or register_version(
        name, base_model, ModelVersion.Source.PRETRAINED
    )
    return activate_version(version, note="Base model from CHATBOT_BASE_MODEL")
