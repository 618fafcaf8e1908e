"""Which reader a path needs, by its extension and, for JSON, its shape; and reading it.

- a folder, a ``.md``/``.markdown``/``.html`` file or a ``.zip`` of them: ``markdown``;
- ``.jsonl``/``.ndjson``: ``jsonl``; ``.csv``: ``csv``;
- ``.json``: ``zendesk`` when it is the Help Center articles API's answer (articles with an
  HTML ``body`` and no ``text``), else ``json``.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from knowledge.importing.csv_files import read_csv
from knowledge.importing.json_files import decode_json, read_json, read_jsonl
from knowledge.importing.markdown_files import (
    HTML_SUFFIXES,
    MARKDOWN_SUFFIXES,
    read_article_file,
    read_markdown_folder,
)
from knowledge.importing.records import Problem, ReadResult, finish
from knowledge.importing.zendesk import looks_like_zendesk, read_zendesk

FORMATS = ("json", "jsonl", "csv", "markdown", "zendesk")
TEXT_READERS = {"json": read_json, "jsonl": read_jsonl, "csv": read_csv, "zendesk": read_zendesk}
ZIP_MAX_BYTES = 50 * 1024 * 1024  # unpacked: a zip bomb stops here


class FormatError(Exception):
    """The path's format cannot be told, or it is not one of FORMATS."""


def detect_format(path: Path) -> str:
    """The format ``path`` holds, by its extension (and the shape of a .json file)."""
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (*MARKDOWN_SUFFIXES, *HTML_SUFFIXES, ".zip"):
        return "markdown"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        text = _read_text(path)
        document, result = decode_json(text, str(path)) if text is not None else (None, None)
        return "zendesk" if result and result.ok and looks_like_zendesk(document) else "json"
    raise FormatError(
        f"Cannot tell the format of {path.name}: name it .json, .jsonl, .csv, .md or .zip, or "
        f"give the format ({', '.join(FORMATS)})."
    )


def read_articles(path: Path, format: str = "auto", *, name: str | None = None) -> ReadResult:
    """The articles at ``path`` and the problems found; ``name`` is what problems call the
    file (default: the path), e.g. an uploaded file's name instead of its temporary copy's."""
    path = Path(path)
    name = name or str(path)
    if not path.exists():
        return ReadResult(problems=[Problem(name, None, "(file)", "does not exist")])
    if format == "auto":
        format = detect_format(path)
    if format not in FORMATS:
        raise FormatError(f"Unknown format {format!r}: one of auto, {', '.join(FORMATS)}.")
    if format == "markdown":
        return _read_markdown(path, name)
    if path.is_dir():
        return ReadResult(problems=[Problem(name, None, "(file)", f"is a folder, not {format}")])
    text = _read_text(path)
    if text is None:
        return ReadResult(problems=[Problem(name, None, "(file)", "is not UTF-8 text")])
    return TEXT_READERS[format](text, name)


def _read_markdown(path: Path, name: str) -> ReadResult:
    if path.is_dir():
        return read_markdown_folder(path, name)
    if path.suffix.lower() == ".zip":
        return _read_zip(path, name)
    return finish(read_article_file(path, path.name, name), name)


def _read_zip(path: Path, name: str) -> ReadResult:
    """A zip of Markdown/HTML files, read as the folder it unpacks to (within ZIP_MAX_BYTES;
    members whose names would leave the folder are left out)."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return ReadResult(problems=[Problem(name, None, "(file)", "is not a zip file")])
    with archive, tempfile.TemporaryDirectory(prefix="knowledge-import-") as folder:
        members = [
            member
            for member in archive.infolist()
            if not member.is_dir()
            and not PurePosixPath(member.filename).is_absolute()
            and ".." not in PurePosixPath(member.filename).parts
        ]
        if sum(member.file_size for member in members) > ZIP_MAX_BYTES:
            why = f"unpacks to more than {ZIP_MAX_BYTES // 2**20} MiB"
            return ReadResult(problems=[Problem(name, None, "(file)", why)])
        for member in members:
            archive.extract(member, folder)
        return read_markdown_folder(Path(folder), name)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return None
