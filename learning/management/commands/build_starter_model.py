"""Build the small starter model from the bundled corpus and make it the active version."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from learning.starter.publish import StarterExistsError, publish_starter_model
from learning.starter.training import StarterConfig


class Command(BaseCommand):
    help = (
        "Train the starter model (a small causal LM, from scratch, on CPU) on the bundled "
        "customer-service corpus, save it under CHECKPOINT_DIR, register it as a model version "
        "(source=starter) and activate it. The same seed and corpus give the same weights."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output",
            type=Path,
            help="checkpoint directory to create (default: CHECKPOINT_DIR/starter-<seed>-<hash "
            "of corpus and config>); its name becomes the model version's name",
        )
        parser.add_argument("--seed", type=int, default=0, help="weights and data order (0)")
        parser.add_argument("--epochs", type=int, help="passes over the corpus (default config)")
        parser.add_argument(
            "--tiny", action="store_true", help="a tiny model of four intents, built in seconds"
        )
        parser.add_argument(
            "--no-activate", action="store_true", help="register the version but leave it ready"
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="rebuild even if the output directory exists (replaced once the new one is "
            "complete)",
        )
        parser.add_argument(
            "--skip-eval", action="store_true", help="do not measure accuracy on the corpus"
        )

    def handle(self, *args: object, **options: object) -> None:
        # Training takes minutes; registering the version needs the tables: check them first.
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            raise CommandError(
                "The database has unapplied migrations: run `manage.py migrate` first."
            )
        config = StarterConfig.tiny() if options["tiny"] else StarterConfig()
        config = replace(config, seed=int(options["seed"]))
        if options["epochs"] is not None:
            if int(options["epochs"]) < 1:
                raise CommandError("--epochs must be at least 1.")
            config = replace(config, epochs=int(options["epochs"]))
        started = time.monotonic()
        every = [0]

        def progress(step: int, total: int, loss: float) -> None:
            if every[0] == 0:
                every[0] = max(1, total // 20)
            if step % every[0] == 0 or step == total:
                elapsed = time.monotonic() - started
                self.stdout.write(f"step {step}/{total}  loss {loss:.4f}  {elapsed:.0f}s")

        try:
            published = publish_starter_model(
                config,
                options["output"],
                activate=not options["no_activate"],
                replace=bool(options["force"]),
                evaluate=not options["skip_eval"],
                progress=progress,
            )
        except StarterExistsError as exc:
            raise CommandError(f"{exc} Use --force to rebuild it, or --output.") from exc
        megabytes = published.size_bytes / 1_000_000
        self.stdout.write(
            f"Built {published.version.name} in {time.monotonic() - started:.1f}s: "
            f"{published.parameter_count:,} parameters, {megabytes:.1f} MB at {published.path}"
        )
        for key in ("accuracy_questions", "accuracy_eval_questions"):
            if key in published.metrics:
                self.stdout.write(f"{key}: {published.metrics[key]:.1%}")
        state = published.version.get_status_display().lower()
        self.stdout.write(self.style.SUCCESS(f"{published.version.name} is {state}."))
