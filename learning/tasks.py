"""Celery tasks: thin wrappers that call one function of the learning app each."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from learning import runs
from serving import served_adapters


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


@shared_task(
    name=served_adapters.LOAD_TASK,
    autoretry_for=(served_adapters.InferenceServerUnreachable,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=30,
    time_limit=120,
)
def load_served_adapter(version_id: int) -> bool:
    """Retry loading an activated adapter the inference server did not take; gives up once the
    version is no longer active, or when the server refuses it (a configuration error)."""
    return served_adapters.load_if_active(version_id)


@shared_task(
    name=served_adapters.UNLOAD_TASK,
    autoretry_for=(served_adapters.InferenceServerUnreachable,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=30,
    time_limit=120,
)
def unload_retired_adapter(name: str) -> bool:
    """Queued GENERATION_SERVER_UNLOAD_DELAY seconds after an activation retired ``name``."""
    return served_adapters.unload_if_retired(name)
