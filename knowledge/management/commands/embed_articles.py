"""Compute the knowledge base's embeddings: the missing ones, or all of them."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandParser

from knowledge.encoder import current_encoder_name
from knowledge.services import do_embed_articles


class Command(BaseCommand):
    help = (
        "Embed the knowledge-base articles that have no embedding by the current encoder "
        "(KNOWLEDGE_ENCODER); with --all, every article. Saving an article embeds it already: "
        "this is for a new encoder, or articles written to the database directly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="embed every article again")

    def handle(self, *args: object, **options: object) -> None:
        started = time.monotonic()
        name = current_encoder_name()

        def progress(done: int, total: int) -> None:
            self.stdout.write(f"embedded {done}/{total}  {time.monotonic() - started:.1f}s")

        count = do_embed_articles(only_missing=not options["all"], progress=progress)
        self.stdout.write(self.style.SUCCESS(f"{count} article(s) embedded by {name}."))
