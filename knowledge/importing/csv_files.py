"""CSV files of articles: a header row, then an article a row.

Columns (any order; others are ignored): ``title`` and ``text`` (required), ``example_questions``
(a question a line inside the cell; a cell without line breaks may separate them by " | ",
easier to type in a spreadsheet), ``topic``, ``external_id`` and ``is_active`` (true/false,
yes/no, 1/0; empty: not said). Without an ``example_questions`` column an existing article keeps
its questions. A cell may hold line breaks; a problem names the line its row starts on.
"""

from __future__ import annotations

import csv
import io

from knowledge.importing.records import Problem, ReadResult, finish, record_from_fields

COLUMNS = ("title", "text", "example_questions", "topic", "external_id", "is_active")
REQUIRED_COLUMNS = ("title", "text")
QUESTION_SEPARATOR = " | "


def read_csv(text: str, file: str) -> ReadResult:
    result = ReadResult()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as error:
        result.problems.append(Problem(file, 1, "(header)", f"not CSV: {error}"))
        return result
    names = [name.strip().lower() for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        why = f"no {' or '.join(missing)} column (the header row names {', '.join(COLUMNS)})"
        result.problems.append(Problem(file, 1, "(header)", why))
        return result
    row_start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            result.problems.append(Problem(file, row_start, "(row)", f"not CSV: {error}"))
            break
        line, row_start = row_start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(names):
            why = f"{len(row)} cells, but the header names {len(names)} columns"
            result.problems.append(Problem(file, line, "(row)", why))
            continue
        fields = {name: cell for name, cell in zip(names, row, strict=False) if name in COLUMNS}
        record, problems = record_from_fields(
            fields, file=file, line=line, question_separator=QUESTION_SEPARATOR
        )
        result.problems.extend(problems)
        if record is not None:
            result.records.append(record)
    return finish(result, file)
