"""The staff's review desk: conversations with their transcripts, the customers' ratings,
the agents' answers, and the satisfaction survey with its weekly trends.

Only staff reach the admin (Django's own check). Review actions change rows through
`conversations.review`; the trend page's numbers come from `conversations.satisfaction_stats`;
this module only renders and dispatches. Every list is built from a fixed number of queries:
counts are subqueries, related rows come through select_related.
"""

from __future__ import annotations

import io
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, TruncDate
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from chatbot_site.admin_inlines import ReadOnlyPartInline
from conversations import review
from conversations.handoff import agent_name
from conversations.models import Conversation, Feedback, Message, Satisfaction
from conversations.satisfaction_charts import satisfaction_charts
from conversations.satisfaction_stats import DEFAULT_WEEKS, MAX_WEEKS, satisfaction_trends
from conversations.subqueries import count_subquery
from knowledge.proposals import do_propose_edits
from learning.charts import ShareRow, share_bars_svg
from learning.export import feedback_for_export, write_kto_jsonl

RATING_ICONS = {Feedback.Rating.UP: "👍", Feedback.Rating.DOWN: "👎"}
LIST_TEXT_CHARS = 80
CHART_DAYS = 14


def _speaker(message: Message) -> str:
    """Who wrote a message: "Customer", "Bot", or "Agent (name)"."""
    if message.role == Message.Role.AGENT:
        return f"Agent ({agent_name(message.author) or 'account deleted'})"
    return message.get_role_display()


def _conversation_link(conversation_id: object) -> str:
    url = reverse("admin:conversations_conversation_change", args=[conversation_id])
    return format_html('<a href="{}">{}</a>', url, str(conversation_id)[:8])


def _owner(user: object | None) -> str:
    # The session key is a credential: never show it, not even in part.
    return str(user) if user is not None else "anonymous session"


def _article_link(article: dict[str, Any]) -> str:
    """An article's title, linked to its admin page while that exists."""
    try:
        url = reverse("admin:knowledge_knowledgearticle_change", args=[article["id"]])
    except NoReverseMatch:  # the knowledge base has no admin (yet)
        return article["title"]
    return format_html('<a href="{}">{}</a>', url, article["title"])


def _feedback_label(feedback: Feedback) -> str:
    """A customer's rating as its icon and reason; an agent's answer as a training example."""
    if feedback.source == Feedback.Source.AGENT:
        return f"training example ({feedback.get_review_status_display().lower()})"
    return f"{RATING_ICONS.get(feedback.rating, feedback.rating)} {feedback.get_reason_display()}"


# --- Conversations --------------------------------------------------------------------------


class TranscriptInline(ReadOnlyPartInline):
    """The conversation's messages, read-only, with the customer's rating on each bot reply,
    whether the bot declined, and the knowledge-base articles each reply was written from. An
    agent's message shows who wrote it, and whether it became a training example.

    Replies still being generated (or whose process died mid-generation) are left out, as
    everywhere else that shows messages: they have no text and no final version yet.
    """

    model = Message
    verbose_name = "message"
    verbose_name_plural = "transcript"
    fields = [
        "created_at",
        "speaker",
        "text",
        "rating",
        "declined_reply",
        "articles",
        "model_version",
        "finish_reason",
        "first_token",
        "token_count",
    ]
    readonly_fields = fields
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return (
            super()
            .get_queryset(request)
            .finished()
            .select_related("model_version", "author")
            .prefetch_related("feedback")
        )

    @admin.display(description="from")
    def speaker(self, message: Message) -> str:
        return _speaker(message)

    @admin.display(description="rating")
    def rating(self, message: Message) -> str:
        ratings = message.feedback.all()
        if not ratings:
            return "—" if message.role == Message.Role.ASSISTANT else ""
        return format_html_join(
            "",
            '<div><a href="{}">{}</a>{}</div>',
            (
                (
                    reverse("admin:conversations_feedback_change", args=[fb.pk]),
                    _feedback_label(fb),
                    " (correction)" if fb.correction else "",
                )
                for fb in ratings
            ),
        )

    @admin.display(description="declined")
    def declined_reply(self, message: Message) -> str:
        # Words, not the field's boolean icon: a no-icon on every customer message is noise.
        return "declined" if message.declined else ""

    @admin.display(description="articles")
    def articles(self, message: Message) -> str:
        """The articles shown, best first: title (linked when it can be) and score."""
        return format_html_join(
            "",
            "<div>{} ({})</div>",
            ((_article_link(article), f"{article['score']:.2f}") for article in message.grounding),
        )

    @admin.display(description="first token")
    def first_token(self, message: Message) -> str:
        ms = message.time_to_first_token_ms
        return f"{ms:.0f} ms" if ms is not None else ""


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = [
        "short_id",
        "owner",
        "message_count",
        "thumbs_up",
        "thumbs_down",
        "created_at",
        "updated_at",
        "status",
        "assigned_agent",
        "handoff_reason",
        "satisfaction_score",
    ]
    list_filter = ["status", "handoff_reason", "created_at"]
    list_select_related = ["user", "agent"]
    search_fields = ["messages__text"]
    search_help_text = "Search the text of the conversation's messages."
    date_hierarchy = "created_at"
    fields = [
        "id",
        "owner",
        "status",
        "assigned_agent",
        "handoff_reason",
        "handed_off_at",
        "closed_at",
        "satisfaction_answer",
        "created_at",
        "updated_at",
    ]
    # All read-only: the status changes in the inbox (conversations.handoff), which tells the
    # customer; an edit here would not, and could leave "with a person" with nobody assigned.
    readonly_fields = fields
    inlines = [TranscriptInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        pk = OuterRef("pk")
        # Thumbs are customers' ratings; an agent's answer (source agent) is not one.
        ratings = Feedback.objects.filter(conversation=pk, source=Feedback.Source.CUSTOMER)
        return (
            super()
            .get_queryset(request)
            .annotate(
                csat=F("satisfaction__score"),
                csat_comment=F("satisfaction__comment"),
                n_messages=count_subquery(
                    Message.objects.finished().filter(conversation=pk), "conversation"
                ),
                n_up=count_subquery(ratings.filter(rating=Feedback.Rating.UP), "conversation"),
                n_down=count_subquery(ratings.filter(rating=Feedback.Rating.DOWN), "conversation"),
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations start in the chat, nowhere else

    @admin.display(description="conversation", ordering="id")
    def short_id(self, conversation: Conversation) -> str:
        return str(conversation.id)[:8]

    @admin.display(description="owner", ordering="user__username")
    def owner(self, conversation: Conversation) -> str:
        return _owner(conversation.user)

    @admin.display(description="messages", ordering="n_messages")
    def message_count(self, conversation: Conversation) -> int:
        return conversation.n_messages

    @admin.display(description="👍", ordering="n_up")
    def thumbs_up(self, conversation: Conversation) -> int:
        return conversation.n_up

    @admin.display(description="👎", ordering="n_down")
    def thumbs_down(self, conversation: Conversation) -> int:
        return conversation.n_down

    @admin.display(description="agent", ordering="agent__username")
    def assigned_agent(self, conversation: Conversation) -> str:
        return agent_name(conversation.agent) or "—"

    @admin.display(description="satisfaction", ordering="csat")
    def satisfaction_score(self, conversation: Conversation) -> str:
        score = getattr(conversation, "csat", None)
        return f"{score}/5" if score is not None else "—"

    @admin.display(description="satisfaction")
    def satisfaction_answer(self, conversation: Conversation) -> str:
        score = getattr(conversation, "csat", None)
        if score is None:
            return "Not answered."
        comment = getattr(conversation, "csat_comment", "")
        return f"{score}/5: {comment}" if comment else f"{score}/5"


# --- Feedback -------------------------------------------------------------------------------


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


class HasCorrectionFilter(admin.SimpleListFilter):
    title = "correction"
    parameter_name = "has_correction"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "With a correction"), ("no", "Without")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> QuerySet[Feedback]:
        if self.value() == "yes":
            return queryset.exclude(correction="")
        if self.value() == "no":
            return queryset.filter(correction="")
        return queryset


class LearnedFilter(admin.SimpleListFilter):
    """Whether a promoted model has already learned from the rating (it is not used twice)."""

    title = "learned from"
    parameter_name = "learned"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "By a promoted model"), ("no", "Not yet")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> QuerySet[Feedback]:
        if self.value() == "yes":
            return queryset.filter(used_by_run__isnull=False)
        if self.value() == "no":
            return queryset.filter(used_by_run__isnull=True)
        return queryset


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
    actions = ["approve_for_training", "reject", "propose_article_edits", "export_kto_jsonl"]
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

    @admin.action(description="Export as KTO JSONL", permissions=["view"])
    def export_kto_jsonl(
        self, request: HttpRequest, queryset: QuerySet[Feedback]
    ) -> HttpResponse | None:
        """Download the selection in TRL's prompt/completion/label format (rejected left out)."""
        buffer = io.StringIO()
        count = write_kto_jsonl(feedback_for_export(queryset), buffer)
        if not count:
            self.message_user(
                request,
                "Nothing to export: rejected feedback is never exported.",
                messages.WARNING,
            )
            return None
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = HttpResponse(buffer.getvalue(), content_type="application/jsonl; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="feedback-kto-{stamp}.jsonl"'
        return response

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
        return _conversation_link(feedback.conversation_id)

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
        return _owner(feedback.user)


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


# --- Satisfaction ----------------------------------------------------------------------------


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
        return _conversation_link(answer.conversation_id)

    @admin.display(description="score", ordering="score")
    def score_text(self, answer: Satisfaction) -> str:
        return f"{answer.score}/5"

    @admin.display(description="comment")
    def short_comment(self, answer: Satisfaction) -> str:
        return Truncator(answer.comment).chars(LIST_TEXT_CHARS) or "—"
