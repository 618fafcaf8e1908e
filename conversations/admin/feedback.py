"""The customers' ratings and the agents' answers: review (approve, reject, correct), article
edits proposed from corrections, and the thumbs-up share per day.

Review actions change rows through ``conversations.review``; this module only renders and
dispatches. Every list is built from a fixed number of queries.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, TruncDate
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from admin_parts.charts import ShareRow, share_bars_svg
from admin_parts.filters import YesNoFilter
from conversations import review
from conversations.admin.display import (
    LIST_TEXT_CHARS,
    RATING_ICONS,
    conversation_link_html,
    owner_label,
)
from conversations.article_proposals import do_propose_edits
from conversations.handoff import agent_name
from conversations.models import Feedback, Message

CHART_DAYS = 14


class SourceFilter(admin.SimpleListFilter):
    """Customers' ratings of bot replies, or agents' answers (training examples)."""

    title = "source"
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            (Feedback.Source.CUSTOMER, "Customers' ratings"),
            (Feedback.Source.AGENT, "Agents' answers"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> QuerySet[Feedback]:
        if self.value() in Feedback.Source.values:
            return queryset.filter(source=self.value())
        return queryset


class LearnedByRunFilter(admin.RelatedOnlyFieldListFilter):
    """The training run whose promoted model learned from the row (runs that learned any)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "learned by training run"


class HasCorrectionFilter(YesNoFilter):
    title = "correction"
    parameter_name = "has_correction"
    yes_label, no_label = "With a correction", "Without"
    yes = ~Q(correction="")


class LearnedFilter(YesNoFilter):
    """Whether a promoted model has already learned from the rating (it is not used twice)."""

    title = "learned from"
    parameter_name = "learned"
    yes_label, no_label = "By a promoted model", "Not yet"
    yes = Q(used_by_run__isnull=False)


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = [
        "rated_reply",
        "question",
        "source_label",
        "rating_icon",
        "reason",
        "has_correction",
        "review_status",
        "model_version",
        "created_at",
    ]
    list_display_links = ["rated_reply"]
    list_filter = [
        SourceFilter,
        "rating",
        "reason",
        "review_status",
        HasCorrectionFilter,
        LearnedFilter,
        ("used_by_run", LearnedByRunFilter),
        ("message__model_version", admin.RelatedFieldListFilter),
        "created_at",
    ]
    list_select_related = ["message", "message__model_version", "user"]
    search_fields = ["message__text", "comment", "correction"]
    search_help_text = "Search the rated reply, the customer's comment and the correction."
    date_hierarchy = "created_at"
    # learning.admin adds "Export as KTO JSONL" (the training format is learning's).
    actions = ["approve_for_training", "reject", "use_again", "propose_article_edits"]
    fieldsets = [
        (
            "The customer's rating",
            {
                "fields": [
                    "conversation_link",
                    "question_text",
                    "reply_text",
                    "model_version",
                    "rating_icon",
                    "reason",
                    "comment",
                    "owner",
                    "created_at",
                ]
            },
        ),
        (
            "Review",
            {"fields": ["correction", "review_status", "reviewer", "reviewed_at", "learned_by"]},
        ),
    ]
    agent_answer_fieldsets = [
        (
            "The agent's answer (a training example)",
            {
                "fields": [
                    "conversation_link",
                    "question_text",
                    "reply_text",
                    "agent",
                    "created_at",
                ],
                "description": "The customer's question the bot could not answer, and what the "
                "agent answered: approved (or, without required review, not rejected), it "
                "teaches the model to answer it so.",
            },
        ),
        fieldsets[1],
    ]
    readonly_fields = [
        "agent",
        "conversation_link",
        "question_text",
        "reply_text",
        "model_version",
        "rating_icon",
        "reason",
        "comment",
        "owner",
        "created_at",
        "reviewer",
        "reviewed_at",
        "learned_by",
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Feedback | None = None) -> list:
        if obj is not None and obj.source == Feedback.Source.AGENT:
            return self.agent_answer_fieldsets
        return super().get_fieldsets(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feedback]:
        # An agent's answer: the question it answers. A customer's rating: the customer's
        # question just before the rated reply, one indexed lookup per row shown.
        question = (
            Message.objects.filter(
                conversation=OuterRef("message__conversation"),
                role=Message.Role.USER,
                created_at__lte=OuterRef("message__created_at"),
            )
            .order_by("-created_at", "-id")
            .values("text")[:1]
        )
        return (
            super()
            .get_queryset(request)
            .annotate(question=Coalesce("answered_question__text", Subquery(question)))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # ratings come from customers, in the chat; answers from the inbox

    def save_model(self, request: HttpRequest, obj: Feedback, form: object, change: bool) -> None:
        # Only the staff's columns are written, through the review service; the customer's
        # columns are never saved from here, so a concurrent re-rating is not overwritten.
        changed = form.changed_data
        status = form.cleaned_data["review_status"]
        if "correction" in changed:
            review.set_correction(
                obj,
                form.cleaned_data["correction"],
                request.user,
                review_status=status if "review_status" in changed else None,
            )
        elif "review_status" in changed:
            review.set_review_status([obj.pk], status, request.user)
        obj.refresh_from_db()

    @admin.action(description="Approve for training", permissions=["change"])
    def approve_for_training(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> None:
        n = review.approve_feedback(queryset, request.user)
        self.message_user(request, f"Approved {n} rating(s) for training.", messages.SUCCESS)

    @admin.action(description="Reject", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> None:
        n = review.reject_feedback(queryset, request.user)
        self.message_user(request, f"Rejected {n} rating(s).", messages.SUCCESS)

    @admin.action(description="Learn from them again in the next run", permissions=["change"])
    def use_again(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> None:
        n = review.use_again(queryset, request.user)
        self.message_user(
            request,
            f"{n} rating(s) a run had learned from will be learned from again.",
            messages.SUCCESS,
        )

    @admin.action(description="Propose article edits from the corrections", permissions=["change"])
    def propose_article_edits(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> None:
        outcome = do_propose_edits(queryset, by=request.user)
        url = reverse("admin:knowledge_articleproposal_changelist") + "?status__exact=pending"
        self.message_user(
            request,
            format_html(
                "{} new proposal(s), {} correction(s) added to pending ones, {} rating(s) "
                "proposed nothing (no correction, rejected, not written from an article, or "
                'saying what it says). <a href="{}">Review the proposals</a>.',
                outcome.proposed,
                outcome.supported,
                outcome.skipped,
                url,
            ),
            messages.SUCCESS,
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if isinstance(response, TemplateResponse) and "cl" in (response.context_data or {}):
            response.context_data["ratings_chart"] = daily_thumbs_up_chart(
                response.context_data["cl"].queryset
            )
        return response

    @admin.display(description="reply", ordering="message__text")
    def rated_reply(self, feedback: Feedback) -> str:
        return Truncator(feedback.message.text).chars(LIST_TEXT_CHARS)

    @admin.display(description="from", ordering="source")
    def source_label(self, feedback: Feedback) -> str:
        if feedback.source == Feedback.Source.AGENT:
            return f"Agent ({agent_name(feedback.user) or 'account deleted'})"
        return "Customer"

    @admin.display(description="agent")
    def agent(self, feedback: Feedback) -> str:
        return agent_name(feedback.user) or "—"

    @admin.display(description="customer asked")
    def question(self, feedback: Feedback) -> str:
        url = reverse("admin:conversations_conversation_change", args=[feedback.conversation_id])
        text = Truncator(getattr(feedback, "question", None) or "(conversation)").chars(
            LIST_TEXT_CHARS
        )
        return format_html('<a href="{}">{}</a>', url, text)

    @admin.display(description="rating", ordering="rating")
    def rating_icon(self, feedback: Feedback) -> str:
        if feedback.source == Feedback.Source.AGENT:
            return "—"  # an answer, not a rating
        icon = RATING_ICONS.get(feedback.rating, feedback.rating)
        return f"{icon} {feedback.get_rating_display()}"

    @admin.display(description="correction", boolean=True)
    def has_correction(self, feedback: Feedback) -> bool:
        return bool(feedback.correction)

    @admin.display(description="model version", ordering="message__model_version__name")
    def model_version(self, feedback: Feedback) -> str:
        version = feedback.message.model_version
        return version.name if version else "—"

    @admin.display(description="conversation")
    def conversation_link(self, feedback: Feedback) -> str:
        return conversation_link_html(feedback.conversation_id)

    @admin.display(description="customer asked")
    def question_text(self, feedback: Feedback) -> str:
        return getattr(feedback, "question", None) or "—"

    @admin.display(description="reply")
    def reply_text(self, feedback: Feedback) -> str:
        return feedback.message.text

    @admin.display(description="learned by")
    def learned_by(self, feedback: Feedback) -> str:
        if feedback.used_by_run_id is None:
            return "No promoted model has learned from this rating yet."
        url = reverse("admin:learning_trainingrun_change", args=[feedback.used_by_run_id])
        return format_html('<a href="{}">Training run #{}</a>', url, feedback.used_by_run_id)

    @admin.display(description="rated by")
    def owner(self, feedback: Feedback) -> str:
        return owner_label(feedback.user)


def daily_thumbs_up_chart(feedback: QuerySet[Feedback], days: int = CHART_DAYS) -> str:
    """Thumbs-up share per day over the latest `days` days that have ratings, in one query.

    Customers' ratings only: an agent's answer is stored rated up, but it is not a rating.
    """
    selected = Feedback.objects.filter(
        pk__in=feedback.values("pk"), source=Feedback.Source.CUSTOMER
    )
    per_day = list(
        selected.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(up=Count("pk", filter=Q(rating=Feedback.Rating.UP)), total=Count("pk"))
        .order_by("-day")[:days]
    )
    rows = [ShareRow(row["day"].isoformat(), row["up"], row["total"]) for row in reversed(per_day)]
    return share_bars_svg(
        rows, label="Thumbs-up share per day (customers' ratings matching the filters)"
    )
