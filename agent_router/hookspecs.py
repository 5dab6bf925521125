"""The pluggy contract of agent_router.

Two families of hooks. The seven host-loop hooks are named as Agent Zero names its extension points, so a host
forwards its events one-to-one (keyword arguments only). Extension hooks let third-party plugins change how
the pack analyzes, selects, summarizes, records and alerts, and add models, commands and eval scorers.
Every hook here is documented in docs/plugins.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "agent_router"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# What a `register_scorers` factory returns: (routing-eval rows, models cheapest first) -> one score per row,
# higher meaning "needs the stronger model".
Scorer = Callable[[list[dict[str, Any]], list[str]], list[float]]


# --- host-loop hooks -------------------------------------------------------------------------------------
@hookspec
def message_loop_start(agent: Any, loop_data: Any) -> None:
    """A new iteration of the agent's loop began: analyze the request and route it; keep the decision."""


@hookspec
def message_loop_prompts_after(agent: Any, loop_data: Any) -> None:
    """The host built its prompt (system + history): compress it to the chosen model's budget if needed."""


@hookspec
def chat_model_call_before(agent: Any, call_data: dict[str, Any]) -> None:
    """A chat-model call is about to be made: apply the decision (swap the model), check budgets, start timing."""


@hookspec
def chat_model_call_after(agent: Any, call_data: dict[str, Any], response: Any) -> None:
    """A chat-model call finished: record its usage and cost in the ledger."""


@hookspec
def util_model_call_before(agent: Any, call_data: dict[str, Any]) -> None:
    """A utility-model call (summaries, memory) is about to be made: route it (never above utility_max_tier)."""


@hookspec
def util_model_call_after(agent: Any, call_data: dict[str, Any], response: Any) -> None:
    """A utility-model call finished: record its usage and cost in the ledger."""


@hookspec
def tool_execute_after(agent: Any, tool_name: str, response: Any) -> None:
    """A tool the agent called finished: if its response says it failed, that is an implicit bad verdict on
    the answer that called it (feedback source "implicit", signal "tool_error")."""


# --- extension hooks -------------------------------------------------------------------------------------
@hookspec(firstresult=True)
def analyze(messages: list[dict[str, Any]], context: dict[str, Any]) -> Any:
    """Return an `Analysis` for these messages; the first plugin to return one wins (built-ins: the learned
    analyzer when `learned.enabled`, then the heuristic one). `context` carries the router's `settings`."""


@hookspec(firstresult=True)
def select_model(analysis: Any, candidates: list[Any], context: dict[str, Any]) -> Any:
    """Return the alias of the model to use among `candidates` (already filtered by constraints), or None
    to let the next plugin (finally the built-in strategy) decide."""


@hookspec(firstresult=True)
def summarize(messages: list[dict[str, Any]], budget: int) -> str | None:
    """Return a summary of `messages` in at most about `budget` tokens, or None to let the next plugin try."""


@hookspec
def on_usage(record: dict[str, Any]) -> None:
    """Called with each ledger row as it is written, for export to other systems."""


@hookspec
def on_budget_alert(alert: dict[str, Any]) -> None:
    """Called once each time spending crosses a budget threshold (by default 80% and 100%)."""


@hookspec
def register_models(register: Any) -> None:
    """Call `register(alias, config, tier=None)` to add a model to every catalog: `config` is a dict with the
    keys of a `models` entry in settings (provider, name, base_url, price, ...), `tier` one of utility / chat /
    premium (appended after that tier's models from settings) or None. A model the settings already name
    under the same alias keeps the settings' definition."""


@hookspec
def register_scorers(register: Any) -> None:
    """Call `register(name, factory, help="")` to add a router that `agent-router eval --router NAME` can
    score: `factory(settings_path)` returns a `Scorer`, `(rows, models) -> list[float]` with one score per
    routing-eval row (higher = needs the stronger model more)."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add subcommands to the `agent-router` click group."""
