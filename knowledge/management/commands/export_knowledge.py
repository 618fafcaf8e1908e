"""Export the knowledge base in a format import_knowledge reads back."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.importing.exporting import EXPORT_FORMATS, article_rows, write_export
from knowledge.models import KnowledgeArticle

SUFFIX_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


class Command(BaseCommand):
    help = (
        "Write the active knowledge-base articles (with --all, the inactive ones too) to PATH "
        "with every field import_knowledge reads: title, text, example questions, topic, "
        "external id and active flag. Importing the export into an empty knowledge base gives "
        "the same articles. Markdown writes a folder (new or empty) with a file an article, "
        "in a folder a topic."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="the file to write, or the folder (markdown)")
        parser.add_argument(
            "--format",
            choices=["auto", *EXPORT_FORMATS],
            default="auto",
            help="default auto: by PATH's extension (.json, .jsonl, .csv); no extension: a "
            "markdown folder",
        )
        parser.add_argument(
            "--all", action="store_true", help="include inactive articles (with is_active false)"
        )

    def handle(self, *args: object, **options: object) -> None:
        path: Path = options["path"]
        format = str(options["format"])
        if format == "auto":
            format = SUFFIX_FORMATS.get(path.suffix.lower(), "markdown" if not path.suffix else "")
            if not format:
                raise CommandError(
                    f"Cannot tell the format from {path.name}: give --format "
                    f"({', '.join(EXPORT_FORMATS)})."
                )
        articles = KnowledgeArticle.objects.defer("embedding").order_by("topic", "title", "id")
        if not options["all"]:
            articles = articles.filter(is_active=True)
        rows = article_rows(articles)
        try:
            written = write_export(rows, path, format)
        except OSError as error:
            raise CommandError(str(error)) from error
        where = path if format != "markdown" else f"{path}/ ({len(written)} files)"
        self.stdout.write(self.style.SUCCESS(f"{len(rows)} article(s) written to {where}."))
