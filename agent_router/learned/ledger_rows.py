"""Training rows for the learned router from a ledger: the calls whose prompt was stored (`ledger.store_prompts`)
and that got a verdict (`agent-router feedback`, `Ledger.add_feedback`, or an implicit signal).

Each row has the routing-eval shape `agent-router train` takes, `{id, source, messages, quality, cost_usd}`,
with a quality for the side that answered only: `weak` (any tier below premium) or `strong` (premium), the
learned model's cheapest and strongest heads. An explicit verdict wins over implicit ones; among verdicts of
one source the latest wins. The other side's cost is estimated from what the ledger paid per token on that
side, so calibration can weigh the two; its quality is unknown and is left out (None).

The rows are read through the `Ledger` the caller holds (SQLite or PostgreSQL: the same reads on both).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import AgentRouterError, InputError
from .adaptive import group_of

if TYPE_CHECKING:
    from ..ledger import Ledger

GROUPS = ("weak", "strong")


def _messages(prompt: str, where: str) -> list[dict[str, Any]]:
    try:
        msgs = json.loads(prompt)
    except json.JSONDecodeError:
        return [{"role": "user", "content": prompt}]  # a prompt stored as plain text
    if isinstance(msgs, list) and all(isinstance(m, dict) and "role" in m for m in msgs) and msgs:
        return msgs
    raise InputError(f"{where}: stored prompt is not a list of messages")


def ledger_rows(ledger: Ledger, names: tuple[str, str] = GROUPS) -> list[dict[str, Any]]:
    """Routing-eval rows from a ledger; `names` are the quality keys of the weak and strong side (e.g. the
    models of `--models`). An InputError says what the ledger lacks (stored prompts, verdicts)."""
    where = f"ledger {ledger.path}"
    name = getattr(ledger.path, "name", None) or "ledger"
    store = ledger.store
    try:
        prompted = store.prompted_calls()
        if not prompted:
            raise InputError(
                f"{where}: no call has a stored prompt; turn on ledger.store_prompts in the settings and "
                "let the agent run (only calls recorded since then can be trained on)"
            )
        # Per side: USD per token over every model call, to price a request on the side that did not answer.
        rate: dict[str, float] = {}
        spent: dict[str, list[float]] = {g: [0.0, 0.0] for g in GROUPS}
        for r in store.spend_by_tier():
            s = spent[group_of(r["tier"])]
            s[0] += float(r["usd"] or 0.0)
            s[1] += int(r["tokens"] or 0)
        for g, (usd, tokens) in spent.items():
            if tokens:
                rate[g] = usd / tokens
        judged = store.judged_calls()
    except InputError:
        raise
    except AgentRouterError as e:
        raise InputError(f"{where}: cannot read training rows ({e})") from None
    if not judged:
        raise InputError(
            f"{where}: {prompted} call(s) have a stored prompt but none has a verdict; give some with "
            "`agent-router feedback CALL_ID good|bad` (or let implicit signals collect: retries, switch_model "
            "escalations, failing tools)"
        )
    last: dict[int, dict[str, Any]] = {}
    for r in judged:  # ordered so the verdict that counts comes last per call
        last[r["id"]] = r
    out: list[dict[str, Any]] = []
    for cid, r in last.items():
        side = group_of(r["tier"])
        other = GROUPS[1 - GROUPS.index(side)]
        key, other_key = names[GROUPS.index(side)], names[GROUPS.index(other)]
        tokens = (r["input_tokens"] or 0) + (r["output_tokens"] or 0)
        cost: dict[str, float] = {key: float(r["cost_usd"] or 0.0)}
        if other in rate:
            cost[other_key] = rate[other] * tokens
        out.append({
            "id": f"ledger:{name}:{cid}",
            "source": f"ledger/{r['source']}" + (f"/{r['signal']}" if r["signal"] else ""),
            "messages": _messages(r["prompt"], f"{where}: call {cid}"),
            "quality": {key: 1.0 if r["verdict"] == "good" else 0.0, other_key: None},
            "cost_usd": cost,
        })
    return out
