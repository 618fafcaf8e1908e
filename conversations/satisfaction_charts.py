"""The satisfaction trend page's pictures: one line per model version, one point per week."""

from __future__ import annotations

from django.utils.safestring import SafeString

from admin_parts.charts import Series, series_lines_svg
from conversations.satisfaction_stats import SatisfactionTrends


def week_label(trends: SatisfactionTrends) -> list[str]:
    return [week.strftime("%d %b") for week in trends.weeks]


def satisfaction_charts(trends: SatisfactionTrends) -> list[SafeString]:
    """Mean CSAT and thumbs-up share per version, and the handoff share, week by week."""
    labels = week_label(trends)
    csat = [
        Series(
            version,
            [trends.cell(week, version).mean_score for week in trends.weeks],
            [trends.cell(week, version).answers for week in trends.weeks],
        )
        for version in trends.versions
        if any(trends.cell(week, version).answers for week in trends.weeks)
    ]
    thumbs = [
        Series(
            version,
            [trends.cell(week, version).thumbs_up_share for week in trends.weeks],
            [trends.cell(week, version).rated for week in trends.weeks],
        )
        for version in trends.versions
        if any(trends.cell(week, version).rated for week in trends.weeks)
    ]
    handoffs = trends.handoff_rows()
    handed = Series(
        "Handed to a person",
        [row.share for row in handoffs],
        [row.conversations for row in handoffs],
    )
    return [
        series_lines_svg(
            "Mean satisfaction (1 to 5) per model version",
            labels,
            csat,
            low=1,
            high=5,
            empty="no survey answers in these weeks",
        ),
        series_lines_svg(
            "Thumbs-up share of customers' ratings per model version",
            labels,
            thumbs,
            low=0,
            high=1,
            percent=True,
            empty="no ratings in these weeks",
        ),
        series_lines_svg(
            "Share of conversations handed to a person",
            labels,
            [handed],
            low=0,
            high=1,
            percent=True,
            better="",
            empty="no conversations in these weeks",
        ),
    ]
