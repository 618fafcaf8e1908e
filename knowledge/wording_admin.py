"""Customers' wordings proposed as example questions, in the admin: staff accept them in bulk
(each becomes an example question of its article, embedded at once) or reject them; a pending
one's article may be changed first (``knowledge.wordings``)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from knowledge.models import WordingCandidate
from knowledge.services import KnowledgeError
from knowledge.wordings import do_accept_wordings, do_reject_wordings


class WordingCandidateAdmin(admin.ModelAdmin):
    list_display = ["question", "article_or_none", "supporters", "source", "status", "created_at"]
    list_filter = ["status", "source", ("article", admin.EmptyFieldListFilter), "created_at"]
    list_select_related = ["article"]
    search_fields = ["question", "article__title"]
    search_help_text = "Search the wordings and the articles' titles."
    actions = ["accept", "reject"]
    autocomplete_fields = ["article"]
    fields = ["question", "article", "source", "status", "decided_by", "decided_at", "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WordingCandidate]:
        return super().get_queryset(request).annotate(supporter_count=Count("feedback"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A pending wording may go to another article before it is accepted; nothing else is
        # edited here (the question is what the customer asked).
        if obj is not None and obj.status == WordingCandidate.Status.PENDING:
            return [field for field in self.fields if field != "article"]
        return list(self.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # wordings come from customers' ratings (conversations.wording_candidates)

    @admin.action(
        description="Accept: add them to their articles' example questions",
        permissions=["change"],
    )
    def accept(self, request: HttpRequest, queryset: QuerySet[WordingCandidate]) -> None:
        homeless = queryset.filter(status=WordingCandidate.Status.PENDING, article__isnull=True)
        if homeless.exists():
            self.message_user(
                request,
                f"{homeless.count()} wording(s) have no article yet: open each and pick the "
                "article it belongs to (or write one) first.",
                messages.WARNING,
            )
        try:
            count = do_accept_wordings(queryset, by=request.user)
        except KnowledgeError as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        self.message_user(
            request, f"{count} wording(s) added to their articles' questions.", messages.SUCCESS
        )

    @admin.action(description="Reject", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet[WordingCandidate]) -> None:
        count = do_reject_wordings(queryset, by=request.user)
        self.message_user(request, f"{count} wording(s) rejected.", messages.SUCCESS)

    @admin.display(description="article", ordering="article__title")
    def article_or_none(self, candidate: WordingCandidate) -> str:
        if candidate.article is None:
            return "— asked, not in the knowledge base"
        return candidate.article.title

    @admin.display(description="ratings", ordering="supporter_count")
    def supporters(self, candidate: WordingCandidate) -> int:
        return candidate.supporter_count
