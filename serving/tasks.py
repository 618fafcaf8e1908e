"""Celery tasks: thin wrappers that call one function of the serving app each."""

from __future__ import annotations

from celery import shared_task

from serving import served_adapters

# An unreachable server is retried 30 times, with backoff (from 5 s, doubling, at most 5 min
# apart); a refusal is not retried: it is a configuration error, logged.
WHILE_THE_SERVER_IS_DOWN = {
    "autoretry_for": (served_adapters.InferenceServerUnreachable,),
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "max_retries": 30,
    "time_limit": 120,
}


@shared_task(name=served_adapters.LOAD_TASK, **WHILE_THE_SERVER_IS_DOWN)
def load_served_adapter(version_id: int) -> bool:
    """Retry loading an activated adapter the inference server did not take; gives up once the
    version is no longer active, or when the server refuses it (a configuration error)."""
    return served_adapters.load_if_active(version_id)


@shared_task(name=served_adapters.UNLOAD_TASK, **WHILE_THE_SERVER_IS_DOWN)
def unload_retired_adapter(name: str) -> bool:
    """Queued GENERATION_SERVER_UNLOAD_DELAY seconds after an activation retired ``name``."""
    return served_adapters.unload_if_retired(name)
