"""Import a knowledge base from a file or folder: all of it, or nothing when any row is bad."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.importing import FORMATS, FormatError, read_articles
from knowledge.imports import ArticleChange, ImportResult, do_import_knowledge
from knowledge.services import KnowledgeError

LISTED_TITLES = 10  # per kind of change; the rest are counted
PROGRESS_SECONDS = 5.0


class Command(BaseCommand):
    help = (
        "Import knowledge-base articles from PATH: a JSON file (a list of articles, or "
        '{"articles": [...]}), JSON Lines, CSV (a header row: title,text,example_questions,'
        "topic,external_id,is_active), a folder (or .zip) of Markdown files with front matter, "
        "or a Zendesk Guide articles export (JSON). Articles are matched by external id (without "
        "one: by title); importing the same file again changes nothing. Every problem is "
        "listed as file:line: field: why, and then nothing is written. New and changed "
        "articles are embedded before anything is written. See docs/knowledge-base.md, "
        '"Importing and exporting".'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="the file, or the folder of Markdown files")
        parser.add_argument(
            "--format",
            choices=["auto", *FORMATS],
            default="auto",
            help="what PATH holds (default auto: by its extension; a .json file in the shape "
            "of Zendesk's articles API is read as zendesk)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check the file and say what would change; write nothing, embed nothing",
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="also switch off (never delete) every active article the file does not have",
        )

    def handle(self, *args: object, **options: object) -> None:
        path: Path = options["path"]
        started = time.monotonic()
        try:
            read = read_articles(path, str(options["format"]))
        except FormatError as error:
            raise CommandError(str(error)) from error
        if read.problems:
            for problem in read.problems:
                self.stderr.write(str(problem))
            raise CommandError(f"{len(read.problems)} problem(s) in {path}: nothing was imported.")
        self.stdout.write(f"{path}: {len(read.records)} article(s) read.")
        try:
            result = do_import_knowledge(
                read.records,
                dry_run=bool(options["dry_run"]),
                replace=bool(options["replace"]),
                progress=self._progress_printer(),
            )
        except KnowledgeError as error:
            raise CommandError(str(error)) from error
        self._report(result, time.monotonic() - started)

    def _progress_printer(self):
        """progress(done, total) for the encoding: passages done and the time left, at most
        every PROGRESS_SECONDS (and at the end)."""
        started = time.monotonic()
        last = [started]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - last[0] < PROGRESS_SECONDS:
                return
            last[0] = now
            left = (now - started) / done * (total - done)
            self.stdout.write(f"embedding: {done}/{total} passages, about {left:.0f}s left")

        return progress

    def _report(self, result: ImportResult, seconds: float) -> None:
        would = "would be " if result.dry_run else ""
        groups = [
            ("created", "+", result.created),
            ("updated", "~", result.updated),
            ("switched off", "-", result.switched_off),
        ]
        for label, mark, changes in groups:
            if changes:
                self.stdout.write(f"{len(changes)} {would}{label}:")
                for line in _titles(mark, changes):
                    self.stdout.write(line)
        summary = result.summary()
        if result.dry_run:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Dry run: {summary}; {result.embedded} article(s) to embed. Nothing written."
                )
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported: {summary}; {result.embedded} article(s) embedded in "
                f"{result.embed_seconds:.1f}s, written in {result.write_seconds:.1f}s "
                f"({seconds:.1f}s in all)."
            )
        )


def _titles(mark: str, changes: tuple[ArticleChange, ...]) -> list[str]:
    lines = []
    for change in changes[:LISTED_TITLES]:
        fields = f" ({', '.join(change.fields)})" if mark == "~" and change.fields else ""
        lines.append(f"  {mark} {change.title}{fields}")
    if len(changes) > LISTED_TITLES:
        lines.append(f"  … and {len(changes) - LISTED_TITLES} more")
    return lines
