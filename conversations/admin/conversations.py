"""Conversations with their transcripts: each message, its rating, whether the bot declined,
and the articles it was written from. All read-only: a conversation changes in the chat and the
inbox, which tell the customer."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import F, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from admin_parts.inlines import ReadOnlyPartInline
from conversations import handoff, handoff_events, privacy
from conversations.admin.display import (
    article_link,
    feedback_label,
    owner_label,
    speaker_label,
)
from conversations.handoff import agent_name
from conversations.models import Conversation, Feedback, Message
from conversations.subqueries import count_subquery


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
        "guarded",
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
        return speaker_label(message)

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
                    feedback_label(fb),
                    " (correction)" if fb.correction else "",
                )
                for fb in ratings
            ),
        )

    @admin.display(description="declined")
    def declined_reply(self, message: Message) -> str:
        # Words, not the field's boolean icon: a no-icon on every customer message is noise.
        return "declined" if message.declined else ""

    @admin.display(description="guard")
    def guarded(self, message: Message) -> str:
        """Why the faithfulness guard replaced the model's reply, and what the model wrote."""
        if not message.guard:
            return ""
        return format_html(
            "<div>{}</div><details><summary>{}</summary>{}</details>",
            message.get_guard_display(),
            "what the model wrote",
            message.generated_text,
        )

    @admin.display(description="articles")
    def articles(self, message: Message) -> str:
        """The articles shown, best first: title (linked when it can be) and score."""
        return format_html_join(
            "",
            "<div>{} ({})</div>",
            ((article_link(article), f"{article['score']:.2f}") for article in message.grounding),
        )

    @admin.display(description="first token")
    def first_token(self, message: Message) -> str:
        ms = message.time_to_first_token_ms
        return f"{ms:.0f} ms" if ms is not None else ""


def _customers(conversations: QuerySet[Conversation]) -> list[privacy.Customer]:
    """The customers of ``conversations``, each once."""
    return list(dict.fromkeys(privacy.Customer.of(c) for c in conversations))


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
    actions = [
        "release_claims",
        "reassign_conversations",
        "export_customer_data",
        "erase_customer_data",
    ]

    @admin.action(description="Release the claims back to the queue")
    def release_claims(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        """A supervisor's way out for a conversation an agent claimed and left."""
        if not request.user.has_perm(handoff.SUPERVISE_INBOX):
            self.message_user(
                request, "Only supervisors can release other agents' claims.", messages.ERROR
            )
            return
        released = 0
        for conversation in queryset.filter(status=Conversation.Status.WITH_AGENT):
            handoff_events.release_claim(conversation.pk, request.user)
            released += 1
        self.message_user(
            request, f"{released} conversation(s) back in the queue.", messages.SUCCESS
        )

    @admin.action(description="Give the conversations to another agent…")
    def reassign_conversations(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> HttpResponse | None:
        """A supervisor hands waiting or claimed conversations to an agent they choose."""
        if not request.user.has_perm(handoff.SUPERVISE_INBOX):
            self.message_user(
                request, "Only supervisors can reassign conversations.", messages.ERROR
            )
            return None
        handed_off = queryset.filter(status__in=Conversation.HANDED_OFF)
        agents = handoff.eligible_agents()
        chosen = agents.filter(pk=request.POST.get("agent") or None).first()
        if chosen is None:
            return TemplateResponse(
                request,
                "admin/conversations/conversation/reassign.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": "Give conversations to another agent",
                    "conversations": handed_off,
                    "agents": [(agent.pk, agent_name(agent)) for agent in agents],
                    "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
                },
            )
        given = 0
        for conversation in handed_off:
            try:
                handoff_events.reassign(conversation.pk, request.user, chosen.pk)
            except handoff.HandoffRefused as refused:
                self.message_user(request, f"{conversation.pk}: {refused.detail}", messages.ERROR)
            else:
                given += 1
        self.message_user(
            request, f"{given} conversation(s) given to {agent_name(chosen)}.", messages.SUCCESS
        )
        return None

    # A customer's data, on request (conversations.privacy) -------------------------------

    @admin.action(description="Export the customers' data (JSON)", permissions=["view"])
    def export_customer_data(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> HttpResponse:
        data = [privacy.customer_data(customer) for customer in _customers(queryset)]
        response = JsonResponse(data, safe=False, json_dumps_params={"ensure_ascii": False})
        response["Content-Disposition"] = 'attachment; filename="customer-data.json"'
        return response

    @admin.action(description="Erase the customers' data…", permissions=["delete"])
    def erase_customer_data(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> HttpResponse | None:
        customers = _customers(queryset)
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "admin/conversations/conversation/erase_customers.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": "Erase customers' data",
                    "customers": [(c, c.conversations().count()) for c in customers],
                    "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
                },
            )
        for customer in customers:
            erasure = privacy.erase_customer(customer)
            trained = (
                " Trained on their ratings (retrain or roll back without them): "
                + ", ".join(erasure.trained_versions)
                + "."
                if erasure.trained_versions
                else ""
            )
            self.message_user(
                request,
                f"Erased {customer}: {erasure.conversations} conversation(s), "
                f"{erasure.ratings} rating(s), {erasure.proposals} proposal(s).{trained}",
                messages.WARNING if erasure.trained_versions else messages.SUCCESS,
            )
        return None

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
        return owner_label(conversation.user)

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
