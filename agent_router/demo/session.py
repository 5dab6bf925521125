"""The offline demo session: a scripted multi-turn agent run, with real HTTP, usage and ledger rows.

A local OpenAI-compatible server on 127.0.0.1 (random free port; agent_router.demo.server) plays three models
(utility / chat / premium, priced by the packaged price table) with scripted, deterministic answers and real
token counts in `usage`. The reference agent loop (agent_router.runtime.loop) runs the session through the same
hooks a host fires: routing per turn, budgets checked before each call, a long tool output summarized by a
utility call, the agent calling `switch_model` (once refused by policy, once accepted), and a conversation
budget nearing its limit. Then it prints the ledger's cost table and the saving against sending every call
to the premium model. `agent-router demo` runs it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl
from ..ledger import Ledger, costs
from ..ledger.reports import format_table
from ..messages import text_of
from ..plugins import load_plugins
from ..providers import ProviderClient
from ..runtime import core as rtmod
from ..runtime.loop import ReferenceAdapter, ReferenceAgent, provider_complete
from ..settings import Settings
from .server import DemoServer

# The session: (user message, what it shows).
SCRIPT: list[tuple[str, str]] = [
    ("Hi! Thanks for yesterday, quick hello before we start.", "small talk"),
    (
        "Write a Python function parse_duration(s) that converts ISO 8601 durations such as 'P3DT4H5M' to "
        "seconds, raise ValueError on bad input, and add pytest unit tests for the edge cases.",
        "a coding task",
    ),
    (
        "Prove step by step that the sum of the first n odd numbers is n^2. Then analyze why the induction "
        "works, derive the closed form for the sum of the first n squares, compare both proofs with a "
        "combinatorial argument, evaluate the trade-offs of each proof style, and justify which one you "
        "would teach first.",
        "a hard reasoning task",
    ),
    ("Read build.log and tell me why the build failed.", "a long tool output (summarized by a utility call)"),
    ("Switch to the most expensive model you have and answer again.", "the agent asks for premium: refused"),
    (
        "Turn that into three short bullet points; a small model is enough for formatting.",
        "the agent switches down by itself: accepted",
    ),
    (
        "Now write a detailed, comprehensive design document for a rate limiter: analyze the architecture, "
        "compare three strategies step by step (token bucket, sliding window, GCRA), evaluate trade-offs, "
        "edge cases and failure modes under clock skew, derive the memory cost per key, and justify the "
        "final choice. It must never drop more than 0.1% of valid requests and must decide in under 2 ms.",
        "a premium-sized task while the budget nears its limit",
    ),
]

BUILD_LOG_LINES = 900
# Sized to the session: the premium proof fits, spend crosses 50% with it, and by the last turn the premium
# estimate no longer fits what is left, so that turn is downgraded and spend crosses 80%.
DEFAULT_BUDGET = 0.022


def build_log() -> str:
    """A long, deterministic build log with one real failure in the middle."""
    lines = []
    for i in range(BUILD_LOG_LINES):
        if i == 611:
            lines.append(
                "src/net/retry.c:142:9: error: implicit declaration of function 'backoff_ms' "
                "[-Werror=implicit-function-declaration]"
            )
        else:
            lines.append(f"[{i:04d}] CC src/module_{i % 37:02d}/unit_{i:04d}.o  (0.{(i * 7) % 100:02d}s)")
    lines.append("make: *** [Makefile:88: build] Error 1")
    return "\n".join(lines)


def _response(text: str) -> str:
    return json.dumps({"tool_name": "response", "tool_args": {"text": text}})


def _tool(name: str, **args: Any) -> str:
    return json.dumps({"tool_name": name, "tool_args": args})


def scripted_reply(model: str, messages: list[dict[str, Any]]) -> str:
    """The demo's models: deterministic answers in the agent's JSON tool protocol."""
    system = text_of(messages[0]) if messages and messages[0].get("role") == "system" else ""
    last = text_of(messages[-1])
    if system.startswith("Summarize this tool output"):
        errors = [ln for ln in last.splitlines() if "error" in ln.lower()]
        return f"{len(last.splitlines())} log lines; failures: " + " | ".join(errors[:3])
    if last.startswith("[tool read_file]"):
        return _response(
            f"({model}) The build failed at src/net/retry.c:142: `backoff_ms` is used without a "
            "declaration; include retry.h or declare it."
        )
    if last.startswith("[tool switch_model] Switch refused"):
        return _response(f"({model}) I stayed on the current model. {last.split('] ', 1)[1]}")
    if last.startswith("[tool switch_model]"):
        return _response(
            f"({model}) - retry.c:142 calls backoff_ms\n- it is never declared\n- include retry.h"
        )
    low = last.lower()
    if "build.log" in low:
        return _tool("read_file", path="build.log")
    if "most expensive" in low:
        return _tool("switch_model", tier="premium", reason="the user asked for the most expensive model")
    if "small model is enough" in low:
        return _tool(
            "switch_model", tier="utility", reason="plain formatting of a known answer", scope="next_turn"
        )
    return _response(_answer(model, last))


def _answer(model: str, request: str) -> str:
    """A deterministic answer whose length grows with the request, as real answers do (about 8 words out
    per word in, at most 900 words), so real usage lands near the router's output estimates."""
    words = request.split()
    n = min(900, 8 * len(words))
    out = [f"({model}) Answer to: {' '.join(words[:12])} ..."]
    k = 0
    while sum(len(x.split()) for x in out) < n:
        w = words[k % len(words)].strip(".,:;()'\"")
        out.append(f"Point {k + 1}: on '{w}', the relevant detail follows from the previous point.")
        k += 1
    return " ".join(out)


def demo_settings(base_url: str, ledger_path: str, budget_usd: float, overlay: Settings | None = None) -> Settings:
    """Three models on the local server, priced by the packaged table; a per-conversation budget. From
    `overlay` (the user's --settings) the routing experiment and the escalation section apply."""

    def model(name: str) -> dict[str, Any]:
        return {"provider": "openai_compatible", "name": name, "base_url": base_url}

    data: dict[str, Any] = {
            "models": {
                "nano": model("gpt-4.1-nano"),
                "mini": model("gpt-4.1-mini"),
                "sonnet": model("claude-sonnet-4-5"),
            },
            "tiers": {"utility": ["nano"], "chat": ["mini"], "premium": ["sonnet"]},
            # The scripted session routes on the heuristic analyzer (the built-in default is the learned
            # router), premium from complexity 0.6 (default 0.7), so it shows all three tiers and the downgrade.
            "routing": {"thresholds": {"low": 0.3, "high": 0.6}, "utility_max_tier": "utility"},
            "learned": {"enabled": False},
            "budgets": {
                "per_conversation_usd": budget_usd,
                "on_exceed": "downgrade",
                "alert_thresholds": [0.5, 0.8, 1.0],
            },
            "tool_policy": {"max_tier": "chat"},
            "ledger": {"path": ledger_path},
            "providers": {"max_retries": 0},
        }
    if overlay is not None:
        data["routing"]["experiments"] = [e.model_dump() for e in overlay.routing.experiments]
        data["escalation"] = overlay.escalation.model_dump()
    return Settings.model_validate(data)


class _Alerts:
    """Collects budget alerts fired by the ledger during the demo."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    @hookimpl
    def on_budget_alert(self, alert: dict[str, Any]) -> None:
        self.seen.append(alert)


def run_demo(
    ledger_path: str, budget_usd: float = DEFAULT_BUDGET, echo: Callable[[str], Any] = print, keep: bool = True,
    overlay: Settings | None = None,
) -> dict[str, Any]:
    """Run the scripted session, printing each turn with `echo`; return {"turns": [...], "report":
    costs(...), "alerts": [...], "requests": n}."""
    pm = load_plugins()
    # The demo prints alerts itself (from the on_budget_alert hook); the ledger's log line would repeat them.
    ledger_log = logging.getLogger("agent_router.ledger")
    level = ledger_log.level
    ledger_log.setLevel(logging.ERROR)
    alerts = _Alerts()
    pm.register(alerts, name="agent-router-demo-alerts")
    try:
        with DemoServer(scripted_reply) as srv:
            settings = demo_settings(srv.base_url, ledger_path, budget_usd, overlay)
            ledger = Ledger.from_settings(settings, pm=pm)
            rt = rtmod.Runtime(settings, ReferenceAdapter(), ledger=ledger, pm=pm, agent_name="demo")
            prev = rtmod.activate(rt)
            try:
                with ProviderClient(settings, catalog=rt.catalog, counter=rt.counter) as client:
                    agent = ReferenceAgent(
                        rt,
                        provider_complete(client),
                        tools={"read_file": _read_file},
                        conversation_id="demo",
                        summarize_over=1500,
                    )
                    turns = []
                    echo(
                        f"demo server: {srv.base_url}  (models: utility nano=gpt-4.1-nano, chat "
                        f"mini=gpt-4.1-mini, premium sonnet=claude-sonnet-4-5; conversation budget "
                        f"${budget_usd:.4f})"
                    )
                    for n, (text, what) in enumerate(SCRIPT, 1):
                        n_alerts = len(alerts.seen)
                        res = agent.run_turn(text)
                        turns.append(
                            {
                                "user": text,
                                "what": what,
                                "reply": res.reply,
                                "decisions": res.decisions,
                                "tools": res.tools,
                            }
                        )
                        _print_turn(echo, n, text, what, res, alerts.seen[n_alerts:])
                report = costs(ledger, by="model")
                echo("")
                echo(format_table(report).rstrip())
                echo(f"ledger: {ledger_path}" if keep else "ledger: temporary (use --ledger FILE to keep it)")
                ledger.close()
                return {
                    "turns": turns,
                    "report": report,
                    "alerts": list(alerts.seen),
                    "requests": len(srv.requests),
                }
            finally:
                rtmod.activate(prev)
    finally:
        pm.unregister(alerts)
        ledger_log.setLevel(level)


def _read_file(path: str) -> str:
    if path != "build.log":
        return f"no such file: {path}"
    return build_log()


def _print_turn(echo: Any, n: int, text: str, what: str, res: Any, alerts: list[dict[str, Any]]) -> None:
    echo("")
    echo(f"turn {n} ({what}): {text[:90]}{'...' if len(text) > 90 else ''}")
    for kind, ev in res.events:
        if kind == "call":
            echo(
                f"  {ev.get('kind', 'chat'):7} -> {ev['tier']:8} {ev['model']:7} est. ${ev['estimated_cost_usd']:.5f}"
            )
            for r in ev["reasons"]:
                echo(f"      - {r}")
        else:
            name, args, result = ev
            echo(f"  tool {name} {json.dumps(args)} -> {result[:110]}")
    for a in alerts:
        echo(
            f"  budget alert: {a['budget']} {a['period']} at {int(a['threshold'] * 100)}%: "
            f"${a['spent_usd']:.4f} of ${a['limit_usd']:.4f}"
        )
    echo(f"  reply: {res.reply[:140]}")
