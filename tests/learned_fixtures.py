"""Small synthetic routing-eval rows for the learned-router tests: the cheap model fails the hard kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEAK, STRONG = "cheap-model", "strong-model"

HARD = [
    "Prove that the sum of the first {n} odd numbers is a perfect square, step by step.",
    "Solve for x: {n}x^2 - 7x + 3 = 0 and explain why the discriminant matters.",
    "Derive the expected value of the maximum of {n} uniform random variables.",
    "A train leaves at {n}:00 at 80 km/h; another at 90 km/h an hour later. When does it catch up? Show the math.",
]
EASY = [
    "Say hello to my friend number {n}.",
    "Thanks, that was helpful! See you {n} times.",
    "What colour is the sky on day {n}?",
    "Translate 'good morning' into French for guest {n}.",
]


def rows(n: int = 80) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        hard = i % 2 == 0
        tmpl = (HARD if hard else EASY)[(i // 2) % 4]
        out.append({
            "id": f"fixture-{i}",
            "source": "fixture/hard" if hard else "fixture/easy",
            "messages": [{"role": "user", "content": tmpl.format(n=i + 2)}],
            "quality": {WEAK: 0.0 if hard else 1.0, STRONG: 1.0},
            "cost_usd": {WEAK: 0.001, STRONG: 0.01},
        })
    return out


def write_rows(path: Path, n: int = 80) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(n)), encoding="utf-8")
    return path


def fill_ledger(led: Any, judge: bool = True, n: int = 48) -> list[int]:
    """Calls as an agent leaves them in `led` (a Ledger, any backend; prompts stored if its settings say so):
    the cheap tier fails the hard kind (users and signals said so), premium answers both; a few calls without a
    verdict, and a switch_model tool row. Returns the ids of the n calls (not of the last two rows)."""
    from agent_router.usage import counted

    ids = []
    for i in range(n):
        hard = i % 2 == 0
        text = (HARD if hard else EASY)[(i // 2) % 4].format(n=i + 2)
        premium = i % 4 in (1, 2)
        prompt = [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": text}]
        cid = led.record(
            "claude-sonnet-4-5" if premium else "gpt-4.1-mini", counted(40, 60), provider="anthropic"
            if premium else "openai", tier="premium" if premium else "chat", task_type="chat", prompt=prompt,
            conversation_id=f"c{i}",
        )
        ids.append(cid)
        if not judge:
            continue
        good = premium or not hard
        if i % 3 == 0:
            led.add_feedback(cid, good, "explicit")
        else:
            if not good:
                led.add_feedback(cid, False, "implicit", "retry")
            else:
                # A wrong implicit verdict that the user then corrects: the explicit one counts.
                led.add_feedback(cid, False, "implicit", "tool_error")
                led.add_feedback(cid, True, "explicit")
    led.record("switch_model", counted(0, 0), kind="tool", tool="switch_model", cost_usd=0.0)
    led.record("gpt-4.1-mini", counted(10, 5), provider="openai", tier="chat", prompt=[
        {"role": "user", "content": "no verdict on me"}])
    return ids
