"""A folder of Markdown (or HTML) files, an article a file.

A Markdown file starts with a front-matter block between two ``---`` lines, YAML-like: simple
``key: value`` lines (a value may be quoted, "..." as in JSON or '...') and lists as ``- item``
lines under ``key:`` (or ``["a", "b"]`` on one line)::

    ---
    title: Return window
    topic: returns
    external_id: returns/window
    is_active: true
    example_questions:
      - how long do i have to send it back
      - "can I return: after 30 days?"
    ---
    You can return items within 30 days of delivery...

The body is the article's text, Markdown reduced to plain text (heading markers, bold, code
ticks and link syntax removed; a link keeps its address in brackets). Without a ``title`` the
first ``# heading`` is the title (and leaves the text). Without an ``external_id`` key the
file's path inside the folder is its external id, so that importing the folder again updates
the same articles; ``external_id: ""`` says it has none. An ``.html`` file's title is its
<title> or first <h1>, its text the page reduced to text (``knowledge.importing.html_text``).

PyYAML is not a dependency of the project, so the front matter is read here; anything beyond
the above is reported as a problem rather than guessed at.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from knowledge.importing.html_text import html_title, html_to_text
from knowledge.importing.records import Problem, ReadResult, finish, record_from_fields

MARKDOWN_SUFFIXES = (".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
FENCE = "---"
KEY_LINE = re.compile(r"^([A-Za-z_][\w-]*)\s*:(?:\s+(.*))?\s*$")
ITEM_LINE = re.compile(r"^\s*-\s+(.*?)\s*$|^\s*-\s*$")
HEADING = re.compile(r"^#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
TITLE_HEADING = re.compile(r"^#\s+(.*?)(?:\s+#+)?\s*$")
INLINE_REPLACEMENTS = (
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # an image: its alt text
    (re.compile(r"\[([^\]]+)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"), r"\1 (\2)"),
    (re.compile(r"\*\*(.+?)\*\*"), r"\1"),
    (re.compile(r"__(.+?)__"), r"\1"),
    (re.compile(r"`([^`]+)`"), r"\1"),
)
BLANK_LINES = re.compile(r"\n{3,}")


def read_markdown_folder(folder: Path, name: str) -> ReadResult:
    """Every Markdown and HTML file under ``folder`` (hidden ones left out), in path order;
    problems name ``name``/the file's path inside the folder."""
    result = ReadResult()
    for path in article_files(folder):
        relative = path.relative_to(folder).as_posix()
        result.extend(read_article_file(path, relative, f"{name}/{relative}"))
    return finish(result, name)


def article_files(folder: Path) -> list[Path]:
    suffixes = MARKDOWN_SUFFIXES + HTML_SUFFIXES
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def read_article_file(path: Path, relative: str, file: str) -> ReadResult:
    """One Markdown or HTML file; ``relative`` is its default external id."""
    result = ReadResult()
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        result.problems.append(Problem(file, None, "(file)", "is not UTF-8 text"))
        return result
    if path.suffix.lower() in HTML_SUFFIXES:
        fields: dict[str, Any] = {
            "title": html_title(content),
            "text": html_to_text(content),
            "external_id": relative,
        }
        record, problems = record_from_fields(fields, file=file, line=1)
    else:
        record, problems = _read_markdown(content, relative, file)
    result.problems.extend(problems)
    if record is not None:
        result.records.append(record)
    return result


def _read_markdown(content: str, relative: str, file: str):
    lines = content.splitlines()
    front: dict[str, Any] = {}
    key_lines: dict[str, int] = {}
    body_start = 0
    problems: list[Problem] = []
    if lines and lines[0].strip() == FENCE:
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == FENCE), None)
        if end is None:
            problems.append(Problem(file, 1, "(front matter)", "has no closing --- line"))
            return None, problems
        front, key_lines, problems = parse_front_matter(lines[1:end], file, first_line=2)
        body_start = end + 1
    body = lines[body_start:]
    if "title" not in front:
        heading = next((i for i, line in enumerate(body) if line.strip()), None)
        if heading is not None and (match := TITLE_HEADING.match(body[heading])):
            front["title"] = match.group(1)
            key_lines["title"] = body_start + heading + 1
            body = body[:heading] + body[heading + 1 :]
    front.setdefault("external_id", relative)
    front["text"] = markdown_to_text("\n".join(body))
    key_lines.setdefault("text", body_start + 1)
    record, record_problems = record_from_fields(front, file=file, line=1)
    problems += [
        dataclasses.replace(problem, line=key_lines.get(problem.field, problem.line))
        for problem in record_problems
    ]
    return (record if not problems else None), problems


def parse_front_matter(
    lines: list[str], file: str, *, first_line: int
) -> tuple[dict[str, Any], dict[str, int], list[Problem]]:
    """The front matter's values, the line of each key, and the lines it could not read."""
    values: dict[str, Any] = {}
    key_lines: dict[str, int] = {}
    problems: list[Problem] = []
    list_key: str | None = None
    for number, line in enumerate(lines, start=first_line):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if list_key is not None and (item := ITEM_LINE.match(line)):
            values[list_key].append(_scalar(item.group(1) or ""))
            continue
        match = KEY_LINE.match(line)
        if match is None:
            why = "cannot read this line: write key: value, or - item under key:"
            problems.append(Problem(file, number, "(front matter)", why))
            list_key = None
            continue
        key, raw = match.group(1), (match.group(2) or "").strip()
        key_lines[key] = number
        list_key = None
        if not raw:
            values[key] = []
            list_key = key
        elif raw in ("|", ">", "|-", ">-"):
            why = "multi-line values are not read: write the value on one line"
            problems.append(Problem(file, number, key, why))
        elif raw.startswith("["):
            try:
                values[key] = json.loads(raw)
            except json.JSONDecodeError:
                values[key] = [_scalar(part) for part in raw.strip("[]").split(",")]
        else:
            values[key] = _scalar(raw)
    for key, value in values.items():
        if value == [] and key != "example_questions":
            values[key] = ""  # "topic:" with nothing after it is blank, not a list
    return values, key_lines, problems


def _scalar(raw: str) -> Any:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1].replace("''", "'")
    if raw in ("~", "null"):
        return None
    return raw


def markdown_to_text(markdown: str) -> str:
    """Markdown as plain text: headings, emphasis, code ticks and fences, link syntax removed."""
    lines = []
    for line in markdown.splitlines():
        if line.strip().startswith("```"):
            continue
        if match := HEADING.match(line):
            line = match.group(1)
        for pattern, replacement in INLINE_REPLACEMENTS:
            line = pattern.sub(replacement, line)
        lines.append(line.rstrip())
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
