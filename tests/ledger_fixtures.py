"""Shared helpers for the ledger tests (imported by tests/test_ledger*.py and tests/test_usage.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy

from agent_router import hookspecs
from agent_router.ledger import Ledger
from agent_router.settings import Settings


class Recorder:
    """A plugin that keeps what the ledger hooks were called with."""

    def __init__(self) -> None:
        self.usage: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []

    @hookspecs.hookimpl
    def on_usage(self, record: dict[str, Any]) -> None:
        self.usage.append(record)

    @hookspecs.hookimpl
    def on_budget_alert(self, alert: dict[str, Any]) -> None:
        self.alerts.append(alert)


def plugin_manager(*plugins: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for p in plugins:
        pm.register(p)
    return pm


def settings(**budgets: Any) -> Settings:
    data: dict[str, Any] = {"budgets": budgets} if budgets else {}
    return Settings.model_validate(data)


def ledger(path: Path, pm: Any = None, **budgets: Any) -> Ledger:
    return Ledger(path, settings(**budgets), pm=pm or plugin_manager())


# Provider payloads as the APIs return them (whole, non-streamed responses).
OPENAI_RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4.1-mini-2025-04-14",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 12000,
        "completion_tokens": 900,
        "total_tokens": 12900,
        "prompt_tokens_details": {"cached_tokens": 8000},
        "completion_tokens_details": {"reasoning_tokens": 300},
    },
}
ANTHROPIC_RESPONSE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "usage": {
        "input_tokens": 1500,
        "cache_read_input_tokens": 20000,
        "cache_creation_input_tokens": 4000,
        "output_tokens": 700,
    },
}
GEMINI_RESPONSE = {
    "candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}}],
    "modelVersion": "gemini-2.5-flash",
    "usageMetadata": {
        "promptTokenCount": 10000,
        "cachedContentTokenCount": 6000,
        "candidatesTokenCount": 400,
        "thoughtsTokenCount": 1100,
        "totalTokenCount": 11500,
    },
}
# List prices in USD per million tokens (input, cached read, cache write, output), as published.
LIST_PRICES = {
    "gpt-4.1-mini": (0.40, 0.10, 0.40, 1.60),
    "claude-sonnet-4-5": (3.00, 0.30, 3.75, 15.00),
    "gemini-2.5-flash": (0.30, 0.03, 0.30, 2.50),
}


def list_cost(model: str, fresh: int, cached: int, write: int, output: int) -> float:
    i, c, w, o = LIST_PRICES[model]
    return (fresh * i + cached * c + write * w + output * o) / 1e6
