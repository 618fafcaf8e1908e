"""Celery tasks of the chat: thin wrappers that call one function each."""

from __future__ import annotations

from celery import shared_task

from conversations import handoff_events, privacy


@shared_task(name="conversations.tasks.delete_expired_conversations")
def delete_expired_conversations() -> int:
    """Daily (django-celery-beat): conversations past CHAT_RETENTION_DAYS are deleted."""
    return privacy.delete_expired_conversations().conversations


@shared_task(name="conversations.tasks.release_abandoned_claims")
def release_abandoned_claims() -> int:
    """Every five minutes (django-celery-beat): claims whose agent left go back to the queue."""
    return handoff_events.release_abandoned_claims()
