"""Build the starter model, save it as a checkpoint and register it as a model version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from knowledge.demo.corpus import load_corpus
from learning.models import ModelVersion
from learning.starter.training import Progress, StarterConfig, build_starter_model, config_hash
from learning.versions import activate_version, register_version
from serving.checkpoints import checkpoint_size_bytes, write_checkpoint


class StarterExistsError(Exception):
    """The destination already holds a checkpoint and replacing it was not asked for."""


@dataclass(frozen=True)
class PublishedStarter:
    version: ModelVersion
    path: Path
    parameter_count: int
    size_bytes: int
    seconds: float
    metrics: dict


def default_destination(config: StarterConfig) -> Path:
    """CHECKPOINT_DIR/starter-<seed>-<hash of corpus and config>: a name says what was built."""
    corpus = load_corpus().subset(config.max_intents, config.max_dialogues)
    return Path(settings.CHECKPOINT_DIR) / f"starter-{config.seed}-{config_hash(config, corpus)}"


def publish_starter_model(
    config: StarterConfig,
    destination: Path | None = None,
    *,
    activate: bool = True,
    replace: bool = False,
    evaluate: bool = True,
    progress: Progress | None = None,
    note: str = "Starter model built locally",
) -> PublishedStarter:
    """Train, write the checkpoint atomically, register it (source=starter), maybe activate it."""
    from learning.starter.evaluation import intent_accuracy

    destination = Path(destination) if destination else default_destination(config)
    if destination.exists() and not replace:
        raise StarterExistsError(f"{destination} already exists.")
    build = build_starter_model(config, progress=progress)
    metrics: dict = {
        "final_loss": build.losses[-1] if build.losses else None,
        "build_seconds": round(build.seconds, 1),
        "parameters": build.parameter_count,
    }
    if evaluate:
        intents = load_corpus().subset(config.max_intents).intents
        for which in ("questions", "eval_questions"):
            metrics[f"accuracy_{which}"] = round(
                intent_accuracy(build.model, build.tokenizer, intents, which), 4
            )
    metadata = {
        "name": destination.name,
        "parent": None,
        "anchor": None,
        "source": ModelVersion.Source.STARTER,
        "config": config.as_dict(),
        "data_hash": build.data_hash,
        "metrics": metrics,
        "losses": build.losses,
    }
    path = write_checkpoint(build.model, build.tokenizer, destination, metadata, replace=replace)
    with transaction.atomic():
        version = ModelVersion.objects.filter(name=destination.name).first()
        if version is None:
            version = register_version(
                destination.name, str(path), ModelVersion.Source.STARTER, metrics=metrics
            )
        else:
            version.checkpoint_path, version.metrics = str(path), metrics
            version.save(update_fields=["checkpoint_path", "metrics"])
        if activate and version.status != ModelVersion.Status.ACTIVE:
            version = activate_version(version, note=note)
    return PublishedStarter(
        version=version,
        path=path,
        parameter_count=build.parameter_count,
        size_bytes=checkpoint_size_bytes(path),
        seconds=build.seconds,
        metrics=metrics,
    )
