"""The opens-and-clicks chart of a delivery report, an inline SVG drawn on the server from
``reports.series``: the report needs no chart library and no script."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

CHART_W, CHART_H, PAD_L, PAD_B, PAD_T, PAD_R = 720, 220, 44, 28, 12, 12


def chart_svg(data: dict[str, Any]) -> SafeString:
    """An inline SVG line chart of opens (solid) and clicks (dashed), drawn on the server so
    the report needs no chart library and no script. Only numbers and escaped labels go into
    the markup."""
    points = data.get("points") or []
    if not points:
        return mark_safe("")
    top = max(max(o, c) for _t, o, c in points) or 1
    n = len(points)
    width = CHART_W - PAD_L - PAD_R
    height = CHART_H - PAD_T - PAD_B

    def x(i: int) -> float:
        return PAD_L + (width * i / (n - 1) if n > 1 else width / 2)

    def y(v: int) -> float:
        return PAD_T + height - height * v / top

    def line(col: int) -> str:
        return " ".join(f"{x(i):.1f},{y(p[col]):.1f}" for i, p in enumerate(points))

    def dots(col: int, color: str) -> SafeString:
        # Markers, so that a single bucket (or a spike) is visible as well as a line.
        return format_html_join(
            "",
            '<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}: {}</title></circle>',
            (
                (f"{x(i):.1f}", f"{y(p[col]):.1f}", color, _label_time(p[0], fmt), p[col])
                for i, p in enumerate(points)
            ),
        )

    fmt = "%m/%d" if data.get("unit") == "day" else "%m/%d %H:00"
    step = max(1, n // 6)
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" text-anchor="middle" font-size="10">{}</text>',
        ((f"{x(i):.1f}", CHART_H - 8, _label_time(points[i][0], fmt)) for i in range(0, n, step)),
    )
    title = _("Opens and clicks over time")
    return format_html(
        '<svg class="chart" role="img" aria-label="{title}" viewBox="0 0 {w} {h}" '
        'width="100%" preserveAspectRatio="xMidYMid meet" '
        'xmlns="http://www.w3.org/2000/svg">'
        "<title>{title}</title>"
        '<line x1="{l}" y1="{base}" x2="{r}" y2="{base}" stroke="#999"/>'
        '<line x1="{l}" y1="{t}" x2="{l}" y2="{base}" stroke="#999"/>'
        '<text x="{lx}" y="{ty}" text-anchor="end" font-size="10">{top}</text>'
        '<text x="{lx}" y="{base}" text-anchor="end" font-size="10">0</text>'
        '<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{opens}"/>'
        '<polyline fill="none" stroke="#d9480f" stroke-width="2" stroke-dasharray="5 3" '
        'points="{clicks}"/>{open_dots}{click_dots}{ticks}'
        '<text x="{r}" y="{ty}" text-anchor="end" font-size="11" fill="#1f6feb">{ol}</text>'
        '<text x="{r}" y="{ty2}" text-anchor="end" font-size="11" fill="#d9480f">{cl}</text>'
        "</svg>",
        title=title,
        w=CHART_W,
        h=CHART_H,
        l=PAD_L,
        r=CHART_W - PAD_R,
        t=PAD_T,
        base=PAD_T + height,
        lx=PAD_L - 4,
        ty=PAD_T + 8,
        ty2=PAD_T + 22,
        top=top,
        opens=line(1),
        clicks=line(2),
        open_dots=dots(1, "#1f6feb"),
        click_dots=dots(2, "#d9480f"),
        ticks=ticks,
        ol=_("Opens"),
        cl=_("Clicks"),
    )


def _label_time(iso: str, fmt: str) -> str:
    return timezone.localtime(datetime.fromisoformat(iso)).strftime(fmt)
