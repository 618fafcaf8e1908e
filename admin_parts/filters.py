"""List filters the admins share."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest


class YesNoFilter(admin.SimpleListFilter):
    """A filter with two choices: the rows matching ``yes``, or the others.

    A subclass sets ``title``, ``parameter_name``, the two labels and ``yes``.
    """

    yes_label = "Yes"
    no_label = "No"
    yes: Q

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", self.yes_label), ("no", self.no_label)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(self.yes)
        if self.value() == "no":
            return queryset.exclude(self.yes)
        return queryset
