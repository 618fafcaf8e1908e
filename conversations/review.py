"""Staff review of customers' feedback: approve or reject it for training, write corrections.

The admin calls these functions; nothing else writes `review_status`, `reviewer` or
`reviewed_at`. Each action is one conditional UPDATE inside a transaction that touches only
the staff's columns, so a customer re-rating the same reply at the same moment keeps their
rating, reason and comment, and a row already in the target state is not counted (or stamped)
again.

`reviewer` and `reviewed_at` record the last staff action on the row, whatever it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from conversations import wording_candidates
from conversations.models import Feedback

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

FeedbackSelection = QuerySet[Feedback] | Iterable[int]

Status = Feedback.ReviewStatus


def _selected(feedback: FeedbackSelection) -> QuerySet[Feedback]:
    if isinstance(feedback, QuerySet):
        # Re-select by primary key: the admin's queryset may be sliced, ordered or annotated.
        return Feedback.objects.filter(pk__in=feedback.values("pk"))
    return Feedback.objects.filter(pk__in=list(feedback))


def set_review_status(feedback: FeedbackSelection, status: str, reviewer: AbstractBaseUser) -> int:
    """Move the selected feedback to `status`; returns how many rows changed."""
    if status not in Status.values:
        raise ValueError(f"unknown review status: {status!r}")
    now = timezone.now()
    with transaction.atomic():
        return (
            _selected(feedback)
            .exclude(review_status=status)
            .update(review_status=status, reviewer=reviewer, reviewed_at=now, updated_at=now)
        )


def approve_feedback(feedback: FeedbackSelection, reviewer: AbstractBaseUser) -> int:
    """Mark the selected feedback as usable for training; returns how many rows changed."""
    return set_review_status(feedback, Status.APPROVED, reviewer)


def reject_feedback(feedback: FeedbackSelection, reviewer: AbstractBaseUser) -> int:
    """Keep the selected feedback out of training for good, and out of the wordings it
    supported (``wording_candidates``); returns how many rows changed."""
    changed = set_review_status(feedback, Status.REJECTED, reviewer)
    for row in _selected(feedback).filter(wording_candidates__isnull=False).distinct():
        wording_candidates.do_follow_rating(row)
    return changed


def use_again(feedback: FeedbackSelection, reviewer: AbstractBaseUser) -> int:
    """Let the next run learn from the selected feedback although a run already did (a
    re-rating never does: ``conversations.services.do_rate_message``); returns how many rows
    changed."""
    now = timezone.now()
    with transaction.atomic():
        return (
            _selected(feedback)
            .filter(used_by_run__isnull=False)
            .update(used_by_run=None, reviewer=reviewer, reviewed_at=now, updated_at=now)
        )


def set_correction(
    feedback: Feedback,
    text: str,
    reviewer: AbstractBaseUser,
    *,
    review_status: str | None = None,
) -> bool:
    """Store a staff-written better answer (and optionally a new review status) on one rating.

    Returns False when nothing changed (same text and status, or the row is gone). `feedback`
    is updated in memory to match the row.
    """
    text = text.strip()
    changes: dict[str, object] = {"correction": text}
    differs = ~Q(correction=text)
    if review_status is not None:
        if review_status not in Status.values:
            raise ValueError(f"unknown review status: {review_status!r}")
        changes["review_status"] = review_status
        differs |= ~Q(review_status=review_status)
    now = timezone.now()
    changes.update(reviewer=reviewer, reviewed_at=now, updated_at=now)
    with transaction.atomic():
        changed = Feedback.objects.filter(differs, pk=feedback.pk).update(**changes) == 1
    if changed:
        for field, value in changes.items():
            setattr(feedback, field, value)
    return changed
