"""Training rows for the learned router from a ledger: the calls whose prompt was stored (`ledger.store_prompts`)
and that got a verdict (`agent-router feedback`, `Ledger.add_feedback`, or an implicit signal).

Each row has the routing-eval shape bench/train_router.py takes, `{id, source, messages, quality, cost_usd}`,
with a quality for the side that answered only: `weak` (any tier below premium) or `strong` (premium), the
learned model's cheapest and strongest heads. An explicit verdict wins over implicit ones; among verdicts of
one source the latest wins. The other side's cost is estimated from what the ledger paid per token on that
side, so calibration can weigh the two; its quality is unknown and is left out (None).

The ledger is opened read-only: reading it never creates, migrates or locks it for writers.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from ..errors import InputError
from .adaptive import group_of

GROUPS = ("weak", "strong")


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise InputError(f"--ledger {path}: no such file")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        con.row_factory = sqlite3.Row
        con.execute("SELECT id, prompt, tier FROM calls LIMIT 1")
        con.execute("SELECT call_id, verdict, source FROM feedback LIMIT 1")
    except sqlite3.Error as e:
        raise InputError(f"--ledger {path}: not an agent_router ledger ({e})") from None
    return con


def _messages(prompt: str, where: str) -> list[dict[str, Any]]:
    try:
        msgs = json.loads(prompt)
    except json.JSONDecodeError:
        return [{"role": "user", "content": prompt}]  # a prompt stored as plain text
    if isinstance(msgs, list) and all(isinstance(m, dict) and "role" in m for m in msgs) and msgs:
        return msgs
    raise InputError(f"{where}: stored prompt is not a list of messages")


def ledger_rows(path: str | Path, names: tuple[str, str] = GROUPS) -> list[dict[str, Any]]:
    """Routing-eval rows from a ledger; `names` are the quality keys of the weak and strong side (e.g. the
    models of `--models`). An InputError says what the ledger lacks (stored prompts, verdicts)."""
    p = Path(path)
    con = _connect(p)
    try:
        prompted = con.execute(
            "SELECT COUNT(*) FROM calls WHERE prompt IS NOT NULL AND prompt != '' AND kind != 'tool'"
        ).fetchone()[0]
        if not prompted:
            raise InputError(
                f"--ledger {p}: no call has a stored prompt; turn on ledger.store_prompts in the settings and "
                "let the agent run (only calls recorded since then can be trained on)"
            )
        # Per side: USD per token over every model call, to price a request on the side that did not answer.
        rate: dict[str, float] = {}
        spent: dict[str, list[float]] = {g: [0.0, 0.0] for g in GROUPS}
        for r in con.execute(
            "SELECT tier, SUM(cost_usd) AS usd, SUM(input_tokens + output_tokens) AS tokens FROM calls "
            "WHERE kind != 'tool' GROUP BY tier"
        ):
            s = spent[group_of(r["tier"])]
            s[0] += r["usd"] or 0.0
            s[1] += r["tokens"] or 0
        for g, (usd, tokens) in spent.items():
            if tokens:
                rate[g] = usd / tokens
        judged = con.execute(
            """SELECT c.id, c.tier, c.prompt, c.cost_usd, c.input_tokens, c.output_tokens, f.verdict, f.source,
                      f.signal
               FROM calls c JOIN feedback f ON f.call_id = c.id
               WHERE c.prompt IS NOT NULL AND c.prompt != '' AND c.kind != 'tool'
               ORDER BY c.id, (f.source = 'explicit'), f.id"""
        ).fetchall()
    except sqlite3.Error as e:
        raise InputError(f"--ledger {p}: cannot read ({e})") from None
    finally:
        con.close()
    if not judged:
        raise InputError(
            f"--ledger {p}: {prompted} call(s) have a stored prompt but none has a verdict; give some with "
            "`agent-router feedback CALL_ID good|bad` (or let implicit signals collect: retries, switch_model "
            "escalations, failing tools)"
        )
    last: dict[int, sqlite3.Row] = {}
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
            "id": f"ledger:{p.name}:{cid}",
            "source": f"ledger/{r['source']}" + (f"/{r['signal']}" if r["signal"] else ""),
            "messages": _messages(r["prompt"], f"--ledger {p}: call {cid}"),
            "quality": {key: 1.0 if r["verdict"] == "good" else 0.0, other_key: None},
            "cost_usd": cost,
        })
    return out
