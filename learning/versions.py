"""Model versions: registering a checkpoint and switching the one that answers customers."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from learning.models import ModelVersion
from learning.serving import forget_active_version


def register_version(
    name: str,
    checkpoint_path: str,
    source: str,
    parent: ModelVersion | None = None,
    anchor: ModelVersion | None = None,
    metrics: dict | None = None,
) -> ModelVersion:
    """A new version with status ready: it answers nobody until it is activated."""
    return ModelVersion.objects.create(
        name=name,
        checkpoint_path=str(checkpoint_path),
        source=source,
        parent=parent,
        anchor=anchor,
        metrics=metrics or {},
        status=ModelVersion.Status.READY,
    )


def activate_version(version: ModelVersion, *, by: Any = None, note: str = "") -> ModelVersion:
    """Make ``version`` the active one and retire the previous one, in one transaction.

    The rows are locked first, so two activations at once run one after the other; the
    database constraint would refuse a second active version anyway.
    """
    with transaction.atomic():
        list(ModelVersion.objects.active().select_for_update().values_list("pk", flat=True))
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        ModelVersion.objects.active().exclude(pk=locked.pk).update(
            status=ModelVersion.Status.RETIRED
        )
        locked.status = ModelVersion.Status.ACTIVE
        locked.activated_at = timezone.now()
        locked.activated_by = by
        locked.activation_note = note[:500]
        locked.save(update_fields=["status", "activated_at", "activated_by", "activation_note"])
        # Other processes see the change within ENGINE_POLL_SECONDS; this one at once.
        transaction.on_commit(forget_active_version)
    version.refresh_from_db()
    return version
