"""Model versions: the list with their thumbs-up share and key metrics, charts of the latest
ones, and promotion and rollback with a recorded reason (through ``learning.versions``). The
version answering customers is never deleted."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from learning import versions
from learning.admin.display import (
    metrics_table,
    summarize_metrics,
    version_charts,
    version_status_badge,
)
from learning.checkpoint_pruning import directory_bytes
from learning.feedback import with_rating_counts
from learning.models import ModelVersion
from learning.permissions import can_operate

CHART_VERSIONS = 30


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
        "weights_on_disk",
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
        "weights_on_disk",
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
            self.message_user(request, disk_summary(), messages.INFO)
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

    @admin.display(description="weights on disk")
    def weights_on_disk(self, version: ModelVersion) -> str:
        if version.weights_deleted_at is not None:
            return f"deleted {version.weights_deleted_at:%Y-%m-%d %H:%M} (bounded disk)"
        return f"{directory_bytes(version.checkpoint_path) / 1e6:,.0f} MB"

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


def disk_summary() -> str:
    """What the checkpoints take, and what the retention settings keep."""
    used = directory_bytes(settings.CHECKPOINT_DIR) / 1024**3
    budget = settings.LEARNING_CHECKPOINT_BUDGET_GB
    return (
        f"Checkpoints use {used:.2f} GB"
        + (f" of a {budget:g} GB budget" if budget else "")
        + f" in {settings.CHECKPOINT_DIR}. Kept: the newest {settings.LEARNING_KEEP_REJECTED} "
        f"rejected candidates (for {settings.LEARNING_KEEP_REJECTED_HOURS:g} hours at most) and "
        f"the newest {settings.LEARNING_KEEP_RETIRED} superseded versions; the weights of the "
        "others are deleted after every run."
    )
