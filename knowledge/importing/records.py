"""What every reader makes of a file: article records, and the problems found on the way.

A reader turns its format's rows into plain mappings of field names to raw values and hands each
to ``record_from_fields``, which checks them the same way for every format; ``check_duplicates``
then looks across the whole file. A problem names where it is (file and line, or record number
where the format has no lines) and the field, so that staff can fix the file and try again:
an import with any problem writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from knowledge.models import KnowledgeArticle, question_lines

TITLE_MAX = KnowledgeArticle._meta.get_field("title").max_length
TOPIC_MAX = KnowledgeArticle._meta.get_field("topic").max_length
EXTERNAL_ID_MAX = KnowledgeArticle._meta.get_field("external_id").max_length

TRUE_WORDS = {"true", "yes", "1", "on", "active"}
FALSE_WORDS = {"false", "no", "0", "off", "inactive"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: where, which field, and why."""

    file: str
    line: int | None
    field: str
    why: str
    record: int | None = None  # the record's number (from 1) where the format has no lines

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        elif self.record is not None:
            where += f": record {self.record}"
        return f"{where}: {self.field}: {self.why}"


@dataclass(frozen=True)
class ArticleRecord:
    """An article as a file has it. ``example_questions``, ``topic`` or ``is_active`` None: the
    file does not say (a new article has no questions, no topic and is active; an existing one
    keeps its own)."""

    title: str
    text: str
    example_questions: tuple[str, ...] | None = None
    topic: str | None = None
    external_id: str = ""
    is_active: bool | None = None
    file: str = ""
    line: int | None = None


@dataclass
class ReadResult:
    """A file read: its records and its problems (the records are only usable without any)."""

    records: list[ArticleRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def extend(self, other: ReadResult) -> None:
        self.records.extend(other.records)
        self.problems.extend(other.problems)


def record_from_fields(
    fields: Mapping[str, Any],
    *,
    file: str,
    line: int | None = None,
    record: int | None = None,
    question_separator: str | None = None,
) -> tuple[ArticleRecord | None, list[Problem]]:
    """Check a row's raw values (``title``, ``text``, ``example_questions``, ``topic``,
    ``external_id``, ``is_active``; other keys are ignored) and make the record.

    ``example_questions`` is a list of strings or one string, a question a line (or, with
    ``question_separator`` and no line break, split on it: CSV cells use " | ").
    """
    problems: list[Problem] = []

    def problem(name: str, why: str) -> None:
        problems.append(Problem(file, line, name, why, record))

    title = _text(fields.get("title"), "title", problem, required=True, limit=TITLE_MAX)
    text = _text(fields.get("text"), "text", problem, required=True)
    topic = fields.get("topic")
    if topic is not None:
        topic = _text(topic, "topic", problem, limit=TOPIC_MAX)
    external_id = fields.get("external_id")
    if isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)  # helpdesks number their articles
    external_id = _text(external_id, "external_id", problem, limit=EXTERNAL_ID_MAX)
    questions = _questions(fields.get("example_questions"), problem, question_separator)
    is_active = _flag(fields.get("is_active"), "is_active", problem)
    if problems:
        return None, problems
    return (
        ArticleRecord(
            title=title,
            text=text,
            example_questions=questions,
            topic=topic,
            external_id=external_id,
            is_active=is_active,
            file=file,
            line=line,
        ),
        [],
    )


def check_duplicates(records: Iterable[ArticleRecord]) -> list[Problem]:
    """Two records for one article: the same external id, or (without external ids) the same
    title, which is how such a record finds its article."""
    problems = []
    first_of: dict[tuple[str, str], ArticleRecord] = {}
    for record in records:
        key = ("external_id", record.external_id) if record.external_id else ("title", record.title)
        earlier = first_of.setdefault(key, record)
        if earlier is not record:
            where = f"{earlier.file}:{earlier.line}" if earlier.line is not None else earlier.file
            why = (
                f"“{key[1]}” is also the external id at {where}"
                if key[0] == "external_id"
                else f"“{key[1]}” is also the title at {where}, and neither has an external id"
            )
            problems.append(Problem(record.file, record.line, key[0], why))
    return problems


def finish(result: ReadResult, file: str) -> ReadResult:
    """Add the problems only the whole file shows: duplicates, and no article at all."""
    result.problems.extend(check_duplicates(result.records))
    if not result.records and not result.problems:
        result.problems.append(Problem(file, None, "(file)", "holds no articles"))
    return result


def _text(value: Any, name: str, problem: Any, *, required: bool = False, limit: int = 0) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        problem(name, f"must be text, not {_kind(value)}")
        return ""
    value = value.strip()
    if required and not value:
        problem(name, "is required")
    elif limit and len(value) > limit:
        problem(name, f"is {len(value)} characters long; at most {limit}")
    return value


def _questions(value: Any, problem: Any, separator: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if separator and "\n" not in value:  # a cell with line breaks is split on them only
            value = value.replace(separator, "\n")
        return tuple(question_lines(value))
    if not isinstance(value, list):
        problem("example_questions", f"must be a list of questions or text, not {_kind(value)}")
        return ()
    for number, question in enumerate(value, start=1):
        if not isinstance(question, str):
            problem("example_questions", f"question {number} must be text, not {_kind(question)}")
    if any(not isinstance(question, str) for question in value):
        return ()
    return tuple(question_lines("\n".join(value)))


def _flag(value: Any, name: str, problem: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    problem(name, f"must be true or false, not {value!r}")
    return None


def _kind(value: Any) -> str:
    """A JSON reader's name for a value's type."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
