"""Training runs: progress with the time left, the loss curve, the before/after metrics and
the gate's decision; retrain through ``learning.runs``. A run's record is never edited."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from admin_parts.charts import loss_curve_svg
from learning import runs
from learning.admin.display import (
    EXAMPLE_COUNT_LABELS,
    before_after_table,
    metrics_table,
    progress_html,
    run_duration,
    run_status_badge,
)
from learning.feedback import AGENT_ANSWER, with_agent_answer_counts
from learning.models import TrainingRun
from learning.permissions import can_operate


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "run_label",
        "kind",
        "status_badge",
        "trigger_and_who",
        "progress",
        "examples",
        "agent_answers_learned",
        "gate",
        "result_version",
        "created_at",
        "duration",
    ]
    list_display_links = ["run_label"]
    list_filter = ["kind", "status", "trigger", "gate_passed", "created_at"]
    list_select_related = ["triggered_by", "result_version"]
    date_hierarchy = "created_at"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "kind",
                    "status_badge",
                    "live_progress",
                    "trigger",
                    "triggered_by",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "duration",
                    "worker",
                    "attempts",
                ]
            },
        ),
        ("Loss curve", {"fields": ["loss_curve"]}),
        (
            "Evaluation gate",
            {"fields": ["gate", "gate_reason_list", "metrics_side_by_side", "result_version"]},
        ),
        (
            "Data and hyper-parameters",
            {
                "fields": [
                    "parent",
                    "anchor",
                    "example_count_table",
                    "agent_answers_learned",
                    "data_hash",
                    "hyperparameter_table",
                ]
            },
        ),
    ]
    # Everything on the page is read-only: the fieldsets' fields, plus the error shown on failure.
    readonly_fields = [
        *(name for _, options in fieldsets for name in options["fields"]),
        "error_text",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TrainingRun]:
        return with_agent_answer_counts(super().get_queryset(request))

    def get_fieldsets(self, request: HttpRequest, obj: TrainingRun | None = None) -> list:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and obj.error:
            fieldsets.insert(1, ("Error", {"fields": ["error_text"]}))
        return fieldsets

    # A run's record is written by the worker only.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False  # feedback remembers the run that learned from it

    # Retrain now -------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "retrain/",
                self.admin_site.admin_view(self.retrain_view),
                name="learning_trainingrun_retrain",
            ),
            path(
                "tune-for-knowledge/",
                self.admin_site.admin_view(self.tune_view),
                name="learning_trainingrun_tune",
            ),
            *super().get_urls(),
        ]

    def retrain_view(self, request: HttpRequest) -> HttpResponse:
        """POST: queue a run now (or point at the open one). CSRF is checked by admin_view."""
        return self._queue(request, TrainingRun.Kind.FEEDBACK)

    def tune_view(self, request: HttpRequest) -> HttpResponse:
        """POST: queue the tuning for the current knowledge base (or point at the open run)."""
        return self._queue(request, TrainingRun.Kind.KNOWLEDGE)

    def _queue(self, request: HttpRequest, kind: str) -> HttpResponse:
        if not can_operate(request.user):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            run, created = runs.request_training_run(
                kind=kind, trigger=TrainingRun.Trigger.OPERATOR, by=request.user
            )
        except ValueError as exc:
            self.message_user(request, f"No run was queued: {exc}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:learning_trainingrun_changelist"))
        if created:
            button = "Retrain now" if kind == TrainingRun.Kind.FEEDBACK else "Tune for the KB"
            self.log_addition(request, run, f"Queued from the admin ({button})")
            self.message_user(request, f"Run #{run.pk} queued.", messages.SUCCESS)
        else:
            self.message_user(request, f"Run #{run.pk} is already {run.status}.", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:learning_trainingrun_change", args=[run.pk]))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        extra = {"can_operate": can_operate(request.user), "open_run": runs.open_run()}
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    # Columns and fields ------------------------------------------------------------------

    @admin.display(description="run", ordering="id")
    def run_label(self, run: TrainingRun) -> str:
        return f"#{run.pk}"

    @admin.display(description="trigger", ordering="trigger")
    def trigger_and_who(self, run: TrainingRun) -> str:
        who = f" ({run.triggered_by})" if run.triggered_by else ""
        return f"{run.get_trigger_display()}{who}"

    @admin.display(description="status", ordering="status")
    def status_badge(self, run: TrainingRun) -> str:
        return run_status_badge(run)

    @admin.display(description="progress")
    def progress(self, run: TrainingRun) -> str:
        return progress_html(run, with_loss=False)

    @admin.display(description="progress")
    def live_progress(self, run: TrainingRun) -> str:
        poll_url = ""
        if run.status in TrainingRun.OPEN_STATUSES:
            poll_url = reverse("learning:training-run", args=[run.pk])
        return progress_html(run, poll_url=poll_url)

    @admin.display(description="examples")
    def examples(self, run: TrainingRun) -> str:
        counts = run.example_counts or {}
        if not counts:
            return "—"
        text = f"{counts.get('train', 0)} train / {counts.get('heldout', 0)} held out"
        if counts.get("agent_answers"):
            text += f", {counts['agent_answers']} from agents' answers"
        if counts.get("protected"):
            text += f" ({counts['protected']} kept out: they contradict golden answers)"
        return text

    @admin.display(description="agents' answers learned", ordering="n_agent_answers")
    def agent_answers_learned(self, run: TrainingRun) -> str:
        """How many agents' answers the run's promoted model learned from, linked to them."""
        count = getattr(run, "n_agent_answers", 0)
        if not count:
            return "0"
        url = reverse("admin:conversations_feedback_changelist")
        query = f"?used_by_run__id__exact={run.pk}&source={AGENT_ANSWER}"
        return format_html('<a href="{}{}">{} agent answer(s)</a>', url, query, count)

    @admin.display(description="gate", ordering="gate_passed")
    def gate(self, run: TrainingRun) -> str:
        return {True: "✔ passed", False: "✘ failed", None: "—"}[run.gate_passed]

    @admin.display(description="time")
    def duration(self, run: TrainingRun) -> str:
        return run_duration(run) or "—"

    @admin.display(description="loss per step")
    def loss_curve(self, run: TrainingRun) -> str:
        return loss_curve_svg(run.loss_history or [])

    @admin.display(description="gate reasons")
    def gate_reason_list(self, run: TrainingRun) -> str:
        if not run.gate_reasons:
            return "—"
        return format_html(
            '<ul class="gate-reasons">{}</ul>',
            format_html_join("", "<li>{}</li>", ((reason,) for reason in run.gate_reasons)),
        )

    @admin.display(description="metrics")
    def metrics_side_by_side(self, run: TrainingRun) -> str:
        return before_after_table(run.metrics_before or {}, run.metrics_after or {})

    @admin.display(description="example counts")
    def example_count_table(self, run: TrainingRun) -> str:
        return metrics_table(
            run.example_counts or {},
            caption="Examples built from feedback",
            header="count",
            empty="Not built yet.",
            labels=EXAMPLE_COUNT_LABELS,
        )

    @admin.display(description="hyper-parameters")
    def hyperparameter_table(self, run: TrainingRun) -> str:
        return metrics_table(
            run.hyperparameters or {}, caption="Stored with the run", header="setting"
        )

    @admin.display(description="error")
    def error_text(self, run: TrainingRun) -> str:
        return format_html('<pre class="run-error">{}</pre>', run.error)
