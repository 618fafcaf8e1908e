"""The golden set: questions with expected answers and required facts, which the gate checks
every candidate on."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
)
from django.utils.text import Truncator

from learning.models import GoldenExample


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
