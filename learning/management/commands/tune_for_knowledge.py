"""Tune the pretrained base for the knowledge base now (a training run of kind "knowledge")."""

from __future__ import annotations

from learning.management.commands.retrain import Command as RetrainCommand
from learning.models import TrainingRun


class Command(RetrainCommand):
    kind = TrainingRun.Kind.KNOWLEDGE
    help = (
        "Tune the pretrained base model (LEARNING_BASE_MODEL) for the knowledge base as it is "
        "now: grounded examples from the active articles and their example questions, declines "
        "in the business profile's words (learning/knowledge_tuning.py). The run is queued for a "
        "Celery worker like any training run (or joins the open one). The tuned model is "
        "promoted only when it answers held-out example questions at least as well as the "
        "active version; it then becomes the root (θ₀) of the learning runs after it. Imports "
        "queue this by themselves (LEARNING_TUNE_AFTER_IMPORT). Exit status: 0 promoted or "
        "rejected, 1 failed. Example: manage.py tune_for_knowledge --wait --set epochs=2"
    )
