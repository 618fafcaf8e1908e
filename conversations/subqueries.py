"""Correlated count subqueries, so that a list page counts related rows in its one query."""

from __future__ import annotations

from django.db.models import Count, IntegerField, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce


def count_subquery(queryset: QuerySet, group_by: str) -> Coalesce:
    """The number of rows of ``queryset`` (filtered on an ``OuterRef``), 0 when there are none.

    ``group_by`` is the field the ``OuterRef`` filter is on: grouping by it leaves one row.
    """
    counts = queryset.order_by().values(group_by).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))
