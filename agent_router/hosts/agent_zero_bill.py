"""The bill where an Agent Zero user looks: one line in the chat after each reply, and the Costs view's data.

`mark` (monologue_start) remembers the ledger's last row id; `post` (monologue_end) reads this
conversation's rows after it and writes one info item to the chat log: this reply's cost, the chat's total,
the saving against every call on the premium tier, and the tier (and model) that answered; budget alerts
raised meanwhile follow as warnings. Only the top agent (number 0) writes the line; a subordinate's calls are
in its superior's reply (same chat).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from ..hookspecs import hookimpl

log = logging.getLogger("agent_router.agent_zero")
ALERTS_PLUGIN = "agent_router.agent_zero.alerts"
_MARK = "_agent_router_mark"
_BY = {"chat": "conversation", "day": "day", "model": "model", "tier": "tier"}


class AlertQueue:
    """Budget alerts as the ledger raises them, until the next cost line shows them (bounded)."""

    items: deque[dict[str, Any]] = deque(maxlen=20)
    lock = threading.Lock()

    @hookimpl
    def on_budget_alert(self, alert: dict[str, Any]) -> None:
        with self.lock:
            self.items.append(dict(alert))

    @classmethod
    def drain(cls) -> list[dict[str, Any]]:
        with cls.lock:
            out = list(cls.items)
            cls.items.clear()
        return out


def _ph(store: Any) -> str:
    return "%s" if type(store).__name__ == "PostgresStore" else "?"


def _last_id(rt: Any) -> int:
    rows = rt.ledger.store.read("SELECT COALESCE(MAX(id), 0) AS m FROM calls")
    return int(rows[0]["m"] or 0)


def mark(rt: Any, agent: Any) -> None:
    if getattr(agent, "number", 0) == 0:
        agent.data[_MARK] = _last_id(rt)


def _usd(x: float) -> str:
    return f"${x:.4f}" if x < 1 else f"${x:.2f}"


def line(rt: Any, conversation_id: str, since_id: int) -> tuple[str, list[dict[str, Any]]] | None:
    """(the cost line, this reply's rows) or None when the reply made no recorded call."""
    store = rt.ledger.store
    ph = _ph(store)
    cols = "id, kind, tier, model, cost_usd, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens"
    turn = store.read(
        f"SELECT {cols} FROM calls WHERE conversation_id = {ph} AND id > {ph} ORDER BY id",
        [conversation_id, since_id],
    )
    calls = [r for r in turn if r["kind"] in ("chat", "utility")]
    if not calls:
        return None
    (tot,) = store.read(
        f"""SELECT COALESCE(SUM(cost_usd), 0) AS cost, COALESCE(SUM(input_tokens), 0) AS i,
            COALESCE(SUM(output_tokens), 0) AS o, COALESCE(SUM(cached_input_tokens), 0) AS c,
            COALESCE(SUM(cache_write_tokens), 0) AS w FROM calls WHERE conversation_id = {ph}""",
        [conversation_id],
    )
    _, premium = rt.ledger.premium_price()
    all_premium = premium.cost(int(tot["i"]), int(tot["o"]), int(tot["c"]), int(tot["w"]))
    total = float(tot["cost"])
    cost = sum(float(r["cost_usd"] or 0) for r in turn)
    answered = next((r for r in reversed(calls) if r["kind"] == "chat"), calls[-1])
    saved = all_premium - total
    pct = f" ({saved / all_premium:.0%})" if all_premium > 0 and saved > 0 else ""
    text = (
        f"this reply {_usd(cost)} ({len(calls)} call{'s' if len(calls) != 1 else ''}; answered by the "
        f"{answered['tier'] or '?'} tier, {answered['model']}) · this chat {_usd(total)} · "
        f"saved {_usd(max(saved, 0.0))}{pct} against all-premium"
    )
    return text, turn


def post(rt: Any, agent: Any) -> None:
    """The cost line (and budget alerts) in the chat log after a reply."""
    if getattr(agent, "number", 0) != 0:
        return
    since = agent.data.pop(_MARK, None)
    alerts = AlertQueue.drain()
    show = _show_line(agent)
    log_ = agent.context.log
    if since is not None and show:
        got = line(rt, rt.adapter.conversation_id(agent), int(since))
        if got is not None:
            log_.log(type="info", heading="agent_router: cost", content=got[0])
    for a in alerts:
        log_.log(
            type="warning",
            heading="agent_router: budget alert",
            content=(
                f"{a.get('budget', '?')} budget {a.get('period', '')} at {round(float(a.get('threshold', 0)) * 100)}%:"
                f" {_usd(float(a.get('spent_usd', 0)))} of {_usd(float(a.get('limit_usd', 0)))}"
            ),
        )


def _show_line(agent: Any) -> bool:
    try:
        from helpers import plugins  # Agent Zero v1.x: the user may turn the line off
    except ImportError:
        return True
    try:
        cfg = plugins.get_plugin_config("agent_router", agent=agent) or {}
    except Exception:  # noqa: BLE001 - the line is a convenience; never fail a reply over it
        return True
    return bool(cfg.get("show_cost_line", True)) if isinstance(cfg, dict) else True


def costs_view(rt: Any, query: dict[str, Any]) -> dict[str, Any]:
    """Totals grouped by chat, day, model or tier (`by`), over `since` (e.g. 7d, today, month; default all)."""
    from ..errors import AgentRouterError
    from ..ledger.reports import costs

    if rt is None:
        return {"ok": False, "error": "agent_router has no valid settings (see the chat log)."}
    by = str(query.get("by") or "chat")
    if by not in _BY:
        return {"ok": False, "error": f"by: {by[:40]!r} is not one of {', '.join(_BY)}"}
    try:
        report = costs(rt.ledger, by=_BY[by], since=str(query.get("since") or "") or None)
    except AgentRouterError as e:
        return {"ok": False, "error": str(e)}
    names = _chat_names() if by == "chat" else {}
    for r in report["rows"]:
        r["label"] = names.get(str(r["key"]), r["key"]) if by == "chat" else r["key"]
    return {**report, "ok": True, "by": by}


def _chat_names() -> dict[str, str]:
    try:
        from agent import AgentContext  # Agent Zero: the chats open in this process
    except ImportError:
        return {}
    try:
        return {str(c.id): str(c.name or c.id) for c in AgentContext.all()}
    except Exception:  # noqa: BLE001 - names are a nicety; ids still identify the chats
        return {}
