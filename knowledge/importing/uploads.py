"""A file uploaded in the admin, from its preview to the confirmation that imports it.

Between the two requests the file is kept in the staff member's session (base64: sessions are
JSON), not on a disk, because the confirmation may reach another web process, or another
machine. It is read again on confirmation: the knowledge base may have changed since the
preview, so the preview's numbers are not trusted. Uploads are capped at MAX_UPLOAD_BYTES
(``import_knowledge`` has no cap).
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from knowledge.importing.formats import read_articles
from knowledge.importing.records import ReadResult

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
SESSION_KEY = "knowledge_import_upload"
UPLOAD_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".zip", ".md", ".markdown")


@dataclass(frozen=True)
class Upload:
    name: str  # the file's name as uploaded: what problems call it
    content: bytes
    format: str = "auto"
    replace: bool = False

    @property
    def digest(self) -> str:
        """Names this upload, so that a confirmation imports the file its preview showed."""
        options = f"{self.format}:{self.replace}:{self.name}".encode()
        return hashlib.sha256(options + b"\0" + self.content).hexdigest()


def read_upload(upload: Upload) -> ReadResult:
    """Read the upload as ``read_articles`` reads a path (from a temporary copy, gone after)."""
    safe_name = PurePath(upload.name).name or "upload"
    with tempfile.TemporaryDirectory(prefix="knowledge-upload-") as folder:
        path = Path(folder) / safe_name
        path.write_bytes(upload.content)
        return read_articles(path, upload.format, name=safe_name)


def keep_upload(session: MutableMapping[str, Any], upload: Upload) -> None:
    session[SESSION_KEY] = {
        "name": upload.name,
        "content": base64.b64encode(upload.content).decode("ascii"),
        "format": upload.format,
        "replace": upload.replace,
    }


def kept_upload(session: MutableMapping[str, Any]) -> Upload | None:
    kept = session.get(SESSION_KEY)
    if not kept:
        return None
    return Upload(
        name=kept["name"],
        content=base64.b64decode(kept["content"]),
        format=kept["format"],
        replace=kept["replace"],
    )


def forget_upload(session: MutableMapping[str, Any]) -> None:
    session.pop(SESSION_KEY, None)
