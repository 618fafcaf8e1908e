"""Model versions: registering a checkpoint, switching the one that answers customers, lineage.

Every change of the active version goes through ``activate_version``: the gate's promotion after
a training run, an operator's promotion or rollback (admin, commands), the start-up base model.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from learning.models import ModelVersion
from learning.signals import version_activated, version_activating

# The activation note's length in the admin's form; remarks of receivers fit in it.
ACTIVATION_NOTE_CHARS = 500


class LearningError(Exception):
    """An operator's request that cannot be carried out (shown to them as is)."""


def register_version(
    name: str,
    checkpoint_path: str,
    source: str,
    parent: ModelVersion | None = None,
    anchor: ModelVersion | None = None,
    metrics: dict | None = None,
    adapter_base: ModelVersion | None = None,
) -> ModelVersion:
    """A new version with status ready: it answers nobody until it is activated.

    ``adapter_base``: the frozen base of a LoRA adapter checkpoint.
    """
    return ModelVersion.objects.create(
        name=name,
        checkpoint_path=str(checkpoint_path),
        source=source,
        parent=parent,
        anchor=anchor,
        adapter_base=adapter_base,
        metrics=metrics or {},
        status=ModelVersion.Status.READY,
    )


def activate_version(version: ModelVersion, *, by: Any = None, note: str = "") -> ModelVersion:
    """Make ``version`` the active one and retire the previous one, in one transaction.

    ``version_activating`` goes out first, outside the transaction: with a remote backend the
    inference server loads a LoRA adapter version then, while no row is locked and no web process
    can name the version yet (``serving.activation``). Its receivers' remarks (an adapter that
    did not load) are kept on the activation note. The rows are then locked, so two activations
    at once run one after the other; the database constraint would refuse a second active
    version anyway. ``version_activated`` goes out once the change has committed.
    """
    remarks = "".join(
        remark for _, remark in version_activating.send(sender=ModelVersion, version=version)
    )
    with transaction.atomic():
        previous = list(ModelVersion.objects.active().select_for_update())
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.weights_deleted_at is not None:
            raise LearningError(
                f"{locked.name} cannot answer customers: its weights were deleted on "
                f"{locked.weights_deleted_at:%Y-%m-%d %H:%M} to bound the disk."
            )
        was_retired = locked.status == ModelVersion.Status.RETIRED
        ModelVersion.objects.active().exclude(pk=locked.pk).update(
            status=ModelVersion.Status.RETIRED
        )
        locked.status = ModelVersion.Status.ACTIVE
        locked.activated_at = timezone.now()
        locked.activated_by = by
        locked.activation_note = note[: ACTIVATION_NOTE_CHARS - len(remarks)] + remarks
        locked.save(update_fields=["status", "activated_at", "activated_by", "activation_note"])
        retired = next((row for row in previous if row.pk != locked.pk), None)
        transaction.on_commit(
            lambda: version_activated.send(
                sender=ModelVersion, version=locked, retired=retired, was_retired=was_retired
            )
        )
    version.refresh_from_db()
    return version


def promote_version(version: ModelVersion, *, by: Any = None, note: str = "") -> ModelVersion:
    """Make ``version`` the one that answers (forced when it was rejected or retired)."""
    if version.status == ModelVersion.Status.ACTIVE:
        raise LearningError(f"{version.name} is already active.")
    return activate_version(version, by=by if getattr(by, "pk", None) else None, note=note)


def rollback(*, to: ModelVersion | None = None, by: Any = None, note: str = "") -> ModelVersion:
    """Re-activate ``to``, or the newest older version that has answered customers before.

    "Older" is by creation, so repeated rollbacks walk back in time (run-3 → run-2 → base)
    instead of toggling between the last two activations.
    """
    if to is None:
        current = ModelVersion.objects.active().first()
        earlier = ModelVersion.objects.filter(activated_at__isnull=False).exclude(
            status=ModelVersion.Status.ACTIVE
        )
        if current is not None:
            earlier = earlier.filter(pk__lt=current.pk)  # ids follow creation
        to = earlier.order_by("-pk").first()
        if to is None:
            raise LearningError("There is no earlier version to roll back to.")
    return promote_version(to, by=by, note=note or f"Rolled back to {to.name}")


def anchor_for(parent: ModelVersion, anchor_kind: str) -> ModelVersion:
    """θ₀ of a run that fine-tunes ``parent``: the parent itself, or the base it descends from."""
    if anchor_kind == "parent":
        return parent
    if parent.anchor_id:
        return parent.anchor
    version = parent
    while version.parent_id:
        version = version.parent
    return version
