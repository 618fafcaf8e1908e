"""Celery tasks: thin wrappers that call one function of the learning app each."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from learning import runs


@shared_task(
    name=runs.TRAIN_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
)
def train_model(run_id: int) -> str:
    """Routed to the ``gpu`` queue. Safe to redeliver: the run is claimed before any work."""
    run = runs.execute_training_run(run_id)
    return run.status if run is not None else "not claimed"


@shared_task(name="learning.tasks.check_for_new_feedback")
def check_for_new_feedback() -> int | None:
    """The periodic check (django-celery-beat): queue a run when enough feedback is new."""
    run = runs.queue_run_if_enough_feedback()
    return run.pk if run is not None else None
