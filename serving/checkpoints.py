"""Checkpoint directories: safetensors weights or a LoRA adapter, the tokenizer, a metadata.json.

A checkpoint is written into a temporary directory next to its destination and renamed into
place in one step, so a reader never sees a half-written one and a crash leaves nothing behind
under the final name. Loading goes through ``from_pretrained`` only: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.utils import timezone

if TYPE_CHECKING:
    import torch

METADATA_FILE = "metadata.json"
# peft's file in an adapter checkpoint (learning.adapters), whose metadata names the checkpoint
# it applies to under BASE_CHECKPOINT_KEY.
ADAPTER_CONFIG = "adapter_config.json"
BASE_CHECKPOINT_KEY = "base_checkpoint"


class CheckpointError(Exception):
    """A checkpoint cannot be written or read."""


def write_checkpoint(
    model: Any, tokenizer: Any, destination: str | Path, metadata: dict, *, replace: bool = False
) -> Path:
    """Save ``model``, ``tokenizer`` and ``metadata`` as the directory ``destination``.

    Refuses to overwrite an existing directory unless ``replace``: then the old one is swapped
    out only once the new one is complete.
    """
    destination = Path(destination)
    if destination.exists() and not replace:
        raise CheckpointError(f"Checkpoint {destination} already exists.")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        record = {"created": timezone.now().isoformat(), **metadata}
        (staging / METADATA_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
        _fsync_directory(staging)
        if destination.exists():
            if not replace:
                raise CheckpointError(f"Checkpoint {destination} already exists.")
            _swap_in(staging, destination)
        else:
            os.rename(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_directory(destination.parent)
    return destination


def _swap_in(staging: Path, destination: Path) -> None:
    retired = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old.", dir=destination.parent))
    os.rename(destination, retired / destination.name)
    try:
        os.rename(staging, destination)
    except BaseException:
        os.rename(retired / destination.name, destination)
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def checkpoint_size_bytes(path: str | Path) -> int:
    return sum(file.stat().st_size for file in Path(path).rglob("*") if file.is_file())


def pick_device(preference: str = "auto") -> torch.device:
    """``cuda`` or ``cpu``; ``auto`` takes the GPU when there is one."""
    import torch

    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def load_checkpoint(
    path: str | Path, device: str = "cpu", *, trainable_adapter: bool = False
) -> tuple[Any, Any]:
    """(model, tokenizer) from a checkpoint directory or a hub id, in eval mode on ``device``.

    An adapter checkpoint (``learning.adapters``) is applied to the base checkpoint its metadata
    names and merged into it, so it serves like any other model; ``trainable_adapter`` keeps
    the adapter apart, its weights trainable, for a run that continues it.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    is_adapter = is_adapter_checkpoint(path)
    weights = adapter_base_checkpoint(path) if is_adapter else str(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(weights, use_safetensors=True)
        if is_adapter:
            model = apply_adapter(model, path, trainable=trainable_adapter)
    except (OSError, ValueError, SafetensorError) as error:  # missing, malformed, corrupted
        raise CheckpointError(f"Cannot load checkpoint {path}: {error}") from error
    model.to(device)
    model.eval()
    return model, tokenizer


def apply_adapter(base: torch.nn.Module, path: str | Path, *, trainable: bool) -> Any:
    """The adapter at ``path`` on ``base``: merged into it (a plain model that serves like any
    other), or, ``trainable``, kept apart with its weights trainable, for a run to continue."""
    from peft import PeftModel  # peft takes seconds to import: adapters only

    model = PeftModel.from_pretrained(base, str(path), is_trainable=trainable)
    return model if trainable else model.merge_and_unload()


def is_adapter_checkpoint(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base_checkpoint(path: str | Path) -> str:
    """The checkpoint an adapter checkpoint applies to, as its metadata names it."""
    base = read_metadata(path).get(BASE_CHECKPOINT_KEY)
    if not base:
        raise CheckpointError(f"Adapter checkpoint {path} does not name its base checkpoint.")
    return str(base)


def read_metadata(path: str | Path) -> dict:
    file = Path(path) / METADATA_FILE
    return json.loads(file.read_text()) if file.exists() else {}


def _fsync_directory(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
