"""Training runs, end to end: request → claim → examples → update → gate → promotion.

Celery tasks, admin actions, management commands and the JSON endpoint all call these
functions; each action is written once, here.

Safety:
- at most one run is queued or running (a unique index; a second request gets the open run);
- a run is claimed with a conditional UPDATE, so a duplicate delivery does nothing, while a
  redelivery after its worker died (same host, dead pid; or no heartbeat for
  LEARNING_STALE_RUN_MINUTES) takes over and starts clean;
- the candidate is written to a temporary directory and renamed into place, and the active
  version changes only inside ``activate_version``'s transaction, after the gate.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from conversations.models import Feedback
from learning.models import ModelVersion, TrainingRun

logger = logging.getLogger(__name__)

LOSS_HISTORY_POINTS = 400
PROGRESS_EVERY_SECONDS = 0.5


class LearningError(Exception):
    """An operator's request that cannot be carried out (shown to them as is)."""


# --- Requesting ------------------------------------------------------------------


def open_run() -> TrainingRun | None:
    return TrainingRun.objects.filter(status__in=TrainingRun.OPEN_STATUSES).first()


def request_training_run(
    *,
    trigger: str,
    by: Any = None,
    overrides: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> tuple[TrainingRun, bool]:
    """Queue a run unless one is open; returns (the run, whether it was created now).

    ``enqueue=False`` leaves it to the caller to execute the run (``retrain --inline``).
    """
    from learning.training import Hyperparameters

    hyperparameters = Hyperparameters.from_settings(overrides).as_dict()
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
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
                trigger=trigger, by=by, overrides=overrides, enqueue=enqueue
            )
        return existing, False
    return run, True


def enqueue_training_run(run_id: int) -> None:
    from learning.tasks import train_model

    train_model.delay(run_id)


def usable_feedback_count() -> int:
    from learning.examples import usable_feedback

    return usable_feedback(require_approval=settings.LEARNING_REQUIRE_APPROVAL).count()


def queue_run_if_enough_feedback() -> TrainingRun | None:
    """The periodic check: fail dead runs, then queue a run when enough feedback is new."""
    fail_stale_runs()
    if open_run() is not None or usable_feedback_count() < settings.LEARNING_MIN_NEW_FEEDBACK:
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
    if not claim_run(run_id):
        logger.info("Training run %s is not claimable (already running or finished)", run_id)
        return None
    run = TrainingRun.objects.get(pk=run_id)
    try:
        _execute(run)
    except Exception as exc:
        logger.exception("Training run %s failed", run_id)
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.FAILED,
            finished_at=timezone.now(),
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=8)}",
        )
    finally:
        _remove_leftovers(run_id)
    run.refresh_from_db()
    return run


def anchor_for(parent: ModelVersion, anchor_kind: str) -> ModelVersion:
    if anchor_kind == "parent":
        return parent
    if parent.anchor_id:
        return parent.anchor
    version = parent
    while version.parent_id:
        version = version.parent
    return version


def _execute(run: TrainingRun) -> None:
    from learning.checkpoints import load_checkpoint, pick_device, write_checkpoint
    from learning.evaluation import encode_pairs
    from learning.examples import build_examples_from_feedback
    from learning.fisher import cached_fisher
    from learning.protected import active_golden_cases, drop_golden_overrides
    from learning.retention import known_intent_count, replay_pairs
    from learning.training import Hyperparameters, planned_steps, train_candidate
    from learning.versions import register_version

    started = time.monotonic()
    hp = Hyperparameters.from_settings(run.hyperparameters)
    parent = ModelVersion.objects.active().first()
    if parent is None:
        raise LearningError("No model version is active: nothing to fine-tune.")
    anchor = anchor_for(parent, hp.anchor)
    known = known_intent_count(anchor.checkpoint_path)  # what the base knew
    device = pick_device(settings.LEARNING_DEVICE)
    model, tokenizer = load_checkpoint(parent.checkpoint_path, device=device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    examples = build_examples_from_feedback(
        tokenizer,
        require_approval=settings.LEARNING_REQUIRE_APPROVAL,
        per_owner_cap=settings.LEARNING_PER_OWNER_CAP,
        max_tokens=hp.max_tokens,
        heldout_share=settings.LEARNING_HELDOUT_SHARE,
        seed=hp.seed,
    )
    protected = drop_golden_overrides(
        model, tokenizer, examples, active_golden_cases(), device=device
    )
    if not examples.train:
        if protected:
            raise LearningError(
                f"All {protected} examples would overwrite golden answers: "
                "review that feedback, or update the golden examples if the policy changed."
            )
        raise LearningError("No usable feedback to learn from.")
    replay = (
        encode_pairs(tokenizer, replay_pairs(max_intents=known), max_tokens=hp.max_tokens)
        if hp.replay_share > 0
        else []
    )
    _save(
        run,
        parent=parent,
        anchor=anchor,
        example_counts=examples.counts,
        data_hash=examples.data_hash,
        total_steps=planned_steps(len(examples.train), hp),
        heartbeat_at=timezone.now(),
    )

    if anchor.pk == parent.pk:
        anchor_model = model
    else:
        anchor_model, _ = load_checkpoint(anchor.checkpoint_path, device=device)
    anchor_state = {n: p.detach().clone() for n, p in anchor_model.named_parameters()}
    fisher = reference = None
    if hp.regularizer == "ewc":
        fisher = cached_fisher(
            settings.CHECKPOINT_DIR / "fisher",
            anchor.name,
            anchor_model,
            replay
            or encode_pairs(tokenizer, replay_pairs(max_intents=known), max_tokens=hp.max_tokens),
            pad_id=pad_id,
            device=device,
        )
    if hp.loss == "kto":
        from learning.evaluation import reply_logprob_sums

        sums, _ = reply_logprob_sums(
            anchor_model,
            [(e.prompt_ids, e.reply_ids, e.label) for e in examples.train],
            pad_id=pad_id,
            device=device,
        )
        reference = dict(enumerate(sums.tolist()))
    if anchor_model is not model:
        del anchor_model

    metrics_before = measure_model(
        model, tokenizer, examples.heldout, max_tokens=hp.max_tokens, retention_intents=known
    )
    _save(run, metrics_before=metrics_before, heartbeat_at=timezone.now())

    train_started = time.monotonic()
    losses = train_candidate(
        model,
        anchor_state,
        examples.train,
        replay,
        hp,
        pad_id=pad_id,
        fisher=fisher,
        reference_logps=reference,
        device=device,
        progress=_progress_reporter(run),
    )
    train_seconds = time.monotonic() - train_started
    metrics_after = measure_model(
        model, tokenizer, examples.heldout, max_tokens=hp.max_tokens, retention_intents=known
    )
    metrics_after.update(
        {"train_seconds": round(train_seconds, 2), "final_loss": losses[-1] if losses else None}
    )

    from learning.gate import judge_candidate

    decision = judge_candidate(
        metrics_before,
        metrics_after,
        max_perplexity_rise=settings.LEARNING_MAX_PERPLEXITY_RISE,
    )
    name = f"run-{run.pk}-a{run.attempts}"
    destination = settings.CHECKPOINT_DIR / name
    metadata = {
        "name": name,
        "parent": parent.name,
        "anchor": anchor.name,
        "hyperparameters": hp.as_dict(),
        "data_hash": examples.data_hash,
        "example_counts": examples.counts,
        "metrics": metrics_after,
        "gate": {"passed": decision.passed, "reasons": decision.reasons},
        "training_run": run.pk,
    }
    model.to("cpu")
    path = write_checkpoint(model, tokenizer, destination, metadata)
    with transaction.atomic():
        version = register_version(
            name,
            str(path),
            ModelVersion.Source.TRAINED,
            parent=parent,
            anchor=anchor,
            metrics=metrics_after,
        )
        if decision.passed:
            promote_version(version, note=f"Promoted by the gate after training run #{run.pk}")
            Feedback.objects.filter(pk__in=examples.feedback_ids).update(used_by_run=run)
            status = TrainingRun.Status.SUCCEEDED
        else:
            ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.REJECTED)
            status = TrainingRun.Status.REJECTED
        metrics_after["seconds_total"] = round(time.monotonic() - started, 2)
        _save(
            run,
            status=status,
            result_version=version,
            metrics_after=metrics_after,
            gate_passed=decision.passed,
            gate_reasons=decision.reasons,
            finished_at=timezone.now(),
        )


def measure_model(
    model, tokenizer, heldout, *, max_tokens: int, retention_intents: int | None = None
) -> dict[str, Any]:
    """The gate's metrics for one model: held-out feedback, retention, golden set."""
    from learning.evaluation import encode_pairs, feedback_margin, golden_metrics, perplexity
    from learning.protected import active_golden_cases
    from learning.retention import gate_retention_pairs

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    retention = encode_pairs(
        tokenizer, gate_retention_pairs(max_intents=retention_intents), max_tokens=max_tokens
    )
    cases = active_golden_cases()
    metrics: dict[str, Any] = {
        "heldout_count": len(heldout),
        "heldout_margin": feedback_margin(model, heldout, pad_id=pad_id, device=device),
        "retention_perplexity": perplexity(model, retention, pad_id=pad_id, device=device),
    }
    metrics.update(golden_metrics(model, tokenizer, cases, max_tokens=max_tokens, device=device))
    return metrics


def _save(run: TrainingRun, **fields: Any) -> None:
    for key, value in fields.items():
        setattr(run, key, value)
    TrainingRun.objects.filter(pk=run.pk).update(**fields)


def _progress_reporter(run: TrainingRun) -> Callable[[int, int, float], None]:
    """Writes step, total and the loss curve to the run at most twice a second."""
    history: list[float] = []
    last = [0.0]

    def report(step: int, total: int, loss: float) -> None:
        history.append(round(loss, 5))
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY_SECONDS and step < total:
            return
        last[0] = now
        stride = max(1, len(history) // LOSS_HISTORY_POINTS + 1)
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            step=step,
            total_steps=total,
            loss_history=history[::stride],
            heartbeat_at=timezone.now(),
        )

    return report


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


# --- Operators -------------------------------------------------------------------


def promote_version(version: ModelVersion, *, by: Any = None, note: str = "") -> ModelVersion:
    """Make ``version`` the one that answers (forced when it was rejected or retired)."""
    from learning.versions import activate_version

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
