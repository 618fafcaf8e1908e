"""Small server-side SVG charts for the admin (no JavaScript, no plotting library)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator


def loss_curve_svg(losses: Sequence[float], *, width: int = 480, height: int = 160) -> SafeString:
    """The loss per step as a line, with the first/last values and the range labelled."""
    if len(losses) < 2:
        return format_html('<p class="help">{}</p>', "No loss values yet.")
    pad_left, pad_right, pad_y = 48, 10, 14
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0
    inner_w, inner_h = width - pad_left - pad_right, height - 2 * pad_y
    points = " ".join(
        f"{pad_left + inner_w * i / (len(losses) - 1):.1f},"
        f"{pad_y + inner_h * (1 - (value - low) / span):.1f}"
        for i, value in enumerate(losses)
    )
    return format_html(
        '<svg role="img" aria-label="{label}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'style="background:#fff;border:1px solid #ccc;border-radius:4px">'
        "<title>{label}</title>"
        '<text x="4" y="{top}" font-size="11" fill="#555">{high}</text>'
        '<text x="4" y="{bottom}" font-size="11" fill="#555">{low}</text>'
        '<line x1="{pl}" y1="{py}" x2="{pl}" y2="{base}" stroke="#bbb"/>'
        '<line x1="{pl}" y1="{base}" x2="{right}" y2="{base}" stroke="#bbb"/>'
        '<polyline fill="none" stroke="#2563eb" stroke-width="1.6" points="{points}"/>'
        "</svg>",
        label=f"Training loss over {len(losses)} points, from {losses[0]:.3f} to {losses[-1]:.3f}",
        w=width,
        h=height,
        top=pad_y + 4,
        bottom=height - pad_y + 4,
        high=f"{high:.3f}",
        low=f"{low:.3f}",
        pl=pad_left,
        py=pad_y,
        base=height - pad_y,
        right=width - pad_right,
        points=points,
    )


@dataclass(frozen=True)
class ShareRow:
    """One bar of a share chart: e.g. a model version and its thumbs-up count out of all."""

    label: str
    part: int
    total: int

    @property
    def share(self) -> float:
        return self.part / self.total if self.total else 0.0


def share_bars_svg(
    rows: Sequence[ShareRow], *, label: str, width: int = 520, label_width: int = 150
) -> SafeString:
    """Horizontal bars, one per row, each labelled with its share and its counts.

    The numbers are also written into the picture's description, so a screen reader reads
    the same data the bars show.
    """
    if not rows:
        return format_html('<p class="help">{}</p>', "No ratings yet.")
    row_h, pad, title_h = 22, 6, 20
    value_w = 110
    bar_w = width - label_width - value_w - 2 * pad
    height = pad * 2 + title_h + row_h * len(rows)
    bars = format_html_join(
        "",
        '<text x="{lx}" y="{ty}" font-size="12" fill="#1f2937" text-anchor="end">{name}</text>'
        '<rect x="{bx}" y="{by}" width="{bw}" height="{bh}" fill="#e5e7eb"/>'
        '<rect x="{bx}" y="{by}" width="{fw}" height="{bh}" fill="#1d4ed8"/>'
        '<text x="{vx}" y="{ty}" font-size="12" fill="#1f2937">{value}</text>',
        (
            {
                "lx": label_width - 6,
                "ty": pad + title_h + i * row_h + 15,
                "name": Truncator(row.label).chars(22),
                "bx": label_width,
                "by": pad + title_h + i * row_h + 4,
                "bw": bar_w,
                "bh": row_h - 8,
                "fw": f"{bar_w * row.share:.1f}",
                "vx": label_width + bar_w + 8,
                "value": f"{row.share:.0%} of {row.total}",
            }
            for i, row in enumerate(rows)
        ),
    )
    description = "; ".join(
        f"{row.label}: {row.share:.0%} ({row.part} of {row.total})" for row in rows
    )
    return format_html(
        '<svg role="img" aria-labelledby="{id}-t {id}-d" width="{w}" height="{h}" '
        'viewBox="0 0 {w} {h}" class="chart" style="background:#fff;border:1px solid #ccc;'
        'border-radius:4px;max-width:100%">'
        '<title id="{id}-t">{label}</title><desc id="{id}-d">{description}</desc>'
        '<text x="{pad}" y="18" font-size="11" font-weight="bold" fill="#1f2937">{label}</text>'
        "{bars}</svg>",
        id=_chart_id(label),
        w=width,
        h=height,
        label=label,
        pad=pad + 2,
        description=description,
        bars=bars,
    )


def metric_trend_svg(
    title: str,
    points: Sequence[tuple[str, float]],
    *,
    better: str = "higher",
    width: int = 230,
    height: int = 90,
) -> SafeString:
    """A small line chart of one metric across model versions (oldest first).

    ``better`` ("higher" or "lower") only goes into the caption, so the reader knows which
    way is good; the picture itself is neutral.
    """
    if not points:
        return format_html('<p class="help">{}: {}</p>', title, "no data")
    pad_x, pad_top, pad_bottom = 8, 22, 16
    values = [value for _, value in points]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    inner_w, inner_h = width - 2 * pad_x, height - pad_top - pad_bottom
    step = inner_w / (len(points) - 1) if len(points) > 1 else 0.0
    coords = [
        (
            pad_x + (step * i if len(points) > 1 else inner_w / 2),
            pad_top + inner_h * (1 - (value - low) / span),
        )
        for i, value in enumerate(values)
    ]
    dots = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="3" fill="#1d4ed8"><title>{}: {}</title></circle>',
        (
            (f"{x:.1f}", f"{y:.1f}", name, _fmt(value))
            for (x, y), (name, value) in zip(coords, points, strict=True)
        ),
    )
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    description = ", ".join(f"{name} {_fmt(value)}" for name, value in points)
    caption = f"{title} ({better} is better)"
    return format_html(
        '<svg role="img" aria-labelledby="{id}-t {id}-d" width="{w}" height="{h}" '
        'viewBox="0 0 {w} {h}" class="chart" style="background:#fff;border:1px solid #ccc;'
        'border-radius:4px">'
        '<title id="{id}-t">{caption}</title><desc id="{id}-d">{description}</desc>'
        '<text x="{px}" y="14" font-size="11" font-weight="bold" fill="#1f2937">{title}</text>'
        '<text x="{px}" y="{bottom}" font-size="10" fill="#374151">{better} is better</text>'
        '<text x="{right}" y="{bottom}" font-size="10" fill="#374151" text-anchor="end">'
        "latest {last}</text>"
        '<polyline fill="none" stroke="#1d4ed8" stroke-width="1.5" points="{line}"/>{dots}</svg>',
        id=_chart_id(title),
        w=width,
        h=height,
        caption=caption,
        title=title,
        better=better,
        description=description,
        px=pad_x,
        right=width - pad_x,
        bottom=height - 3,
        last=_fmt(values[-1]),
        line=line,
        dots=dots,
    )


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _chart_id(text: str) -> str:
    """A stable id for aria-labelledby: several charts share one page."""
    return "chart-" + hashlib.sha1(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Series:
    """One line of a `series_lines_svg` chart: a label and one value per x label (None: no data).

    `counts` (optional, one per value) are written beside each value in the description and
    the points' tooltips, e.g. the number of answers a mean was taken over.
    """

    label: str
    values: Sequence[float | None]
    counts: Sequence[int] | None = None


# Okabe-Ito colours (told apart with colour-blindness), each with its own marker and dash, so
# that a line is recognisable without its colour too.
SERIES_STYLES = [
    ("#0072b2", "circle", ""),
    ("#d55e00", "square", "6 3"),
    ("#009e73", "triangle", "2 3"),
    ("#cc79a7", "diamond", "8 3 2 3"),
    ("#e69f00", "circle", "4 4"),
    ("#56b4e9", "square", "1 2"),
    ("#000000", "triangle", "10 3"),
]


# Polygon markers as offsets from the point; the circle is drawn as a circle.
MARKER_OFFSETS = {
    "square": [(-3.5, -3.5), (3.5, -3.5), (3.5, 3.5), (-3.5, 3.5)],
    "triangle": [(0, -4.5), (-4, 3.5), (4, 3.5)],
    "diamond": [(0, -4.5), (-4.5, 0), (0, 4.5), (4.5, 0)],
}


def _marker(shape: str, x: float, y: float, colour: str, tip: str) -> SafeString:
    title = format_html("<title>{}</title>", tip)
    if shape in MARKER_OFFSETS:
        points = " ".join(f"{x + dx:.1f},{y + dy:.1f}" for dx, dy in MARKER_OFFSETS[shape])
        return format_html('<polygon points="{}" fill="{}">{}</polygon>', points, colour, title)
    return format_html(
        '<circle cx="{}" cy="{}" r="3.5" fill="{}">{}</circle>',
        f"{x:.1f}",
        f"{y:.1f}",
        colour,
        title,
    )


def series_lines_svg(
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    low: float,
    high: float,
    percent: bool = False,
    better: str = "higher",
    empty: str = "No data yet.",
    width: int = 560,
    height: int = 210,
) -> SafeString:
    """Several lines over the same x labels (weeks, say) on a fixed y range, with a legend.

    `better` ("higher", "lower", or "" for neither) goes into the caption. A missing value
    (None) breaks its line instead of being drawn as zero. `percent` shows values (shares from
    0 to 1) as percentages. The description lists every value, so a screen reader gets what
    the picture shows.
    """
    if not x_labels or not any(v is not None for s in series for v in s.values):
        return format_html('<p class="help">{}: {}</p>', title, empty)

    def fmt(value: float) -> str:
        return f"{value:.0%}" if percent else f"{value:.2f}"

    legend_h = 16 * ((len(series) + 2) // 3)
    pad_left, pad_right, pad_top, pad_bottom = 42, 26, 24 + legend_h, 26
    inner_w, inner_h = width - pad_left - pad_right, height - pad_top - pad_bottom
    span = (high - low) or 1.0
    step = inner_w / (len(x_labels) - 1) if len(x_labels) > 1 else 0.0

    def x_at(i: int) -> float:
        return pad_left + (step * i if len(x_labels) > 1 else inner_w / 2)

    def y_at(value: float) -> float:
        clamped = min(max(value, low), high)
        return pad_top + inner_h * (1 - (clamped - low) / span)

    grid = format_html_join(
        "",
        '<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#e5e7eb"/>'
        '<text x="{tx}" y="{ty}" font-size="10" fill="#374151" text-anchor="end">{text}</text>',
        (
            {
                "x1": pad_left,
                "x2": width - pad_right,
                "y": f"{y_at(value):.1f}",
                "tx": pad_left - 4,
                "ty": f"{y_at(value) + 3:.1f}",
                "text": fmt(value),
            }
            for value in (low, (low + high) / 2, high)
        ),
    )
    every = max(1, -(-len(x_labels) // 8))  # at most about 8 x labels, so they never overlap
    x_axis = format_html_join(
        "",
        '<text x="{}" y="{}" font-size="10" fill="#374151" text-anchor="middle">{}</text>',
        (
            (f"{x_at(i):.1f}", height - 8, label)
            for i, label in enumerate(x_labels)
            if i % every == 0 or i == len(x_labels) - 1
        ),
    )
    lines, legend, described = [], [], []
    for n, one in enumerate(series):
        colour, shape, dash = SERIES_STYLES[n % len(SERIES_STYLES)]
        counts = one.counts or [None] * len(one.values)
        segments: list[list[str]] = [[]]
        markers = []
        said = []
        for i, (value, count) in enumerate(zip(one.values, counts, strict=True)):
            if value is None:
                segments.append([])
                continue
            x, y = x_at(i), y_at(value)
            segments[-1].append(f"{x:.1f},{y:.1f}")
            text = fmt(value) + (f" (n={count})" if count is not None else "")
            markers.append(_marker(shape, x, y, colour, f"{one.label}, {x_labels[i]}: {text}"))
            said.append(f"{x_labels[i]} {text}")
        for points in segments:
            if len(points) > 1:
                lines.append(
                    format_html(
                        '<polyline fill="none" stroke="{}" stroke-width="1.8" '
                        'stroke-dasharray="{}" points="{}"/>',
                        colour,
                        dash or "none",
                        " ".join(points),
                    )
                )
        lines.extend(markers)
        lx, ly = pad_left + (n % 3) * (inner_w / 3), 30 + 16 * (n // 3)
        legend.append(
            format_html(
                '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="1.8" '
                'stroke-dasharray="{}"/>{}<text x="{}" y="{}" font-size="11" fill="#1f2937">{}'
                "</text>",
                f"{lx:.1f}",
                ly - 4,
                f"{lx + 22:.1f}",
                ly - 4,
                colour,
                dash or "none",
                _marker(shape, lx + 11, ly - 4, colour, one.label),
                f"{lx + 28:.1f}",
                ly,
                Truncator(one.label).chars(28),
            )
        )
        described.append(f"{one.label}: " + (", ".join(said) or "no data"))
    caption = f"{title} ({better} is better)" if better else title
    which_way = (
        format_html(
            '<text x="{}" y="15" font-size="10" fill="#374151" text-anchor="end">{} is better'
            "</text>",
            width - pad_right,
            better,
        )
        if better
        else ""
    )
    return format_html(
        '<svg role="img" aria-labelledby="{id}-t {id}-d" width="{w}" height="{h}" '
        'viewBox="0 0 {w} {h}" class="chart" style="background:#fff;border:1px solid #ccc;'
        'border-radius:4px">'
        '<title id="{id}-t">{caption}</title><desc id="{id}-d">{description}</desc>'
        '<text x="8" y="15" font-size="11" font-weight="bold" fill="#1f2937">{title}</text>'
        "{which_way}{grid}{x_axis}{legend}{lines}</svg>",
        id=_chart_id(title),
        w=width,
        h=height,
        caption=caption,
        description="; ".join(described),
        title=title,
        which_way=which_way,
        grid=grid,
        x_axis=x_axis,
        legend=format_html_join("", "{}", ((item,) for item in legend)),
        lines=format_html_join("", "{}", ((item,) for item in lines)),
    )


def threshold_tradeoff_svg(
    curve: Sequence[Sequence[float]],
    chosen: float,
    *,
    width: int = 520,
    height: int = 200,
) -> SafeString:
    """Two rates against the decline threshold, the chosen one marked: the share of in-scope
    questions declined (rises with it) and of off-topic questions answered (falls with it).

    ``curve``: [threshold, in-scope declined, off-topic answered] rows, thresholds increasing.
    """
    if len(curve) < 2:
        return format_html('<p class="help">{}</p>', "No calibration yet.")
    pad_left, pad_right, pad_top, pad_bottom = 40, 12, 12, 34
    inner_w, inner_h = width - pad_left - pad_right, height - pad_top - pad_bottom
    low, high = curve[0][0], curve[-1][0]

    def x(threshold: float) -> float:
        return pad_left + inner_w * (threshold - low) / ((high - low) or 1.0)

    def y(share: float) -> float:
        return pad_top + inner_h * (1 - share)

    declined = " ".join(f"{x(t):.1f},{y(d):.1f}" for t, d, _ in curve)
    answered = " ".join(f"{x(t):.1f},{y(a):.1f}" for t, _, a in curve)
    at = min(curve, key=lambda row: abs(row[0] - chosen))
    description = (
        f"At the threshold {chosen:.3f}, {at[1]:.1%} of in-scope questions are declined and "
        f"{at[2]:.1%} of off-topic questions answered. A higher threshold declines more of both."
    )
    return format_html(
        '<svg role="img" aria-labelledby="{id}-t {id}-d" width="{w}" height="{h}" '
        'viewBox="0 0 {w} {h}" class="chart" style="background:#fff;border:1px solid #ccc;'
        'border-radius:4px">'
        '<title id="{id}-t">Decline threshold: what it trades off</title>'
        '<desc id="{id}-d">{description}</desc>'
        '<text x="4" y="{top_label}" font-size="10" fill="#374151">100%</text>'
        '<text x="4" y="{base}" font-size="10" fill="#374151">0%</text>'
        '<line x1="{pl}" y1="{base}" x2="{right}" y2="{base}" stroke="#bbb"/>'
        '<text x="{pl}" y="{axis}" font-size="10" fill="#374151">{low}</text>'
        '<text x="{right}" y="{axis}" font-size="10" fill="#374151" text-anchor="end">{high}'
        "</text>"
        '<polyline fill="none" stroke="#b45309" stroke-width="1.8" points="{declined}"/>'
        '<polyline fill="none" stroke="#1d4ed8" stroke-width="1.8" stroke-dasharray="5 3" '
        'points="{answered}"/>'
        '<line x1="{cx}" y1="{pt}" x2="{cx}" y2="{base}" stroke="#111827" stroke-width="1.2"/>'
        '<text x="{cx}" y="{axis}" font-size="10" fill="#111827" text-anchor="middle">{chosen}'
        "</text>"
        '<text x="{pl}" y="{legend}" font-size="10" fill="#b45309">— in-scope declined</text>'
        '<text x="{legend_x}" y="{legend}" font-size="10" fill="#1d4ed8">- - off-topic answered'
        "</text></svg>",
        id=_chart_id(f"threshold-{chosen}"),
        w=width,
        h=height,
        description=description,
        top_label=pad_top + 4,
        base=pad_top + inner_h,
        pl=pad_left,
        pt=pad_top,
        right=width - pad_right,
        axis=pad_top + inner_h + 12,
        legend=height - 4,
        legend_x=pad_left + 150,
        low=f"{low:.2f}",
        high=f"{high:.2f}",
        declined=declined,
        answered=answered,
        cx=f"{x(chosen):.1f}",
        chosen=f"{chosen:.3f}",
    )
