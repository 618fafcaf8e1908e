"""How the learning admin shows things: status badges, metric tables, progress, trend charts.

Functions of rows and dicts already loaded; they run no queries of their own (the version
charts read the rating counts that `learning.feedback.with_rating_counts` annotates).
"""

from __future__ import annotations

import json
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from admin_parts.charts import ShareRow, metric_trend_svg, share_bars_svg
from learning.models import ModelVersion, TrainingRun
from learning.run_progress import describe_phase, seconds_left

STATUS_COLOURS = {
    ModelVersion.Status.ACTIVE: "#1e7e34",
    ModelVersion.Status.READY: "#1f5f99",
    ModelVersion.Status.RETIRED: "#5c636a",
    ModelVersion.Status.REJECTED: "#b02a37",
}
RUN_STATUS_COLOURS = {
    TrainingRun.Status.QUEUED: "#5c636a",
    TrainingRun.Status.RUNNING: "#1f5f99",
    TrainingRun.Status.SUCCEEDED: "#1e7e34",
    TrainingRun.Status.REJECTED: "#8a4b00",
    TrainingRun.Status.FAILED: "#b02a37",
}
SUMMARY_ITEMS = 4

# Metrics the learning code writes, in the order and words an operator reads them.
METRIC_LABELS = {
    "heldout_margin": "Held-out feedback margin (higher is better)",
    "heldout_count": "Held-out feedback examples",
    "retention_perplexity": "Retention perplexity (lower is better)",
    "golden_fact_accuracy": "Golden set: answers with the required facts",
    "golden_perplexity": "Golden set perplexity (lower is better)",
    "golden_count": "Golden examples",
    "final_loss": "Final training loss",
    "train_seconds": "Training time (s)",
    "seconds_total": "Run time, trigger to decision (s)",
}
# The counts `learning.examples.build_examples_from_feedback` stores with a run, in order.
EXAMPLE_COUNT_LABELS = {
    "feedback": "Feedback rows used",
    "train": "Training examples",
    "heldout": "Held-out examples",
    "desirable": "Desirable examples",
    "undesirable": "Undesirable examples",
    "corrections": "Corrections",
    "corrections_awaiting_review": "Corrections left out: awaiting staff approval",
    "agent_answers": "Agents' answers (from the inbox)",
    "capped_feedback": "Left out by the per-owner cap",
    "network_capped_feedback": "Left out by the per-network share",
    "largest_network_feedback": "Most feedback rows from one network",
    "protected": "Left out: they contradict golden answers",
}
TREND_METRICS = [
    ("retention_perplexity", "Retention perplexity", "lower"),
    ("heldout_margin", "Held-out margin", "higher"),
    ("golden_fact_accuracy", "Golden facts stated", "higher"),
]


def _badge(colour: str, text: str) -> SafeString:
    # White on these colours is at least 4.5:1 (WCAG AA for small bold text).
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 8px;border-radius:8px;'
        'font-weight:bold;white-space:nowrap">{}</span>',
        colour,
        text,
    )


def version_status_badge(version: ModelVersion) -> SafeString:
    return _badge(STATUS_COLOURS.get(version.status, "#5c636a"), version.get_status_display())


def run_status_badge(run: TrainingRun) -> SafeString:
    return _badge(RUN_STATUS_COLOURS.get(run.status, "#5c636a"), run.get_status_display())


def _format_value(key: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if key.endswith("accuracy") and isinstance(value, int | float):
        return f"{value:.0%}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _ordered_keys(*dicts: dict, labels: dict[str, str] = METRIC_LABELS) -> list[str]:
    keys = [k for k in labels if any(k in d for d in dicts)]
    return keys + sorted({k for d in dicts for k in d} - set(keys))


def summarize_metrics(metrics: object, limit: int = SUMMARY_ITEMS) -> str:
    """A one-line rendering of the top-level scalar metrics, e.g. `margin=0.412, ppl=13.1`."""
    if not isinstance(metrics, dict):
        return ""
    parts = []
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue  # nested sections belong on the detail page
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    if len(parts) > limit:
        parts = [*parts[:limit], "…"]
    return ", ".join(parts)


def metrics_table(
    metrics: dict,
    *,
    caption: str,
    header: str = "metric",
    empty: str = "No metrics recorded.",
    labels: dict[str, str] = METRIC_LABELS,
) -> SafeString:
    """Metrics (or settings, counts) as a two-column table with readable names (`labels`)."""
    rows = [
        (labels.get(k, k), _format_value(k, metrics[k]))
        for k in _ordered_keys(metrics, labels=labels)
    ]
    return render_to_string(
        "admin/learning/includes/metrics_table.html",
        {"rows": rows, "caption": caption, "header": header, "empty": empty},
    )


def before_after_table(before: dict, after: dict) -> SafeString:
    """The parent's and the candidate's metrics side by side, with the change."""

    def change(key: str) -> str:
        a, b = before.get(key), after.get(key)
        if isinstance(a, bool) or isinstance(b, bool):
            return ""
        if isinstance(a, int | float) and isinstance(b, int | float):
            return f"{b - a:+.4g}"
        return ""

    rows = [
        (
            METRIC_LABELS.get(key, key),
            _format_value(key, before[key]) if key in before else "—",
            _format_value(key, after[key]) if key in after else "—",
            change(key),
        )
        for key in _ordered_keys(before, after)
    ]
    return render_to_string("admin/learning/includes/before_after_table.html", {"rows": rows})


def progress_html(run: TrainingRun, *, poll_url: str = "", with_loss: bool = True) -> SafeString:
    """The run's progress bar; `poll_url` makes it follow the run live (JS). Outside its steps
    the text says which phase the run is in, with that phase's progress and time left."""
    if run.status not in TrainingRun.OPEN_STATUSES and not run.total_steps:
        return format_html("{}", "—")
    percent = f"{run.step / run.total_steps:.0%}" if run.total_steps else ""
    phase = describe_phase(run) if run.status == TrainingRun.Status.RUNNING else ""
    in_steps = run.total_steps and 0 < run.step < run.total_steps
    if run.status == TrainingRun.Status.QUEUED:
        text = "waiting for a worker"
    elif phase and not in_steps:
        text = phase[0].upper() + phase[1:]
    elif run.total_steps:
        left = seconds_left(run)
        left_text = f", about {int(left // 60)} min {round(left % 60)} s left" if left else ""
        text = f"{run.step} / {run.total_steps} steps ({percent}{left_text})"
    else:
        text = "preparing"
    loss = f"loss {run.loss_history[-1]:.4g}" if run.loss_history and with_loss else ""
    context = {"run": run, "poll_url": poll_url, "percent": percent, "text": text, "loss": loss}
    return render_to_string("admin/learning/includes/run_progress.html", context)


def run_duration(run: TrainingRun) -> str:
    """How long the run took (or has taken so far); "" before it started."""
    if not run.started_at:
        return ""
    end = run.finished_at or timezone.now()
    seconds = int((end - run.started_at).total_seconds())
    minutes, seconds = divmod(seconds, 60)
    text = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    return text if run.finished_at else f"{text} so far"


def version_charts(versions: list[ModelVersion]) -> list[SafeString]:
    """Trends of the key metrics, and the thumbs-up share, over `versions` (oldest first).

    The versions carry the `n_rated`/`n_up` annotations of `with_rating_counts`.
    """
    charts = []
    for key, title, better in TREND_METRICS:
        points = [
            (v.name, float(v.metrics[key]))
            for v in versions
            if isinstance(v.metrics, dict) and isinstance(v.metrics.get(key), int | float)
        ]
        if points:
            charts.append(metric_trend_svg(title, points, better=better))
    rated = [ShareRow(v.name, v.n_up, v.n_rated) for v in versions if v.n_rated]
    if rated:
        charts.append(share_bars_svg(rated, label="Thumbs-up share per model version"))
    return charts
