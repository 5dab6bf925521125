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
