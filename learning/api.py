"""JSON views for operators: trigger a training run and read its status (staff only)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_http_methods

from learning import runs
from learning.models import ModelVersion, TrainingRun
from learning.permissions import OPERATE, can_operate
from learning.run_progress import phase_progress, seconds_left


def run_as_json(run: TrainingRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "kind": run.kind,
        "status": run.status,
        **phase_progress(run),
        "trigger": run.trigger,
        "step": run.step,
        "total_steps": run.total_steps,
        "loss": run.loss_history[-1] if run.loss_history else None,
        "seconds_left": seconds_left(run),
        "example_counts": run.example_counts,
        "hyperparameters": run.hyperparameters,
        "metrics_before": run.metrics_before,
        "metrics_after": run.metrics_after,
        "gate_passed": run.gate_passed,
        "gate_reasons": run.gate_reasons,
        "result_version": run.result_version.name if run.result_version_id else None,
        "error": run.error.splitlines()[0] if run.error else "",
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def _staff_only(view):
    """JSON 403 instead of a login redirect for anyone who may not operate the loop."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        if not (request.user.is_authenticated and request.user.is_staff):
            return JsonResponse({"error": "staff only"}, status=403)
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


@_staff_only
@require_http_methods(["GET", "POST"])
def training_runs(request: HttpRequest) -> JsonResponse:
    """POST queues a run (or reports the open one); GET lists the latest runs."""
    if request.method == "POST":
        return _trigger(request)
    latest = TrainingRun.objects.select_related("result_version")[:20]
    return JsonResponse({"runs": [run_as_json(run) for run in latest]})


def _trigger(request: HttpRequest) -> JsonResponse:
    if not can_operate(request.user):
        return JsonResponse({"error": f"needs the {OPERATE} permission"}, status=403)
    run, created = runs.request_training_run(trigger=TrainingRun.Trigger.OPERATOR, by=request.user)
    return JsonResponse(
        {"created": created, "run": run_as_json(run)}, status=202 if created else 200
    )


@_staff_only
@require_GET
def training_run(request: HttpRequest, run_id: int) -> JsonResponse:
    run = get_object_or_404(TrainingRun.objects.select_related("result_version"), pk=run_id)
    return JsonResponse(run_as_json(run))


@_staff_only
@require_GET
def learning_status(request: HttpRequest) -> JsonResponse:
    active = ModelVersion.objects.active().first()
    open_run = runs.open_run()
    return JsonResponse(
        {
            "active_version": active.name if active else None,
            "usable_feedback": runs.usable_feedback_count(),
            "open_run": run_as_json(open_run) if open_run else None,
        }
    )
