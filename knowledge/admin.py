"""The knowledge base in the admin: staff search, filter and edit the articles the bot answers from.

Saves go through `knowledge.services.do_save_article`, so that an edit keeps the previous version
(shown read-only on the article's page) and a new text is embedded before the page returns.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from chatbot_site.admin_inlines import ReadOnlyPartInline
from knowledge.models import ArticleRevision, KnowledgeArticle
from knowledge.services import do_embed_articles, do_save_article

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
class KnowledgeArticleAdmin(admin.ModelAdmin):
    form = KnowledgeArticleForm
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
    actions = ["embed_again"]

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
