"""The checkpoint registry in the admin: read-only, since versions are written by the learning code.

Promotion and rollback are operator actions with their own checks (not here yet). What the
admin must never do is delete the version that is answering customers.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from learning.models import ModelVersion

STATUS_COLOURS = {
    ModelVersion.Status.ACTIVE: "#1e7e34",
    ModelVersion.Status.READY: "#1f5f99",
    ModelVersion.Status.RETIRED: "#6c757d",
    ModelVersion.Status.REJECTED: "#b02a37",
}
SUMMARY_ITEMS = 4


def summarize_metrics(metrics: object, limit: int = SUMMARY_ITEMS) -> str:
    """A one-line rendering of the top-level scalar metrics, e.g. `margin=0.412, ppl=13.1`."""
    if not isinstance(metrics, dict):
        return ""
    parts = []
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue  # nested sections belong on the detail page
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    if len(parts) > limit:
        parts = [*parts[:limit], "…"]
    return ", ".join(parts)


@admin.action(description="Delete selected model versions (never the active one)")
def delete_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ModelVersion]
) -> HttpResponse | None:
    if queryset.filter(status=ModelVersion.Status.ACTIVE).exists():
        modeladmin.message_user(
            request,
            "The active model version cannot be deleted; promote another version first.",
            messages.ERROR,
        )
        return None
    return django_delete_selected(modeladmin, request, queryset)


delete_selected.allowed_permissions = ("delete",)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status_badge",
        "source",
        "parent",
        "created_at",
        "activated_at",
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
        "created_at",
        "activated_at",
        "activated_by",
        "activation_note",
        "metrics_json",
    ]
    readonly_fields = fields

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

    @admin.display(description="status", ordering="status")
    def status_badge(self, version: ModelVersion) -> str:
        return format_html(
            '<span style="background:{};color:#fff;padding:1px 8px;border-radius:8px;'
            'font-weight:bold">{}</span>',
            STATUS_COLOURS.get(version.status, "#6c757d"),
            version.get_status_display(),
        )

    @admin.display(description="key metrics")
    def key_metrics(self, version: ModelVersion) -> str:
        return summarize_metrics(version.metrics)

    @admin.display(description="metrics")
    def metrics_json(self, version: ModelVersion) -> str:
        pretty = json.dumps(version.metrics, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html("<pre>{}</pre>", pretty)
