"""Articles written out in the formats ``knowledge.importing`` reads, so that an export imported
into an empty knowledge base gives the same titles, texts, example questions, topics, external
ids and active flags.

Every field is written, the external id too when it is blank (in Markdown front matter,
``external_id: ""``: without it the file's path would become the external id).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from knowledge.importing.csv_files import COLUMNS, QUESTION_SEPARATOR
from knowledge.models import KnowledgeArticle, question_lines

EXPORT_FORMATS = ("json", "jsonl", "csv", "markdown")
SLUG_CHARACTERS = re.compile(r"[^a-z0-9]+")
SLUG_MAX = 60


def article_rows(articles: Iterable[KnowledgeArticle]) -> list[dict[str, Any]]:
    """One dict an article, the fields import reads."""
    return [
        {
            "title": article.title,
            "text": article.text,
            "example_questions": question_lines(article.example_questions),
            "topic": article.topic,
            "external_id": article.external_id,
            "is_active": article.is_active,
        }
        for article in articles
    ]


def export_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps({"articles": rows}, ensure_ascii=False, indent=2) + "\n"


def export_jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def export_csv(rows: list[dict[str, Any]]) -> str:
    """A header row, then an article a row; example questions one a line inside their cell."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in rows:
        questions = "\n".join(row["example_questions"])
        if QUESTION_SEPARATOR in questions and "\n" not in questions:
            questions += "\n"  # a line break: read as lines, never split on the separator
        cells = {**row, "example_questions": questions}
        cells["is_active"] = "true" if row["is_active"] else "false"
        writer.writerow([cells[column] for column in COLUMNS])
    return out.getvalue()


def markdown_files(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Relative path → content: a file an article, under a folder a topic, named after its
    title (a number added where two would have the same name)."""
    files: dict[str, str] = {}
    for row in rows:
        folder = _slug(row["topic"]) if row["topic"] else ""
        stem = _slug(row["title"]) or "article"
        path = f"{folder}/{stem}.md" if folder else f"{stem}.md"
        number = 2
        while path in files:
            path = f"{folder}/{stem}-{number}.md" if folder else f"{stem}-{number}.md"
            number += 1
        files[path] = markdown_article(row)
    return files


def markdown_article(row: dict[str, Any]) -> str:
    """Front matter with every field (values quoted as JSON strings), then the text."""
    front = [
        "---",
        f"title: {_quoted(row['title'])}",
        f"topic: {_quoted(row['topic'])}",
        f"external_id: {_quoted(row['external_id'])}",
        f"is_active: {'true' if row['is_active'] else 'false'}",
        "example_questions:",
        *(f"  - {_quoted(question)}" for question in row["example_questions"]),
        "---",
    ]
    return "\n".join(front) + "\n" + row["text"] + "\n"


def write_export(rows: list[dict[str, Any]], path: Path, format: str) -> list[Path]:
    """Write ``rows`` at ``path`` (for markdown, a folder that must be empty or new); the files
    written."""
    if format == "markdown":
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FileExistsError(f"{path} exists and is not an empty folder.")
        written = []
        for relative, content in markdown_files(rows).items():
            target = path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            written.append(target)
        return written
    writers = {"json": export_json, "jsonl": export_jsonl, "csv": export_csv}
    path.write_text(writers[format](rows), encoding="utf-8", newline="")
    return [path]


def _quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _slug(text: str) -> str:
    return SLUG_CHARACTERS.sub("-", text.lower()).strip("-")[:SLUG_MAX].strip("-")
