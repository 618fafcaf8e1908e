"""Bounded disk: the weights of versions nobody will serve again are deleted.

Every training run writes a candidate checkpoint (517 MB for SmolLM2) before the gate judges it;
without pruning, a loop the gate keeps rejecting fills the disk. After every run and at every
periodic check (``prune_checkpoints``):

- rejected candidates: the newest LEARNING_KEEP_REJECTED stay for inspection (``serve_model
  --any-version``), none longer than LEARNING_KEEP_REJECTED_HOURS;
- superseded (retired) versions: the newest LEARNING_KEEP_RETIRED stay, for a rollback;
- with LEARNING_CHECKPOINT_BUDGET_GB set, the oldest of those that may go (rejected first) go
  until the checkpoints fit in it.

Never deleted: the active version, ready ones, the versions they are anchored to or adapt
(θ₀ of the next run, a LoRA adapter's base), and bases (a version without a parent: the
pretrained model, a tuned root), which a new knowledge base or a reset starts from. Only a
directory under CHECKPOINT_DIR is deleted. A pruned version keeps its row, metrics and runs,
with ``weights_deleted_at`` set; it cannot be activated again.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from learning.models import ModelVersion

logger = logging.getLogger(__name__)

Status = ModelVersion.Status


@dataclass
class PruneResult:
    deleted: list[str] = field(default_factory=list)  # version names
    freed_bytes: int = 0


def directory_bytes(path: str | Path) -> int:
    """The size of the files under ``path`` (0 when it is gone)."""
    root = Path(path)
    if not root.is_dir():
        return root.stat().st_size if root.is_file() else 0
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink())


def checkpoint_usage() -> dict[str, int]:
    """Bytes of each version's checkpoint still on disk, and ``"total"`` under CHECKPOINT_DIR."""
    usage = {
        version.name: directory_bytes(version.checkpoint_path)
        for version in ModelVersion.objects.filter(weights_deleted_at__isnull=True)
    }
    usage["total"] = directory_bytes(settings.CHECKPOINT_DIR)
    return usage


def kept_ids() -> set[int]:
    """Versions whose weights must stay: active, ready, what those are anchored to or adapt,
    and bases."""
    serving = ModelVersion.objects.filter(status__in=[Status.ACTIVE, Status.READY])
    kept = set(serving.values_list("pk", flat=True))
    for anchor, adapter_base in serving.values_list("anchor_id", "adapter_base_id"):
        kept.update(pk for pk in (anchor, adapter_base) if pk is not None)
    kept.update(ModelVersion.objects.filter(parent__isnull=True).values_list("pk", flat=True))
    return kept


def prune_checkpoints(
    *, now: datetime | None = None, log: Callable[[str], None] | None = None
) -> PruneResult:
    """Delete the weights the retention settings no longer keep (module docstring)."""
    now = now or timezone.now()
    kept = kept_ids()
    candidates = ModelVersion.objects.filter(weights_deleted_at__isnull=True).exclude(pk__in=kept)
    rejected = list(candidates.filter(status=Status.REJECTED).order_by("-created_at", "-id"))
    retired = list(
        candidates.filter(status=Status.RETIRED).order_by("-activated_at", "-created_at", "-id")
    )
    expired = now - timedelta(hours=settings.LEARNING_KEEP_REJECTED_HOURS)
    doomed = [
        v
        for index, v in enumerate(rejected)
        if index >= settings.LEARNING_KEEP_REJECTED or v.created_at < expired
    ]
    doomed += retired[settings.LEARNING_KEEP_RETIRED :]
    result = PruneResult()
    _delete(doomed, result, log)
    budget = int(settings.LEARNING_CHECKPOINT_BUDGET_GB * 1024**3)
    if budget > 0:
        spare = [v for v in [*reversed(rejected), *reversed(retired)] if v not in doomed]
        used = directory_bytes(settings.CHECKPOINT_DIR)
        while used > budget and spare:
            version = spare.pop(0)  # the oldest rejected first, then the oldest retired
            before = result.freed_bytes
            _delete([version], result, log)
            used -= result.freed_bytes - before
    return result


def _delete(
    versions: Iterable[ModelVersion], result: PruneResult, log: Callable[[str], None] | None
) -> None:
    root = Path(settings.CHECKPOINT_DIR).resolve()
    for version in versions:
        path = Path(version.checkpoint_path).resolve()
        if path == root or root not in path.parents:
            logger.warning(
                "Not deleting %s: its checkpoint %s is outside CHECKPOINT_DIR", version.name, path
            )
            continue
        # Marked first, in one conditional UPDATE: a version activated meanwhile is skipped, and
        # once marked none can be (``learning.versions.activate_version`` refuses it).
        marked = ModelVersion.objects.filter(
            Q(pk=version.pk), ~Q(status__in=[Status.ACTIVE, Status.READY])
        ).update(weights_deleted_at=timezone.now())
        if not marked:
            continue
        size = directory_bytes(path)
        shutil.rmtree(path, ignore_errors=True)
        result.deleted.append(version.name)
        result.freed_bytes += size
        message = f"Deleted the weights of {version.name} ({version.status}, {size / 1e6:.0f} MB)"
        logger.info(message)
        if log is not None:
            log(message)
