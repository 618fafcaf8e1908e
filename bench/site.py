"""A throwaway installation for a benchmark: what a bench writes never touches the real stores."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def throwaway_site(workdir: str | Path | None, prefix: str, **settings: str) -> Path:
    """Point Django at a private SQLite database, checkpoint directory and in-memory channel
    layer under ``workdir`` (a new temporary directory when None), plus ``settings``, before
    ``django.setup()``. Returns the directory."""
    path = Path(workdir or tempfile.mkdtemp(prefix=prefix))
    path.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatbot_site.settings",
            "VAR_DIR": str(path),
            "DATABASE_URL": f"sqlite:///{path / 'bench.sqlite3'}",
            "CHECKPOINT_DIR": str(path / "checkpoints"),
            **settings,
        }
    )
    os.environ.pop("REDIS_URL", None)
    return path


def newest_checkpoint(pattern: str) -> Path | None:
    """The newest directory matching ``pattern`` under CHECKPOINT_DIR (where bin/start builds
    its models), None if there is none."""
    var_dir = Path(os.environ.get("VAR_DIR", ROOT / "var"))
    root = Path(os.environ.get("CHECKPOINT_DIR", var_dir / "checkpoints"))
    found = sorted(root.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
