"""Operating the learning loop from the admin: model versions, training runs, the golden set.

Rows change only through `learning.runs` (retrain) and `learning.versions` (promote, roll
back), the same functions the management commands and the JSON endpoint call; this module
dispatches, and `learning.admin_display` renders the badges, tables and charts. Operator actions
need the `learning.operate_learning` permission on top of staff status (`learning.permissions`);
everyone else gets 403. What the admin must never do is delete the version that is
answering customers, or edit a training run's record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from conversations.models import Feedback
from conversations.subqueries import count_subquery
from learning import runs, versions
from learning.admin_display import (
    EXAMPLE_COUNT_LABELS,
    before_after_table,
    metrics_table,
    progress_html,
    run_duration,
    run_status_badge,
    summarize_metrics,
    version_charts,
    version_status_badge,
)
from learning.charts import loss_curve_svg
from learning.models import GoldenExample, ModelVersion, TrainingRun
from learning.permissions import can_operate

CHART_VERSIONS = 30


def with_rating_counts(versions: QuerySet[ModelVersion]) -> QuerySet[ModelVersion]:
    """Annotate each version with how many of its replies customers rated, and rated up."""
    ratings = Feedback.objects.filter(
        message__model_version=OuterRef("pk"), source=Feedback.Source.CUSTOMER
    )
    group = "message__model_version"
    return versions.annotate(
        n_rated=count_subquery(ratings, group),
        n_up=count_subquery(ratings.filter(rating=Feedback.Rating.UP), group),
    )


# --- Model versions ---------------------------------------------------------------------------


@admin.action(description="Delete selected model versions (never the active one)")
def delete_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ModelVersion]
) -> HttpResponse | None:
    if queryset.active().exists():
        modeladmin.message_user(
            request,
            "The active model version cannot be deleted; promote another version first.",
            messages.ERROR,
        )
        return None
    return django_delete_selected(modeladmin, request, queryset)


delete_selected.allowed_permissions = ("delete",)


class ActivationForm(forms.Form):
    note = forms.CharField(
        label="Why? (recorded with your name)",
        max_length=400,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="For example: “the gate was too strict on golden perplexity” or “v7 gives "
        "wrong refund answers”.",
    )


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status_badge",
        "source",
        "parent",
        "created_at",
        "activated_at",
        "thumbs_up_share",
        "key_metrics",
    ]
    list_filter = ["status", "source"]
    list_select_related = ["parent"]
    search_fields = ["name", "checkpoint_path", "activation_note"]
    actions = [delete_selected]
    fields = [
        "name",
        "status_badge",
        "source",
        "checkpoint_path",
        "parent",
        "anchor",
        "adapter_base",
        "made_by_run",
        "created_at",
        "activated_at",
        "activated_by",
        "activation_note",
        "thumbs_up_share",
        "metrics_readable",
        "metrics_json",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        return with_rating_counts(super().get_queryset(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions are registered by the learning code, which checks the checkpoint

    def has_change_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False  # status changes go through promotion/rollback, never a form

    def has_delete_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        if isinstance(obj, ModelVersion) and obj.status == ModelVersion.Status.ACTIVE:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: ModelVersion) -> None:
        # Race condition: the version may have been promoted since the confirmation page.
        self.delete_queryset(request, ModelVersion.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        queryset.exclude(status=ModelVersion.Status.ACTIVE).delete()

    # Promote / roll back -----------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/promote/",
                view(self.promote_view),
                name="learning_modelversion_promote",
            ),
            path(
                "<path:object_id>/rollback/",
                view(self.rollback_view),
                name="learning_modelversion_rollback",
            ),
            *super().get_urls(),
        ]

    def promote_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Make the version active: a ready one, or one the gate rejected (forced)."""
        version = self._version_to_activate(request, object_id)

        def promote(note: str) -> str:
            versions.promote_version(version, by=request.user, note=note)
            return f"Promoted {version.name}"

        title = f"Promote {version.name}?"
        return self._activate_once_confirmed(request, version, promote, "promote", title)

    def rollback_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Make a version that was active before active again."""
        version = self._version_to_activate(request, object_id)

        def roll_back(note: str) -> str:
            done = f"Rolled back to {version.name}"
            versions.rollback(to=version, by=request.user, note=f"{done}: {note}")
            return done

        title = f"Roll back to {version.name}?"
        return self._activate_once_confirmed(request, version, roll_back, "rollback", title)

    def _version_to_activate(self, request: HttpRequest, object_id: str) -> ModelVersion:
        """The version to promote or roll back to; 403 unless the user may operate, 404."""
        if not can_operate(request.user):
            raise PermissionDenied
        version = self.get_object(request, object_id)
        if version is None:
            raise Http404(f"No model version with id {object_id!r}.")
        return version

    def _activate_once_confirmed(
        self,
        request: HttpRequest,
        version: ModelVersion,
        activate: Callable[[str], str],
        kind: str,
        title: str,
    ) -> HttpResponse:
        """The confirmation page until its form is valid; then `activate(note)`, logged.

        `activate` returns what was done ("Promoted v3") for the log and the message.
        """
        change_url = reverse("admin:learning_modelversion_change", args=[version.pk])
        if version.status == ModelVersion.Status.ACTIVE:
            self.message_user(request, f"{version.name} is already active.", messages.WARNING)
            return HttpResponseRedirect(change_url)
        form = ActivationForm(request.POST if request.method == "POST" else None)
        if not form.is_valid():
            return self._confirm_activation(request, version, form, kind, title)
        note = form.cleaned_data["note"].strip()
        try:
            done = activate(note)
        except versions.LearningError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(change_url)
        self.log_change(request, version, f"{done}: {note}")
        self.message_user(
            request, f"{done}: it answers the next message in every web process.", messages.SUCCESS
        )
        return HttpResponseRedirect(change_url)

    def _confirm_activation(
        self,
        request: HttpRequest,
        version: ModelVersion,
        form: ActivationForm,
        kind: str,
        title: str,
    ) -> TemplateResponse:
        """The confirmation page with the reason form; `kind` picks the template's wording."""
        run = version.training_runs.order_by("-pk").first()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "kind": kind,
            "version": version,
            "active": ModelVersion.objects.active().first(),
            "forced": version.status == ModelVersion.Status.REJECTED,
            "gate_reasons": run.gate_reasons if run else [],
            "metrics": metrics_table(version.metrics, caption=f"Metrics of {version.name}"),
            "form": form,
            "change_url": reverse("admin:learning_modelversion_change", args=[version.pk]),
        }
        return TemplateResponse(
            request, "admin/learning/modelversion/confirm_activation.html", context
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        version = self.get_object(request, object_id)
        extra: dict[str, Any] = {"can_operate": can_operate(request.user)}
        if version is not None and version.status != ModelVersion.Status.ACTIVE:
            kind = "rollback" if version.activated_at else "promote"
            extra["activation_url"] = reverse(
                f"admin:learning_modelversion_{kind}", args=[version.pk]
            )
            extra["activation_label"] = (
                "Roll back to this version"
                if kind == "rollback"
                else "Force-promote (rejected by the gate)"
                if version.status == ModelVersion.Status.REJECTED
                else "Promote"
            )
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    # Charts across versions --------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if isinstance(response, TemplateResponse) and response.context_data is not None:
            # The key metrics and the thumbs-up share of the latest versions, oldest first.
            latest = with_rating_counts(ModelVersion.objects.order_by("-created_at", "-id"))
            versions = list(latest[:CHART_VERSIONS])[::-1]
            response.context_data["version_charts"] = version_charts(versions)
        return response

    # Columns -----------------------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, version: ModelVersion) -> str:
        return version_status_badge(version)

    @admin.display(description="thumbs-up share", ordering="n_up")
    def thumbs_up_share(self, version: ModelVersion) -> str:
        n_rated = getattr(version, "n_rated", 0)
        if not n_rated:
            return "no ratings"
        return f"{version.n_up / n_rated:.0%} of {n_rated}"

    @admin.display(description="key metrics")
    def key_metrics(self, version: ModelVersion) -> str:
        return summarize_metrics(version.metrics)

    @admin.display(description="training run")
    def made_by_run(self, version: ModelVersion) -> str:
        run = version.training_runs.order_by("-pk").first()
        if run is None:
            return "—"
        url = reverse("admin:learning_trainingrun_change", args=[run.pk])
        return format_html('<a href="{}">Run #{}</a> ({})', url, run.pk, run.get_status_display())

    @admin.display(description="metrics")
    def metrics_readable(self, version: ModelVersion) -> str:
        return metrics_table(version.metrics or {}, caption=f"Metrics of {version.name}")

    @admin.display(description="raw metrics")
    def metrics_json(self, version: ModelVersion) -> str:
        pretty = json.dumps(version.metrics, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html("<details><summary>JSON</summary><pre>{}</pre></details>", pretty)


# --- Training runs ----------------------------------------------------------------------------


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "run_label",
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
    list_filter = ["status", "trigger", "gate_passed", "created_at"]
    list_select_related = ["triggered_by", "result_version"]
    date_hierarchy = "created_at"
    fieldsets = [
        (
            None,
            {
                "fields": [
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
        agent_answers = Feedback.objects.filter(
            used_by_run=OuterRef("pk"), source=Feedback.Source.AGENT
        )
        return (
            super()
            .get_queryset(request)
            .annotate(n_agent_answers=count_subquery(agent_answers, "used_by_run"))
        )

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
            *super().get_urls(),
        ]

    def retrain_view(self, request: HttpRequest) -> HttpResponse:
        """POST: queue a run now (or point at the open one). CSRF is checked by admin_view."""
        if not can_operate(request.user):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            run, created = runs.request_training_run(
                trigger=TrainingRun.Trigger.OPERATOR, by=request.user
            )
        except ValueError as exc:
            self.message_user(request, f"No run was queued: {exc}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:learning_trainingrun_changelist"))
        if created:
            self.log_addition(request, run, "Queued from the admin (Retrain now)")
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
        query = f"?used_by_run__id__exact={run.pk}&source={Feedback.Source.AGENT}"
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


# --- Golden set -------------------------------------------------------------------------------


class FactsField(forms.CharField):
    """One required fact per line in the form; a JSON list in the database."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 60})

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, list):
            return "\n".join(str(fact) for fact in value)
        if isinstance(value, str) and value.startswith("["):
            try:
                return "\n".join(json.loads(value))
            except (ValueError, TypeError):
                return value
        return value or ""

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value)
        return [line.strip() for line in text.splitlines() if line.strip()]


class GoldenExampleForm(forms.ModelForm):
    required_facts = FactsField(
        required=False,
        label="Required facts",
        help_text="One short phrase per line; a correct reply must contain each of them "
        "(case-insensitive). Leave empty to judge by the expected answer's likelihood only.",
    )

    class Meta:
        model = GoldenExample
        fields = ["question", "expected_answer", "required_facts", "is_active"]
        widgets = {
            "question": forms.Textarea(attrs={"rows": 2, "cols": 60}),
            "expected_answer": forms.Textarea(attrs={"rows": 4, "cols": 60}),
        }


@admin.register(GoldenExample)
class GoldenExampleAdmin(admin.ModelAdmin):
    form = GoldenExampleForm
    list_display = ["short_question", "short_answer", "facts", "is_active", "updated_at"]
    list_editable = ["is_active"]
    list_filter = ["is_active"]
    search_fields = ["question", "expected_answer", "required_facts"]
    search_help_text = "Search the questions, expected answers and required facts."
    readonly_fields = ["created_by", "created_at", "updated_at"]
    actions = ["activate", "deactivate"]

    def save_model(self, request: HttpRequest, obj: GoldenExample, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Use in the gate", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[GoldenExample]) -> None:
        n = queryset.filter(is_active=False).update(is_active=True)
        self.message_user(request, f"{n} golden example(s) now used by the gate.", messages.SUCCESS)

    @admin.action(description="Stop using in the gate", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[GoldenExample]) -> None:
        n = queryset.filter(is_active=True).update(is_active=False)
        self.message_user(request, f"{n} golden example(s) no longer used.", messages.SUCCESS)

    @admin.display(description="question", ordering="question")
    def short_question(self, example: GoldenExample) -> str:
        return Truncator(example.question).chars(80)

    @admin.display(description="expected answer")
    def short_answer(self, example: GoldenExample) -> str:
        return Truncator(example.expected_answer).chars(80)

    @admin.display(description="required facts")
    def facts(self, example: GoldenExample) -> str:
        return "; ".join(example.required_facts or []) or "—"
