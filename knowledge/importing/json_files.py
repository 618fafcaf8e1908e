"""JSON and JSON Lines files of articles, with the line each article starts on.

JSON: a list of article objects, or an object whose ``articles`` key holds that list. JSON
Lines: one article object a line (blank lines skipped). An article object has ``title``,
``text``, ``example_questions`` (a list of strings, or one string with a question a line),
``topic`` and optionally ``external_id`` (or ``id``, or ``category``, in that order, as the
banking77 data set's articles have it) and ``is_active``; other keys (``facts``, say) are
ignored. Without ``example_questions``, ``topic`` or ``is_active`` (or with null), an existing
article keeps its own.

``json.loads`` says nothing of where a value was, so the outer levels are walked with
``JSONDecoder.raw_decode``, which decodes one value at a known offset and says where it ended:
each article is decoded once, and its offset gives its line.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping
from typing import Any

from knowledge.importing.records import Problem, ReadResult, finish, record_from_fields

DECODER = json.JSONDecoder()
WHITESPACE = " \t\n\r"
EXTERNAL_ID_KEYS = ("external_id", "id", "category")


class LocatedJSON:
    """A JSON document's text, with offsets turned into line numbers."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._newlines = [index for index, char in enumerate(text) if char == "\n"]

    def line(self, offset: int) -> int:
        return bisect.bisect_left(self._newlines, offset) + 1

    def skip_whitespace(self, offset: int) -> int:
        while offset < len(self.text) and self.text[offset] in WHITESPACE:
            offset += 1
        return offset

    def items(self, offset: int) -> list[tuple[int, Any]]:
        """(offset, value) of each element of the array starting at ``offset``."""
        found = []
        position = self._inside(offset, "[")
        while self.text[position] != "]":
            value, end = DECODER.raw_decode(self.text, position)
            found.append((position, value))
            position = self._after(end)
        return found

    def members(self, offset: int) -> dict[str, tuple[int, Any]]:
        """key → (offset of the value, value) of the object starting at ``offset``."""
        found = {}
        position = self._inside(offset, "{")
        while self.text[position] != "}":
            key, end = DECODER.raw_decode(self.text, position)
            start = self.skip_whitespace(self.skip_whitespace(end) + 1)  # past the colon
            value, end = DECODER.raw_decode(self.text, start)
            found[key] = (start, value)
            position = self._after(end)
        return found

    def _inside(self, offset: int, opening: str) -> int:
        """The first element's offset (the document is valid JSON: checked by json.loads)."""
        if self.text[offset] != opening:
            raise ValueError(f"expected {opening!r} at offset {offset}")
        return self.skip_whitespace(offset + 1)

    def _after(self, end: int) -> int:
        """The next element's offset, or the closing bracket's."""
        position = self.skip_whitespace(end)
        if self.text[position] == ",":
            position = self.skip_whitespace(position + 1)
        return position


def decode_json(text: str, file: str) -> tuple[Any, ReadResult]:
    """The document, or the problem that it is not JSON."""
    result = ReadResult()
    try:
        return json.loads(text), result
    except json.JSONDecodeError as error:
        result.problems.append(Problem(file, error.lineno, "(file)", f"not JSON: {error.msg}"))
        return None, result


def read_json(text: str, file: str) -> ReadResult:
    """Articles of a JSON document: a list of article objects, or ``{"articles": [...]}``."""
    document, result = decode_json(text, file)
    if not result.ok:
        return result
    located = LocatedJSON(text)
    start = located.skip_whitespace(0)
    if isinstance(document, dict) and isinstance(document.get("articles"), list):
        start = located.members(start)["articles"][0]
    elif not isinstance(document, list):
        why = 'must be a list of articles, or an object with an "articles" list'
        result.problems.append(Problem(file, located.line(start), "(file)", why))
        return result
    for number, (offset, value) in enumerate(located.items(start), start=1):
        result.extend(read_article_object(value, file, located.line(offset), number))
    return finish(result, file)


def read_jsonl(text: str, file: str) -> ReadResult:
    """Articles of a JSON Lines document: an article object a line."""
    result = ReadResult()
    number = 0
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        number += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            result.problems.append(Problem(file, line_number, "(line)", f"not JSON: {error.msg}"))
            continue
        result.extend(read_article_object(value, file, line_number, number))
    return finish(result, file)


def read_article_object(value: Any, file: str, line: int, number: int) -> ReadResult:
    result = ReadResult()
    if not isinstance(value, dict):
        result.problems.append(Problem(file, line, "(article)", "must be an object"))
        return result
    record, problems = record_from_fields(article_fields(value), file=file, line=line)
    result.problems.extend(problems)
    if record is not None:
        result.records.append(record)
    return result


def article_fields(value: Mapping[str, Any]) -> dict[str, Any]:
    """The record's fields of an article object: the external id is the first of
    EXTERNAL_ID_KEYS that the object has."""
    fields = {key: value.get(key) for key in ("title", "text", "example_questions", "topic")}
    fields["is_active"] = value.get("is_active")
    fields["external_id"] = next(
        (value[key] for key in EXTERNAL_ID_KEYS if value.get(key) not in (None, "")), ""
    )
    return fields
