"""A self-contained HTML cost report: inline SVG charts drawn here, no script, no fonts or files fetched.

Charts: cost per day (with the premium-tier equivalent), cost by model, cost by tier, and cumulative savings.
Every chart is an <svg class="chart" id="..."> whose bars / lines carry <title> tooltips.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

from .reports import costs

if TYPE_CHECKING:
    from .core import Ledger

PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
]
TIER_COLORS = {"utility": "#59a14f", "chat": "#4e79a7", "premium": "#e15759"}
ACTUAL, PREMIUM, SAVED = "#4e79a7", "#e15759", "#59a14f"


def _usd(x: float) -> str:
    return f"${x:,.4f}" if abs(x) < 1 else f"${x:,.2f}"


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(v))
    for step in (1, 2, 2.5, 5, 10):
        if step * mag >= v:
            return step * mag
    return v


def hbar_chart(cid: str, title: str, items: list[tuple[str, float, str]]) -> str:
    """Horizontal bars, one per (label, value, colour)."""
    row, left, width = 30, 190, 760
    h = 50 + row * max(1, len(items))
    top = max((v for _, v, _ in items), default=0.0)
    scale = (width - left - 110) / (top or 1)
    parts = [
        f'<svg class="chart" id="{cid}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" '
        f'viewBox="0 0 {width} {h}" role="img" aria-label="{escape(title)}">',
        f'<text x="10" y="22" class="t">{escape(title)}</text>',
    ]
    if not items:
        parts.append('<text x="10" y="50">no data</text>')
    for i, (label, v, colour) in enumerate(items):
        y = 36 + i * row
        w = max(1.0, v * scale)
        parts.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(label[:28])}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 8}" fill="{colour}">'
            f"<title>{escape(label)}: {_usd(v)}</title></rect>"
        )
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 16}">{_usd(v)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def day_chart(
    cid: str,
    title: str,
    days: list[str],
    bars: list[float],
    line: list[float],
    bar_label: str,
    line_label: str,
    cumulative: bool = False,
) -> str:
    """Bars per day with a line over them (e.g. actual cost vs the premium-tier equivalent)."""
    width, height, left, right, top, bottom = 1000, 340, 80, 20, 40, 60
    if cumulative:
        acc_b = acc_l = 0.0
        cb, cl = [], []
        for b, ln in zip(bars, line, strict=True):
            acc_b, acc_l = acc_b + b, acc_l + ln
            cb.append(acc_b)
            cl.append(acc_l)
        bars, line = cb, cl
    ymax = _nice_max(max([*bars, *line, 0.0]))
    pw, ph = width - left - right, height - top - bottom
    n = max(1, len(days))
    slot = pw / n
    y = lambda v: top + ph - (v / ymax) * ph  # noqa: E731
    parts = [
        f'<svg class="chart" id="{cid}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="10" y="22" class="t">{escape(title)}</text>',
    ]
    for k in range(5):
        v = ymax * k / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_usd(v)}</text>')
    if not days:
        parts.append(f'<text x="{left + 10}" y="{top + 30}">no data</text>')
    every = max(1, n // 12)
    for i, (d, b) in enumerate(zip(days, bars, strict=True)):
        x = left + i * slot
        bw = max(1.0, slot * 0.7)
        colour = SAVED if cumulative else ACTUAL
        parts.append(
            f'<rect x="{x + slot * 0.15:.1f}" y="{y(b):.1f}" width="{bw:.1f}" '
            f'height="{max(0.5, top + ph - y(b)):.1f}" fill="{colour}" opacity="0.85">'
            f"<title>{d}: {bar_label} {_usd(b)}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 18}" text-anchor="middle">{d[5:]}</text>'
            )
    if days:
        pts = " ".join(f"{left + (i + 0.5) * slot:.1f},{y(v):.1f}" for i, v in enumerate(line))
        parts.append(
            f'<polyline points="{pts}" fill="none" stroke="{PREMIUM}" stroke-width="3">'
            f"<title>{escape(line_label)}</title></polyline>"
        )
        for i, v in enumerate(line):
            parts.append(
                f'<circle cx="{left + (i + 0.5) * slot:.1f}" cy="{y(v):.1f}" r="4" fill="{PREMIUM}">'
                f"<title>{days[i]}: {escape(line_label)} {_usd(v)}</title></circle>"
            )
    lx = left
    for colour, label in ((SAVED if cumulative else ACTUAL, bar_label), (PREMIUM, line_label)):
        parts.append(
            f'<rect x="{lx}" y="{height - 22}" width="14" height="14" fill="{colour}"/>'
            f'<text x="{lx + 20}" y="{height - 10}">{escape(label)}</text>'
        )
        lx += 30 + 8 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def render(ledger: Ledger, since: str | datetime | None = None) -> str:
    """The whole page as one string."""
    by_day = costs(ledger, "day", since)
    by_model = costs(ledger, "model", since)
    by_tier = costs(ledger, "tier", since)
    total = by_day["total"]
    days = sorted(by_day["rows"], key=lambda r: r["key"] or "")
    day_keys = [r["key"] or "?" for r in days]
    actual = [r["cost_usd"] for r in days]
    premium = [r["premium_cost_usd"] for r in days]
    saved = [r["routing_saved_usd"] for r in days]
    model_items = [
        (str(r["key"]), r["cost_usd"], PALETTE[i % len(PALETTE)]) for i, r in enumerate(by_model["rows"])
    ]
    tier_items = [
        (str(r["key"] or "(none)"), r["cost_usd"], TIER_COLORS.get(r["key"] or "", "#9c755f"))
        for r in by_tier["rows"]
    ]
    prem = by_day["premium_model"]
    charts = [
        day_chart(
            "cost-over-time",
            "Cost per day (bars) vs. every call on the premium tier (line)",
            day_keys,
            actual,
            premium,
            "actual cost",
            f"all on {prem}",
        ),
        hbar_chart("cost-by-model", "Cost by model", model_items),
        hbar_chart("cost-by-tier", "Cost by tier", tier_items),
        day_chart(
            "savings",
            "Cumulative routing saving (bars) and premium-tier cost (line)",
            day_keys,
            saved,
            premium,
            "saved",
            f"all on {prem}",
            cumulative=True,
        ),
    ]
    if total:
        pct = (
            100 * total["routing_saved_usd"] / total["premium_cost_usd"] if total["premium_cost_usd"] else 0.0
        )
        summary = (
            f"<p><b>{total['calls']:,}</b> calls, <b>{total['input_tokens']:,}</b> input tokens "
            f"({total['cached_input_tokens']:,} cached), <b>{total['output_tokens']:,}</b> output tokens; "
            f"cost <b>{_usd(total['cost_usd'])}</b>; all on {escape(prem)} would have cost "
            f"<b>{_usd(total['premium_cost_usd'])}</b>: routing saved <b>{_usd(total['routing_saved_usd'])}"
            f"</b> ({pct:.1f}%). Error rate {100 * total['error_rate']:.1f}%.</p>"
        )
    else:
        summary = "<p>No calls recorded in this period.</p>"
    table = [
        "<table><tr><th>model</th><th>calls</th><th>input</th><th>cached</th><th>output</th><th>cost</th>"
        "<th>errors</th><th>mean ms</th><th>saved vs premium</th></tr>"
    ]
    for r in by_model["rows"]:
        lat = "-" if r["mean_latency_ms"] is None else f"{r['mean_latency_ms']:.0f}"
        table.append(
            f"<tr><td>{escape(str(r['key']))}</td><td>{r['calls']:,}</td><td>{r['input_tokens']:,}</td>"
            f"<td>{r['cached_input_tokens']:,}</td><td>{r['output_tokens']:,}</td>"
            f"<td>{_usd(r['cost_usd'])}</td><td>{100 * r['error_rate']:.1f}%</td><td>{lat}</td>"
            f"<td>{_usd(r['routing_saved_usd'])}</td></tr>"
        )
    table.append("</table>")
    period = f"since {escape(by_day['since'])}" if by_day["since"] else "all time"
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>agent-router cost report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }}
svg.chart {{ display: block; margin: 18px 0; background: #fafafa; border: 1px solid #e4e4e4; }}
svg.chart text {{ font: 12px sans-serif; fill: #333; }}
svg.chart text.t {{ font: bold 15px sans-serif; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ddd; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head><body>
<h1>agent-router cost report</h1>
<p>{escape(str(ledger.path))}, {period}; made {made}.</p>
{summary}
{"".join(charts)}
<h2>By model</h2>
{"".join(table)}
</body></html>
"""
