"""Idempotent start-up step: fill an empty knowledge base from the demo corpus and embed it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser

from knowledge.calibration import do_calibrate_threshold
from knowledge.demo.corpus import CORPUS_PATH, PROFILE_PATH, load_corpus
from knowledge.profile import do_fill_profile
from knowledge.services import do_seed_articles


class Command(BaseCommand):
    help = (
        "Add one knowledge-base article per intent of the starter corpus (title from the "
        "intent's name, text = its answer, example questions = its training questions, topic = "
        "its topic) and embed them, fill the business profile's blank fields from the demo's "
        "profile and calibrate the decline threshold on the articles; safe to run at "
        "every start-up. When articles exist it adds nothing and only embeds the articles that "
        "have no embedding by the current encoder (after KNOWLEDGE_ENCODER changed, say)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--corpus", type=Path, default=CORPUS_PATH, help="corpus JSON file (the starter's)"
        )
        parser.add_argument(
            "--profile",
            type=Path,
            default=PROFILE_PATH,
            help="business profile JSON whose values fill the profile's blank fields when the "
            "corpus is seeded (the demo's)",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="also when articles exist: write each intent's answer and questions into the "
            "article of the same title (its version is kept as a revision) or add it; others "
            "stay as they are",
        )

    def handle(self, *args: object, **options: object) -> None:
        started = time.monotonic()
        corpus = load_corpus(options["corpus"])

        def progress(done: int, total: int) -> None:
            if done == total or done % 20 == 0:
                self.stdout.write(
                    f"knowledge base: {done}/{total}  {time.monotonic() - started:.1f}s"
                )

        result = do_seed_articles(corpus, force=bool(options["force"]), progress=progress)
        if result.created or options["force"]:
            # Only with the corpus's articles: a business that replaced them keeps its blanks.
            do_fill_profile(json.loads(Path(options["profile"]).read_text()))
            do_calibrate_threshold(log=self.stdout.write)
        if not options["force"] and result.created == 0:
            self.stdout.write(
                f"The knowledge base has articles; nothing seeded ({result.embedded} embedded). "
                "Use --force to write the corpus's answers and questions into it again."
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Knowledge base seeded from {options['corpus'].name}: {result.created} added, "
                f"{result.updated} updated, in {time.monotonic() - started:.1f}s."
            )
        )
