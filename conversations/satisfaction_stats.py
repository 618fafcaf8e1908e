"""How satisfied customers are, week by week and per model version: the admin's trend page.

Three aggregate queries, grouped in the database, whatever the number of rows:
- the survey's answers (`Satisfaction`): their number and mean score, per week and version (the
  version of the conversation's last bot reply, stored with the answer);
- the customers' thumbs (`Feedback` with source customer: an agent's answer is a training
  example, not a rating), per week and the rated reply's version;
- conversations started each week, and how many of them were handed to a person
  (`handed_off_at` set, or an agent message in them).

Weeks start on Monday in the site's time zone; a row belongs to the week it was created in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Avg, Count, DateField, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncWeek
from django.utils import timezone

from conversations.models import Conversation, Feedback, Message, Satisfaction

DEFAULT_WEEKS = 12
MAX_WEEKS = 104
NO_VERSION = "(no bot reply)"


@dataclass(frozen=True)
class VersionWeek:
    """One model version in one week: survey answers and customers' thumbs."""

    week: dt.date
    version: str
    answers: int = 0
    mean_score: float | None = None
    rated: int = 0
    thumbs_up: int = 0

    @property
    def thumbs_up_share(self) -> float | None:
        return self.thumbs_up / self.rated if self.rated else None


@dataclass(frozen=True)
class HandoffWeek:
    """Conversations started in one week, and how many of them a person took part in."""

    week: dt.date
    conversations: int
    handed_off: int

    @property
    def share(self) -> float | None:
        return self.handed_off / self.conversations if self.conversations else None


@dataclass
class SatisfactionTrends:
    """Everything the trend page shows; `weeks` holds every week of the window, oldest first,
    including weeks without data, and `versions` the versions seen, oldest first."""

    weeks: list[dt.date]
    versions: list[str] = field(default_factory=list)
    cells: dict[tuple[dt.date, str], VersionWeek] = field(default_factory=dict)
    handoffs: dict[dt.date, HandoffWeek] = field(default_factory=dict)

    def cell(self, week: dt.date, version: str) -> VersionWeek:
        return self.cells.get((week, version)) or VersionWeek(week, version)

    def rows(self) -> list[VersionWeek]:
        """The (week, version) pairs that have answers or ratings, by week then version."""
        order = {name: n for n, name in enumerate(self.versions)}
        return sorted(self.cells.values(), key=lambda c: (c.week, order[c.version]))

    def handoff_rows(self) -> list[HandoffWeek]:
        return [self.handoffs.get(week) or HandoffWeek(week, 0, 0) for week in self.weeks]


def week_start(moment: dt.datetime) -> dt.date:
    """The Monday of `moment`'s week, in the site's time zone (as TruncWeek counts)."""
    day = timezone.localtime(moment).date()
    return day - dt.timedelta(days=day.weekday())


def window(weeks: int, now: dt.datetime | None = None) -> list[dt.date]:
    """The `weeks` latest weeks' Mondays, oldest first; the last is the current week."""
    last = week_start(now or timezone.now())
    return [last - dt.timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]


def _since(first_week: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(first_week, dt.time.min))


def _week(column: str = "created_at") -> TruncWeek:
    return TruncWeek(column, output_field=DateField())


def weekly_survey_answers(since: dt.datetime) -> QuerySet:
    """Rows of (week, model_version_id, model_version__name, answers, mean_score)."""
    return (
        Satisfaction.objects.filter(created_at__gte=since)
        .annotate(week=_week())
        .values("week", "model_version_id", "model_version__name")
        .annotate(answers=Count("pk"), mean_score=Avg("score"))
        .order_by()
    )


def weekly_customer_ratings(since: dt.datetime) -> QuerySet:
    """Rows of (week, version id, version name, rated, thumbs_up): customers' ratings only."""
    return (
        Feedback.objects.filter(created_at__gte=since, source=Feedback.Source.CUSTOMER)
        .annotate(week=_week())
        .values("week", "message__model_version_id", "message__model_version__name")
        .annotate(rated=Count("pk"), thumbs_up=Count("pk", filter=Q(rating=Feedback.Rating.UP)))
        .order_by()
    )


def handed_off_q() -> Q:
    """Conversations a person took part in: handed off (even if handed back), or answered by
    an agent (a conversation an agent wrote in without a handoff, should there be one)."""
    agent_message = Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.AGENT)
    return Q(handed_off_at__isnull=False) | Q(Exists(agent_message))


def weekly_handoffs(since: dt.datetime) -> QuerySet:
    """Rows of (week, conversations, handed_off), by the week each conversation started."""
    return (
        Conversation.objects.filter(created_at__gte=since)
        .annotate(week=_week())
        .values("week")
        .annotate(conversations=Count("pk"), handed_off=Count("pk", filter=handed_off_q()))
        .order_by()
    )


def satisfaction_trends(
    weeks: int = DEFAULT_WEEKS, *, now: dt.datetime | None = None
) -> SatisfactionTrends:
    """The latest `weeks` weeks (1 to MAX_WEEKS) of the three measures, in three queries."""
    weeks = min(max(weeks, 1), MAX_WEEKS)
    trends = SatisfactionTrends(weeks=window(weeks, now))
    since = _since(trends.weeks[0])
    merged: dict[tuple[dt.date, str], dict] = {}
    version_order: dict[str, tuple[int, str]] = {}

    def slot(week: dt.date, version_id: int | None, name: str | None) -> dict:
        label = name or NO_VERSION
        # Versions in the order they were registered (ids grow); "no version" last.
        version_order.setdefault(label, (version_id if version_id is not None else 2**62, label))
        return merged.setdefault((week, label), {"week": week, "version": label})

    for row in weekly_survey_answers(since):
        cell = slot(row["week"], row["model_version_id"], row["model_version__name"])
        cell.update(answers=row["answers"], mean_score=float(row["mean_score"]))
    for row in weekly_customer_ratings(since):
        cell = slot(
            row["week"], row["message__model_version_id"], row["message__model_version__name"]
        )
        cell.update(rated=row["rated"], thumbs_up=row["thumbs_up"])
    trends.cells = {key: VersionWeek(**values) for key, values in merged.items()}
    trends.versions = sorted(version_order, key=version_order.__getitem__)
    trends.handoffs = {
        row["week"]: HandoffWeek(row["week"], row["conversations"], row["handed_off"])
        for row in weekly_handoffs(since)
    }
    return trends
