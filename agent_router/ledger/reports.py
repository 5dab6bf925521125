"""Cost reports: totals grouped by model, tier, task type, conversation, day or tool, with what routing saved.

The saving is measured against "every call on the premium tier": the same tokens (cached ones as cached)
priced at the premium tier's first model. Prices are linear in tokens, so group sums are priced directly.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .budgets import iso
from .errors import LedgerError
from .stores.base import GROUPS

if TYPE_CHECKING:
    from .core import Ledger

BY_CHOICES: tuple[str, ...] = ("model", "tier", "task_type", "conversation", "day", "tool", "kind", "arm", "agent")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | datetime | date | None, now: datetime | None = None) -> str | None:
    """'7d', '24h', '30m', '2w', 'today', 'month', an ISO date or datetime -> the ledger's time format."""
    if value is None or value == "":
        return None
    now = now or datetime.now(UTC)
    if isinstance(value, datetime):
        return iso(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return iso(datetime(value.year, value.month, value.day, tzinfo=UTC))
    text = str(value).strip()
    m = _DURATION.match(text)
    if m:
        return iso(now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))}))
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if text == "today":
        return iso(day)
    if text == "month":
        return iso(day.replace(day=1))
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise LedgerError(
            f"--since: cannot read {text!r}; use a duration (30m, 24h, 7d, 2w), 'today', 'month', "
            "or an ISO date / datetime (2026-11-01, 2026-11-01T09:00)"
        ) from None
    return iso(t if t.tzinfo else t.replace(tzinfo=UTC))


def _priced(row: dict[str, Any], price: Any) -> float:
    return price.cost(
        row["input_tokens"], row["output_tokens"], row["cached_input_tokens"], row["cache_write_tokens"]
    )


def costs(ledger: Ledger, by: str | None = "model", since: str | datetime | None = None) -> dict[str, Any]:
    """Totals per group and overall: calls, tokens, cost, error rate, mean latency, premium cost, saving."""
    if by is not None and by not in GROUPS:
        raise LedgerError(f"--by: {by!r} is not one of {', '.join(BY_CHOICES)}")
    since_s = parse_since(since)
    premium_alias, premium = ledger.premium_price()
    verdicts = {v["key"]: v for v in ledger.store.verdicts_by_arm(since_s)} if by == "arm" else {}

    def finish(r: dict[str, Any]) -> dict[str, Any]:
        n = r["calls"] or 0
        prem = _priced(r, premium)
        out = {
            "key": r["key"],
            "calls": n,
            "input_tokens": int(r["input_tokens"]),
            "cached_input_tokens": int(r["cached_input_tokens"]),
            "cache_write_tokens": int(r["cache_write_tokens"]),
            "output_tokens": int(r["output_tokens"]),
            "reasoning_tokens": int(r["reasoning_tokens"]),
            "cost_usd": float(r["cost_usd"]),
            "error_rate": (r["errors"] or 0) / n if n else 0.0,
            "mean_latency_ms": None if r["mean_latency_ms"] is None else float(r["mean_latency_ms"]),
            "premium_cost_usd": prem,
            "routing_saved_usd": prem - float(r["cost_usd"]),
            "compression_tokens_saved": int(r["tokens_saved"]),
            "compression_saved_usd": float(r["saved_usd"]),
            "escalations": int(r["escalations"] or 0),
            "shadow_cost_usd": float(r["shadow_cost_usd"] or 0.0),
            "shadowed_estimate_usd": float(r["shadowed_estimate_usd"] or 0.0),
        }
        if by == "arm":
            v = verdicts.get(r["key"], {})
            out["good_verdicts"], out["bad_verdicts"] = int(v.get("good") or 0), int(v.get("bad") or 0)
        return out

    rows = [finish(r) for r in ledger.store.totals(by, since_s)]
    if by == "day":  # a time series reads in time order; other groupings by cost
        rows.sort(key=lambda r: r["key"] or "")
    total = [finish(r) for r in ledger.store.totals(None, since_s)]
    return {
        "by": by,
        "since": since_s,
        "premium_model": premium_alias,
        "rows": rows,
        "total": total[0] if total and total[0]["calls"] else None,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as an aligned text table."""
    head = (
        f"{report['by'] or 'all':<28} {'calls':>7} {'input':>11} {'cached':>10} {'output':>10} "
        f"{'cost $':>11} {'err %':>6} {'ms':>7} {'premium $':>11} {'saved $':>11}"
    )
    lines = [head, "-" * len(head)]

    def line(name: str, r: dict[str, Any]) -> str:
        lat = "-" if r["mean_latency_ms"] is None else f"{r['mean_latency_ms']:.0f}"
        return (
            f"{name[:28]:<28} {r['calls']:>7,} {r['input_tokens']:>11,} {r['cached_input_tokens']:>10,} "
            f"{r['output_tokens']:>10,} {r['cost_usd']:>11.4f} {100 * r['error_rate']:>6.1f} {lat:>7} "
            f"{r['premium_cost_usd']:>11.4f} {r['routing_saved_usd']:>11.4f}"
        )

    for r in report["rows"]:
        lines.append(line("(none)" if r["key"] is None else str(r["key"]), r))
    t = report["total"]
    if t is None:
        return f"no calls recorded{' since ' + report['since'] if report['since'] else ''}\n"
    lines += ["-" * len(head), line("TOTAL", t)]
    pct = 100 * t["routing_saved_usd"] / t["premium_cost_usd"] if t["premium_cost_usd"] else 0.0
    lines.append(
        f"routing saved ${t['routing_saved_usd']:.4f} ({pct:.1f}%) against every call on "
        f"{report['premium_model']} (premium tier)"
    )
    if report["by"] == "arm":
        lines += ["", "arm: escalations, verdicts (good/bad), and for shadow runs the challenger's estimate "
                  "beside the live one on the same calls"]
        for r in report["rows"]:
            shadow = (
                f"; shadow est. ${r['shadow_cost_usd']:.4f} vs live est. ${r['shadowed_estimate_usd']:.4f}"
                if r["shadow_cost_usd"] else ""
            )
            lines.append(
                f"  {'(none)' if r['key'] is None else r['key']}: {r['escalations']} escalation(s) in "
                f"{r['calls']} calls; verdicts {r['good_verdicts']}/{r['bad_verdicts']}{shadow}"
            )
    if t["compression_tokens_saved"]:
        lines.append(
            f"compression saved {t['compression_tokens_saved']:,} tokens, ${t['compression_saved_usd']:.4f}"
        )
    return "\n".join(lines) + "\n"
