"""Small server-side SVG charts for the admin (no JavaScript, no plotting library)."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html
from django.utils.safestring import SafeString


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
