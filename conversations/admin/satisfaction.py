"""The satisfaction survey's answers, read-only, and the weekly trend page (its numbers come
from ``conversations.satisfaction_stats``)."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.text import Truncator

from conversations.admin.display import (
    LIST_TEXT_CHARS,
    conversation_link_html,
)
from conversations.models import Satisfaction
from conversations.satisfaction_charts import satisfaction_charts
from conversations.satisfaction_stats import DEFAULT_WEEKS, MAX_WEEKS, satisfaction_trends


class ScoreFilter(admin.SimpleListFilter):
    title = "score"
    parameter_name = "score"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(str(n), f"{n}/5") for n in range(5, 0, -1)]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Satisfaction]
    ) -> QuerySet[Satisfaction]:
        if self.value() in {str(n) for n in range(1, 6)}:
            return queryset.filter(score=int(self.value()))
        return queryset


@admin.register(Satisfaction)
class SatisfactionAdmin(admin.ModelAdmin):
    """The customers' survey answers, read-only, and the weekly trend page."""

    list_display = [
        "conversation_link",
        "score_text",
        "short_comment",
        "model_version",
        "handed_off",
        "created_at",
    ]
    list_display_links = None
    list_filter = [
        ScoreFilter,
        "handed_off",
        ("model_version", admin.RelatedOnlyFieldListFilter),
        "created_at",
    ]
    list_select_related = ["model_version"]
    search_fields = ["comment"]
    search_help_text = "Search the customers' comments."
    date_hierarchy = "created_at"
    fields = [
        "conversation_link",
        "score_text",
        "comment",
        "model_version",
        "handed_off",
        "created_at",
    ]
    readonly_fields = fields

    # Answers are the customers' own words: nobody adds, edits or deletes one here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "trends/",
                self.admin_site.admin_view(self.trends_view),
                name="conversations_satisfaction_trends",
            ),
            *super().get_urls(),
        ]

    def trends_view(self, request: HttpRequest) -> TemplateResponse:
        """Week by week: mean satisfaction and thumbs-up share per model version, and the share
        of conversations handed to a person, as charts and as a table."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            weeks = min(max(int(request.GET.get("weeks", DEFAULT_WEEKS)), 1), MAX_WEEKS)
        except ValueError:
            weeks = DEFAULT_WEEKS
        trends = satisfaction_trends(weeks)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Satisfaction week by week",
            "weeks": weeks,
            "week_choices": [4, 12, 26, 52],
            "trends": trends,
            "charts": satisfaction_charts(trends),
        }
        return TemplateResponse(request, "admin/conversations/satisfaction/trends.html", context)

    @admin.display(description="conversation", ordering="conversation_id")
    def conversation_link(self, answer: Satisfaction) -> str:
        return conversation_link_html(answer.conversation_id)

    @admin.display(description="score", ordering="score")
    def score_text(self, answer: Satisfaction) -> str:
        return f"{answer.score}/5"

    @admin.display(description="comment")
    def short_comment(self, answer: Satisfaction) -> str:
        return Truncator(answer.comment).chars(LIST_TEXT_CHARS) or "—"
