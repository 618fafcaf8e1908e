"""The knowledge base in the admin: staff search, filter and edit the articles the bot answers from.

Saves go through `knowledge.services.do_save_article`, so that an edit keeps the previous version
(shown read-only on the article's page) and a new text is embedded before the page returns.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from admin_parts.inlines import ReadOnlyPartInline
from knowledge.article_import_admin import ArticleImportAdminMixin
from knowledge.models import (
    ArticleProposal,
    ArticleRevision,
    BusinessProfile,
    KnowledgeArticle,
    WordingCandidate,
)
from knowledge.proposals import do_accept_proposal, do_dismiss_proposals
from knowledge.services import KnowledgeError, do_embed_articles, do_save_article

LIST_TEXT_CHARS = 100


class RevisionInline(ReadOnlyPartInline):
    """Earlier versions of the article, newest first, read-only."""

    model = ArticleRevision
    verbose_name = "earlier version"
    verbose_name_plural = "earlier versions"
    fields = [
        "updated_at",
        "updated_by",
        "title",
        "text",
        "example_questions",
        "topic",
        "is_active",
        "replaced_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ArticleRevision]:
        return super().get_queryset(request).select_related("updated_by")


class KnowledgeArticleForm(forms.ModelForm):
    class Meta:
        model = KnowledgeArticle
        fields = ["title", "text", "example_questions", "topic", "is_active"]
        widgets = {
            "text": forms.Textarea(attrs={"rows": 8, "cols": 80}),
            "example_questions": forms.Textarea(attrs={"rows": 10, "cols": 80}),
        }


@admin.register(KnowledgeArticle)
class KnowledgeArticleAdmin(ArticleImportAdminMixin, admin.ModelAdmin):
    """Articles; importing and exporting them is ``ArticleImportAdminMixin``'s."""

    form = KnowledgeArticleForm
    change_list_template = "admin/knowledge/knowledgearticle/change_list.html"
    list_display = ["title", "topic", "short_text", "is_active", "embedded", "updated_at"]
    list_filter = ["topic", "is_active", "updated_at"]
    list_select_related = ["updated_by"]
    search_fields = ["title", "text", "example_questions", "topic"]
    search_help_text = "Search the titles, texts, example questions and topics."
    date_hierarchy = "updated_at"
    readonly_fields = ["updated_by", "updated_at", "created_at", "embedded"]
    fieldsets = [
        (None, {"fields": ["title", "text", "example_questions", "topic", "is_active"]}),
        ("History", {"fields": ["updated_by", "updated_at", "created_at", "embedded"]}),
    ]
    inlines = [RevisionInline]
    actions = ["embed_again", "export_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[KnowledgeArticle]:
        return super().get_queryset(request).defer("embedding")

    def save_model(
        self, request: HttpRequest, obj: KnowledgeArticle, form: Any, change: bool
    ) -> None:
        do_save_article(obj, by=request.user)

    @admin.action(description="Embed again with the current encoder", permissions=["change"])
    def embed_again(self, request: HttpRequest, queryset: QuerySet[KnowledgeArticle]) -> None:
        count = do_embed_articles(queryset, only_missing=False)
        self.message_user(request, f"{count} article(s) embedded again.", messages.SUCCESS)

    @admin.display(description="text")
    def short_text(self, article: KnowledgeArticle) -> str:
        return Truncator(article.text).chars(LIST_TEXT_CHARS)

    @admin.display(description="embedded", ordering="embedded_at")
    def embedded(self, article: KnowledgeArticle) -> str:
        if article.embedded_at is None:
            return "not yet"
        return (
            f"{article.embedded_at:%Y-%m-%d %H:%M} by {article.embedding_encoder} "
            f"({article.embedding_count} vectors)"
        )


@admin.register(ArticleProposal)
class ArticleProposalAdmin(admin.ModelAdmin):
    """Customers' corrections as proposed article texts: staff accept one (the article is
    edited) or dismiss them (``knowledge.proposals``)."""

    list_display = ["article", "short_text", "supporters", "status", "outdated", "created_at"]
    list_filter = ["status", "created_at"]
    list_select_related = ["article"]
    search_fields = ["article__title", "text"]
    search_help_text = "Search the articles' titles and the proposed texts."
    actions = ["accept", "dismiss"]
    fields = [
        "article",
        "text",
        "based_on",
        "outdated",
        "ratings",
        "status",
        "proposed_by",
        "decided_by",
        "decided_at",
        "created_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ArticleProposal]:
        return super().get_queryset(request).annotate(supporter_count=Count("feedback"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # proposals come from corrections (the feedback admin's action)

    @admin.action(description="Accept: write the text into the article", permissions=["change"])
    def accept(self, request: HttpRequest, queryset: QuerySet[ArticleProposal]) -> None:
        per_article: dict[int, ArticleProposal] = {}
        for proposal in queryset.filter(status=ArticleProposal.Status.PENDING):
            if proposal.article_id in per_article:
                self.message_user(
                    request,
                    f"Choose one proposal for “{proposal.article.title}”: nothing was accepted.",
                    messages.ERROR,
                )
                return
            per_article[proposal.article_id] = proposal
        for proposal in per_article.values():
            try:
                do_accept_proposal(proposal, by=request.user)
            except KnowledgeError as error:
                self.message_user(request, str(error), messages.WARNING)
        self.message_user(
            request, f"{len(per_article)} article(s) edited from the proposals.", messages.SUCCESS
        )

    @admin.action(description="Dismiss", permissions=["change"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet[ArticleProposal]) -> None:
        count = do_dismiss_proposals(queryset, by=request.user)
        self.message_user(request, f"{count} proposal(s) dismissed.", messages.SUCCESS)

    @admin.display(description="proposed text")
    def short_text(self, proposal: ArticleProposal) -> str:
        return Truncator(proposal.text).chars(LIST_TEXT_CHARS)

    @admin.display(description="ratings", ordering="supporter_count")
    def supporters(self, proposal: ArticleProposal) -> int:
        return proposal.supporter_count

    @admin.display(description="article changed since", boolean=True)
    def outdated(self, proposal: ArticleProposal) -> bool:
        """Whether the article no longer says what the corrected replies were written from."""
        return proposal.article.text.strip() != proposal.based_on.strip()

    @admin.display(description="ratings that propose it")
    def ratings(self, proposal: ArticleProposal) -> str:
        rows = proposal.feedback.order_by("id")
        return format_html_join(
            ", ",
            '<a href="{}">#{}</a>',
            (
                (reverse("admin:conversations_feedback_change", args=[row.pk]), row.pk)
                for row in rows
            ),
        ) or format_html("{}", "none")


from knowledge.profile_admin import BusinessProfileAdmin  # noqa: E402
from knowledge.wording_admin import WordingCandidateAdmin  # noqa: E402

admin.site.register(BusinessProfile, BusinessProfileAdmin)
admin.site.register(WordingCandidate, WordingCandidateAdmin)
