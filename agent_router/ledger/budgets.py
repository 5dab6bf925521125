"""Budgets from the ledger: per request, per conversation, per UTC day, per UTC month.

A check runs in one write transaction (BEGIN IMMEDIATE): it sums what was spent and what other callers have
reserved, decides, and reserves this call's estimate. N concurrent agents therefore cannot all see the same
headroom; the most a budget can be exceeded by is each in-flight call's real cost beyond its estimate.
Recording the call deletes its reservation in the same transaction; an unsettled one expires, and one whose
process is gone from this host (a crashed agent) is released by the next check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ..settings import BudgetSettings
from . import holders
from .stores.sqlite import SQLiteStore

Action = Literal["allow", "downgrade", "block"]
_SPEND_PREFIX = {"daily": "day", "monthly": "month", "conversation": "conversation"}


def iso(t: datetime) -> str:
    """The ledger's one time format: fixed width, so text order is time order."""
    return t.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Scope:
    budget: str  # daily | monthly | conversation
    period: str  # the day, the month, or the conversation id
    limit: float
    since: str | None = None  # reservations made since then count against it
    conversation_id: str | None = None

    @property
    def key(self) -> str:
        """Its key in the `spend` table."""
        return f"{_SPEND_PREFIX[self.budget]}:{self.period}"


@dataclass
class BudgetCheck:
    """The answer to "may this call go ahead?"."""

    action: Action
    remaining_usd: float | None  # headroom before this call; None = no budget applies
    reservation_id: str | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "remaining_usd": self.remaining_usd,
            "reservation_id": self.reservation_id,
            "reasons": self.reasons,
        }


def scopes(b: BudgetSettings, now: datetime, conversation_id: str | None) -> list[Scope]:
    out = []
    if b.per_conversation_usd is not None and conversation_id is not None:
        out.append(
            Scope("conversation", conversation_id, b.per_conversation_usd, conversation_id=conversation_id)
        )
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if b.daily_usd is not None:
        out.append(Scope("daily", day.strftime("%Y-%m-%d"), b.daily_usd, since=iso(day)))
    if b.monthly_usd is not None:
        out.append(Scope("monthly", day.strftime("%Y-%m"), b.monthly_usd, since=iso(day.replace(day=1))))
    return out


def headroom(store: SQLiteStore, scope: Scope, now: str) -> tuple[float, float]:
    """(limit - spent - reserved, spent) for one scope."""
    spent = store.spent(scope.key)
    held = store.reserved(now, scope.since, scope.conversation_id)
    return scope.limit - spent - held, spent


def decide(
    store: SQLiteStore,
    b: BudgetSettings,
    estimated: float,
    conversation_id: str | None,
    now: datetime,
    reservation_id: str | None,
    ttl_s: float,
) -> BudgetCheck:
    """Run inside store.write(): decide and, when allowed and `reservation_id` is given, reserve."""
    now_s = iso(now)
    store.purge_expired(now_s)
    release_dead(store)
    reasons: list[str] = []
    remaining: float | None = None
    for sc in scopes(b, now, conversation_id):
        room, spent = headroom(store, sc, now_s)
        if remaining is None or room < remaining:
            remaining = room
        if estimated > room:
            reasons.append(
                f"{sc.budget} budget {sc.period}: ${spent:.4f} spent + reserved, "
                f"${max(room, 0):.4f} left of ${sc.limit:.2f}; this call est. ${estimated:.4f}"
            )
    if reasons:
        action: Action = "downgrade" if b.on_exceed == "downgrade" and (remaining or 0) > 0 else "block"
        return BudgetCheck(action, max(0.0, remaining or 0.0), None, reasons)
    if remaining is not None and reservation_id is not None:
        store.add_reservation(
            reservation_id,
            conversation_id,
            estimated,
            now_s,
            iso(now + timedelta(seconds=ttl_s)),
            holders.me(),
        )
        return BudgetCheck("allow", remaining, reservation_id, [])
    return BudgetCheck("allow", remaining, None, [])


def dead_holders(store: SQLiteStore) -> list[tuple[int, str]]:
    """(pid, proc_start) of processes of this host that hold reservations but no longer run (crashed)."""
    return [(pid, start) for pid, start in store.holders_on(holders.host()) if holders.gone(pid, start)]


def release_dead(store: SQLiteStore) -> int:
    """Inside store.write(): drop the reservations of processes gone from this host; return how many holders."""
    dead = dead_holders(store)
    for pid, start in dead:
        store.release_holder(holders.host(), pid, start)
    return len(dead)


def crossed(store: SQLiteStore, b: BudgetSettings, conversation_id: str | None, now: datetime) -> list[dict]:
    """Inside the write that recorded a call: alerts for thresholds crossed for the first time."""
    alerts = []
    for sc in scopes(b, now, conversation_id):
        spent = store.spent(sc.key)
        for t in sorted(b.alert_thresholds):
            if spent >= t * sc.limit and store.mark_alert(
                # The limit is part of the key: another settings with another limit on this ledger alerts too.
                f"{sc.budget}|{sc.period}|{t:g}|{sc.limit!r}", sc.budget, sc.period, t, spent, sc.limit, iso(now)
            ):
                alerts.append(
                    {
                        "budget": sc.budget,
                        "period": sc.period,
                        "threshold": t,
                        "spent_usd": spent,
                        "limit_usd": sc.limit,
                        "conversation_id": sc.conversation_id,
                        "time": iso(now),
                    }
                )
    return alerts
