"""The life of a training run: requested → queued → claimed → finished, failed or given up.

Celery tasks, admin actions, management commands and the JSON endpoint all call these
functions; each action is written once, here. The work of a claimed run (examples, update,
gate, promotion) is ``learning.run_pipeline``.

Safety:
- at most one run is queued or running (a unique index; a second request gets the open run);
- a run is claimed with a conditional UPDATE, so a duplicate delivery does nothing, while a
  redelivery after its worker died (same host, dead pid; or no heartbeat for
  LEARNING_STALE_RUN_MINUTES) takes over and starts clean;
- a run that fails is marked failed, and its staging directories are removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import traceback
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from learning.feedback import usable_feedback
from learning.models import TrainingRun

logger = logging.getLogger(__name__)

TRAIN_TASK = "learning.tasks.train_model"  # routed to the gpu queue (CELERY_TASK_ROUTES)


# --- Requesting ------------------------------------------------------------------


def open_run() -> TrainingRun | None:
    return TrainingRun.objects.filter(status__in=TrainingRun.OPEN_STATUSES).first()


def request_training_run(
    *,
    trigger: str,
    by: Any = None,
    overrides: dict[str, Any] | None = None,
    enqueue: bool = True,
    kind: str = TrainingRun.Kind.FEEDBACK,
) -> tuple[TrainingRun, bool]:
    """Queue a run unless one is open; returns (the run, whether it was created now).

    ``kind``: learning from feedback, or tuning the pretrained base for the knowledge base
    (``learning.knowledge_tuning``). ``enqueue=False`` leaves it to the caller to execute the
    run (``retrain --inline``).
    """
    if kind == TrainingRun.Kind.KNOWLEDGE:
        from learning.knowledge_tuning import tuning_hyperparameters

        hyperparameters = tuning_hyperparameters(overrides)
    else:
        from learning.training import Hyperparameters

        hyperparameters = Hyperparameters.from_settings(overrides).as_dict()
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                kind=kind,
                trigger=trigger,
                triggered_by=by if getattr(by, "pk", None) else None,
                hyperparameters=hyperparameters,
            )
            if enqueue:
                transaction.on_commit(lambda: enqueue_training_run(run.pk))
    except IntegrityError:
        existing = open_run()
        if existing is None:  # it finished between our insert and this read
            return request_training_run(
                trigger=trigger, by=by, overrides=overrides, enqueue=enqueue, kind=kind
            )
        return existing, False
    return run, True


def enqueue_training_run(run_id: int) -> None:
    # By name: learning.tasks calls this module, so this module does not import it.
    current_app.send_task(TRAIN_TASK, args=[run_id])


def usable_feedback_count() -> int:
    return usable_feedback(require_approval=settings.LEARNING_REQUIRE_APPROVAL).count()


def new_feedback_count() -> int:
    """Usable feedback that counts toward the periodic check's bar. After a feedback run the
    gate rejected, only feedback rated (or re-rated) since that run started counts: the same
    data would be rejected again, and every try writes a candidate checkpoint."""
    usable = usable_feedback(require_approval=settings.LEARNING_REQUIRE_APPROVAL)
    last = (
        TrainingRun.objects.filter(kind=TrainingRun.Kind.FEEDBACK)
        .exclude(status__in=TrainingRun.OPEN_STATUSES)
        .exclude(status=TrainingRun.Status.FAILED)  # a failure says nothing of the data
        .order_by("-created_at", "-id")
        .first()
    )
    if last is not None and last.status == TrainingRun.Status.REJECTED:
        usable = usable.filter(updated_at__gt=last.started_at or last.created_at)
    return usable.count()


def queue_run_if_enough_feedback() -> TrainingRun | None:
    """The periodic check: fail dead runs and prune checkpoints, then queue a run when enough
    feedback is new (``new_feedback_count``: after a rejection, new since it)."""
    fail_stale_runs()
    if open_run() is None:  # a running run may be writing the newest checkpoint
        prune_checkpoints_quietly()
    if open_run() is not None or new_feedback_count() < settings.LEARNING_MIN_NEW_FEEDBACK:
        return None
    run, created = request_training_run(trigger=TrainingRun.Trigger.SCHEDULE)
    return run if created else None


# --- Claiming and recovery -------------------------------------------------------


def _this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_is_dead(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine: only the heartbeat can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def claim_run(run_id: int) -> bool:
    """Take the run for this process; False when it is not ours to run."""
    now = timezone.now()
    stale = now - timedelta(minutes=settings.LEARNING_STALE_RUN_MINUTES)
    candidates = Q(status=TrainingRun.Status.QUEUED) | Q(
        status=TrainingRun.Status.RUNNING, heartbeat_at__lt=stale
    )
    current = TrainingRun.objects.filter(pk=run_id).values("status", "worker").first()
    if (
        current
        and current["status"] == TrainingRun.Status.RUNNING
        and _worker_is_dead(current["worker"])
    ):
        candidates |= Q(status=TrainingRun.Status.RUNNING, worker=current["worker"])
    # A run whose worker dies every time (out of memory, say) would be redelivered for ever.
    limit = settings.LEARNING_MAX_ATTEMPTS
    if TrainingRun.objects.filter(candidates, pk=run_id, attempts__gte=limit).update(
        status=TrainingRun.Status.FAILED,
        finished_at=now,
        error=f"Gave up after {limit} attempts: the worker running it died each time "
        "(killed, or out of memory?).",
    ):
        _remove_leftovers(run_id)
        return False
    claimed = (
        TrainingRun.objects.filter(candidates, pk=run_id).update(
            status=TrainingRun.Status.RUNNING,
            worker=_this_worker(),
            attempts=F("attempts") + 1,
            started_at=now,
            heartbeat_at=now,
            step=0,
            total_steps=0,
            loss_history=[],
            error="",
        )
        == 1
    )
    if claimed:
        _remove_leftovers(run_id)
    return claimed


def fail_stale_runs() -> int:
    """Mark runs whose worker stopped reporting as failed (the active model is untouched)."""
    stale = timezone.now() - timedelta(minutes=settings.LEARNING_STALE_RUN_MINUTES)
    return TrainingRun.objects.filter(
        status=TrainingRun.Status.RUNNING, heartbeat_at__lt=stale
    ).update(
        status=TrainingRun.Status.FAILED,
        finished_at=timezone.now(),
        error="The worker stopped reporting progress (killed or lost); the run was abandoned.",
    )


def _remove_leftovers(run_id: int) -> None:
    """Staging directories of an earlier attempt of this run (a worker killed while saving).

    ``write_checkpoint`` stages ``run-<id>-a<n>`` as ``.run-<id>-a<n>.<random>`` next to it;
    a complete checkpoint only ever exists under its final name, which is left alone.
    """
    root = settings.CHECKPOINT_DIR
    if not root.exists():
        return
    for path in root.glob(f".run-{run_id}-a*"):
        shutil.rmtree(path, ignore_errors=True)


# --- Executing -------------------------------------------------------------------


def execute_training_run(run_id: int) -> TrainingRun | None:
    """Run one claimed training run to its end; never raises for a failed run."""
    # Imported here: the web process imports this module to queue runs, and the pipelines
    # import torch and the model code.
    from learning.knowledge_tuning import execute_knowledge_run
    from learning.run_pipeline import execute_claimed_run

    if not claim_run(run_id):
        logger.info("Training run %s is not claimable (already running or finished)", run_id)
        return None
    run = TrainingRun.objects.get(pk=run_id)
    try:
        if run.kind == TrainingRun.Kind.KNOWLEDGE:
            execute_knowledge_run(run, log=lambda line: logger.info("run %s: %s", run_id, line))
        else:
            execute_claimed_run(run)
    except Exception as exc:
        logger.exception("Training run %s failed", run_id)
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.FAILED,
            finished_at=timezone.now(),
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=8)}",
        )
    finally:
        _remove_leftovers(run_id)
        prune_checkpoints_quietly()
    run.refresh_from_db()
    return run


def prune_checkpoints_quietly() -> None:
    """Bound the disk (``learning.checkpoint_pruning``); a failure is logged, never raised: the
    run it follows has finished either way."""
    from learning.checkpoint_pruning import prune_checkpoints

    try:
        prune_checkpoints()
    except Exception:
        logger.exception("Pruning the checkpoints failed")


def describe_run(run: TrainingRun) -> str:
    """A few lines for operators: outcome, counts, gate reasons, error."""
    lines = [f"Training run #{run.pk}: {run.get_status_display()}"]
    if run.example_counts:
        counts = ", ".join(f"{k} {v}" for k, v in run.example_counts.items())
        lines.append(f"  examples: {counts}")
    if run.result_version_id:
        lines.append(f"  candidate: {run.result_version.name}")
    lines.extend(f"  {reason}" for reason in run.gate_reasons)
    if run.started_at and run.finished_at:
        lines.append(f"  took {(run.finished_at - run.started_at).total_seconds():.1f} s")
    if run.error:
        lines.append(f"  error: {run.error.splitlines()[0]}")
    return "\n".join(lines)
