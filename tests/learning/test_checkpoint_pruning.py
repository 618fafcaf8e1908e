"""Bounded disk: rejected and superseded versions' weights are deleted, the ones that serve
or anchor never (learning.checkpoint_pruning)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from learning import runs
from learning.checkpoint_pruning import checkpoint_usage, prune_checkpoints
from learning.models import ModelVersion, TrainingRun
from learning.versions import LearningError, activate_version, register_version

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


@pytest.fixture
def store(settings, tmp_path) -> Path:
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    settings.LEARNING_KEEP_REJECTED = 2
    settings.LEARNING_KEEP_REJECTED_HOURS = 72.0
    settings.LEARNING_KEEP_RETIRED = 1
    settings.LEARNING_CHECKPOINT_BUDGET_GB = 0.0
    return settings.CHECKPOINT_DIR


def version(store: Path, name: str, status: str, *, parent=None, anchor=None, mb: int = 1):
    path = store / name
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"\0" * mb * MB)
    row = register_version(name, str(path), "trained", parent=parent, anchor=anchor)
    ModelVersion.objects.filter(pk=row.pk).update(status=status)
    row.refresh_from_db()
    return row


def on_disk(store: Path) -> set[str]:
    return {path.name for path in store.iterdir()}


def test_twenty_rejected_runs_in_a_row_leave_the_configured_number(store):
    base = version(store, "base", "active")
    rejected = [version(store, f"run-{n}", "rejected", parent=base, anchor=base) for n in range(20)]

    result = prune_checkpoints()

    assert on_disk(store) == {"base", "run-19", "run-18"}  # the newest two
    assert sorted(result.deleted) == sorted(v.name for v in rejected[:18])
    assert result.freed_bytes == 18 * MB
    pruned = ModelVersion.objects.get(name="run-0")
    assert pruned.weights_deleted_at is not None and pruned.status == "rejected"  # row kept
    assert prune_checkpoints().deleted == []  # nothing more to do


def test_old_rejected_candidates_go_whatever_their_number(store):
    base = version(store, "base", "active")
    old = version(store, "old", "rejected", parent=base)
    ModelVersion.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=4))

    assert prune_checkpoints().deleted == ["old"]


def test_what_serves_or_anchors_is_never_deleted(store, settings):
    settings.LEARNING_KEEP_REJECTED = 0
    settings.LEARNING_KEEP_RETIRED = 0
    base = version(store, "base", "retired")  # a base: a new run or knowledge base starts here
    anchor = version(store, "anchor", "retired", parent=base)
    version(store, "active", "active", parent=anchor, anchor=anchor)
    version(store, "ready", "ready", parent=anchor, anchor=anchor)
    version(store, "superseded", "retired", parent=anchor, anchor=anchor)
    version(store, "rejected", "rejected", parent=anchor, anchor=anchor)

    prune_checkpoints()

    assert on_disk(store) == {"base", "anchor", "active", "ready"}


def test_the_newest_superseded_versions_stay_for_a_rollback(store):
    base = version(store, "base", "retired")
    for n in range(3):
        row = version(store, f"v{n}", "retired", parent=base, anchor=base)
        ModelVersion.objects.filter(pk=row.pk).update(
            activated_at=timezone.now() - timedelta(hours=3 - n)
        )
    version(store, "v3", "active", parent=base, anchor=base)

    prune_checkpoints()

    assert on_disk(store) == {"base", "v2", "v3"}  # LEARNING_KEEP_RETIRED = 1


def test_a_budget_deletes_the_oldest_kept_ones_first(store, settings):
    settings.LEARNING_KEEP_REJECTED = 5
    settings.LEARNING_CHECKPOINT_BUDGET_GB = 6 / 1024  # 6 MB
    base = version(store, "base", "active", mb=2)
    for n in range(4):
        version(store, f"run-{n}", "rejected", parent=base, anchor=base, mb=2)

    prune_checkpoints()

    assert on_disk(store) == {"base", "run-3", "run-2"}  # 6 MB: the two newest fit
    assert checkpoint_usage()["total"] == 6 * MB


def test_a_pruned_version_cannot_be_activated(store):
    base = version(store, "base", "active")
    gone = version(store, "gone", "retired", parent=base)
    ModelVersion.objects.filter(pk=gone.pk).update(weights_deleted_at=timezone.now())

    with pytest.raises(LearningError, match="its weights were deleted"):
        activate_version(gone)
    assert ModelVersion.objects.get(pk=base.pk).status == "active"


def test_a_checkpoint_outside_the_store_is_never_deleted(store, tmp_path):
    base = version(store, "base", "active")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    row = register_version("outside", str(outside), "trained", parent=base)
    ModelVersion.objects.filter(pk=row.pk).update(status="rejected")
    version(store, "newer-1", "rejected", parent=base)
    version(store, "newer-2", "rejected", parent=base)

    assert prune_checkpoints().deleted == []
    assert outside.is_dir()


def test_the_periodic_check_prunes_when_no_run_is_open(store, settings):
    base = version(store, "base", "active")
    for n in range(4):
        version(store, f"run-{n}", "rejected", parent=base)
    settings.LEARNING_MIN_NEW_FEEDBACK = 1_000

    running = TrainingRun.objects.create(trigger="schedule", status="running")
    runs.queue_run_if_enough_feedback()
    assert len(on_disk(store)) == 5  # a run may be writing a checkpoint: wait
    TrainingRun.objects.filter(pk=running.pk).update(status="rejected")
    runs.queue_run_if_enough_feedback()

    assert on_disk(store) == {"base", "run-3", "run-2"}
