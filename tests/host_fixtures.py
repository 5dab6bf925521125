"""Shared helpers for the host-loop tests: settings on a local server, a runtime with a temporary ledger."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from agent_router.ledger import Ledger
from agent_router.plugins import load_plugins
from agent_router.runtime import core as rtmod
from agent_router.runtime.loop import ReferenceAdapter
from agent_router.settings import Settings


def settings_for(base_url: str, ledger_path: Path, **over: Any) -> Settings:
    """Three models on one OpenAI-compatible server (priced by the packaged table)."""

    def model(name: str) -> dict[str, Any]:
        return {"provider": "openai_compatible", "name": name, "base_url": base_url}

    data: dict[str, Any] = {
        "models": {
            "nano": model("gpt-4.1-nano"),
            "mini": model("gpt-4.1-mini"),
            "sonnet": model("claude-sonnet-4-5"),
        },
        "tiers": {"utility": ["nano"], "chat": ["mini"], "premium": ["sonnet"]},
        "ledger": {"path": str(ledger_path)},
        "providers": {"max_retries": 0},
        # The runtime tests expect the heuristic's tiers for their turns: pinned.
        "learned": {"enabled": False},
    }
    for k, v in over.items():
        data[k] = v
    return Settings.model_validate(data)


def make_runtime(settings: Settings) -> rtmod.Runtime:
    pm = load_plugins()
    return rtmod.Runtime(settings, ReferenceAdapter(), ledger=Ledger.from_settings(settings, pm=pm), pm=pm)


def rows(ledger_path: Path | str) -> list[dict[str, Any]]:
    """Every ledger row, oldest first, read with plain sqlite3 (as any other tool would)."""
    con = sqlite3.connect(str(ledger_path))
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("select * from calls order by id")]
    finally:
        con.close()
