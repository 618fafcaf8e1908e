"""Queueing the knowledge base's tuning (``learning.knowledge_tuning`` does it, in the worker).

Imported by the web process (the admin, the import's receiver): nothing here loads torch.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from learning.models import ModelVersion, TrainingRun
from learning.runs import request_training_run

logger = logging.getLogger(__name__)


def request_knowledge_tuning(
    *, trigger: str, by: Any = None, overrides: dict[str, Any] | None = None, enqueue: bool = True
) -> tuple[TrainingRun, bool]:
    """Queue a run that tunes the pretrained base for the knowledge base (unless a run is open:
    then that run and False)."""
    return request_training_run(
        kind=TrainingRun.Kind.KNOWLEDGE,
        trigger=trigger,
        by=by,
        overrides=overrides,
        enqueue=enqueue,
    )


def can_tune() -> bool:
    """Whether a pretrained base is registered to tune (LEARNING_BASE_MODEL=smollm2 at start)."""
    return ModelVersion.objects.filter(source=ModelVersion.Source.PRETRAINED).exists()


def tune_after_import(**_signal_arguments: object) -> None:
    """``knowledge_imported``'s receiver: queue the tuning (LEARNING_TUNE_AFTER_IMPORT)."""
    if not settings.LEARNING_TUNE_AFTER_IMPORT:
        return
    if not can_tune():
        logger.info("No pretrained base model to tune for the imported knowledge base.")
        return
    run, created = request_knowledge_tuning(trigger=TrainingRun.Trigger.IMPORT)
    if not created:
        logger.info("Training run #%s is open: tune for the knowledge base after it.", run.pk)
