"""Feedback as JSONL in the prompt/completion/label format of TRL's KTO trainer."""

from __future__ import annotations

import json
from typing import IO

from django.db.models import QuerySet

from conversations.models import Feedback, Message
from learning.examples import kto_rows


def feedback_for_export(
    queryset: QuerySet[Feedback] | None = None,
    *,
    review_status: str | None = None,
    rating: int | None = None,
    include_used: bool = True,
) -> QuerySet[Feedback]:
    """Usable feedback (never rejected, on finished replies), narrowed like the admin's filters."""
    queryset = (
        (queryset if queryset is not None else Feedback.objects.all())
        .filter(message__finish_reason__in=Message.PROMPTABLE_REASONS)
        .exclude(review_status=Feedback.ReviewStatus.REJECTED)
    )
    if review_status:
        queryset = queryset.filter(review_status=review_status)
    if rating is not None:
        queryset = queryset.filter(rating=rating)
    if not include_used:
        queryset = queryset.filter(used_by_run__isnull=True)
    return queryset


def write_kto_jsonl(queryset: QuerySet[Feedback], stream: IO[str]) -> int:
    count = 0
    for row in kto_rows(queryset):
        stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
