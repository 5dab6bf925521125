"""Implicit verdicts in the agent's loop: a retry of the same request, a tool that fails on the answer and an
escalation with switch_model become implicit bad feedback rows in the ledger, and learned routing moves.

Driven through the reference loop against a real local OpenAI-compatible server (127.0.0.1) whose scripted
replies make the agent retry, call a failing tool and escalate."""

from __future__ import annotations

import json

import pytest

from agent_router.builtins.host_loop import tool_failed
from agent_router.demo.server import DemoServer
from agent_router.messages import text_of
from agent_router.providers import ProviderClient
from agent_router.runtime import core as rtmod
from agent_router.runtime.loop import ReferenceAgent, ToolResponse, provider_complete

from .host_fixtures import make_runtime, rows, settings_for

HELLO = "hi, thanks!"


def _tool(name: str, **args: object) -> str:
    return json.dumps({"tool_name": name, "tool_args": args})


def scripted(model: str, messages: list[dict]) -> str:
    """The model's side of the session: answer; asked again, call a tool; it fails: escalate; then answer."""
    last = text_of(messages[-1])
    if last.startswith("[tool lookup]"):
        return _tool("switch_model", tier="premium", reason="the lookup failed; this needs a stronger model")
    if last.startswith("[tool switch_model]"):
        return _tool("response", text="Here is a better answer.")
    asked = sum(1 for m in messages if m["role"] == "user" and text_of(m) == HELLO)
    if asked >= 2:
        return _tool("lookup", q="greeting")
    return _tool("response", text="Hello!")


def _lookup(q: str) -> str:
    raise ConnectionError(f"search backend unreachable for {q!r}")


def _session(tmp_path, **over):
    srv = DemoServer(scripted).start()
    s = settings_for(srv.base_url, tmp_path / "l.db", **over)
    rt = make_runtime(s)
    rtmod.activate(rt)
    return srv, s, rt


def test_retry_tool_error_and_escalation_are_implicit_bad_verdicts_that_move_learned_routing(tmp_path):
    # The session runs on the chat tier (manual strategy, so the tiers of its calls do not depend on the
    # weights); learned routing is on, so its adaptive estimator reads the verdicts.
    srv, s, rt = _session(
        tmp_path,
        learned={"enabled": True},
        tool_policy={"max_tier": "premium"},
        routing={"strategy": "manual", "manual_model": "mini"},
    )
    # The runtime's own router holds the learned router the verdicts must reach (its analysis is computed even
    # under the manual strategy).
    auto = rt.router
    hello = [{"role": "user", "content": HELLO}]
    try:
        before = auto.route(hello)
        assert not any(r.startswith("adaptive:") for r in before.analysis.reasons)
        with ProviderClient(s, catalog=rt.catalog) as client:
            agent = ReferenceAgent(rt, provider_complete(client), tools={"lookup": _lookup}, conversation_id="c1")
            first = agent.run_turn(HELLO)
            assert first.reply == "Hello!"
            retry = agent.run_turn(HELLO)  # the user was not satisfied and asks again
    finally:
        srv.stop()
    assert retry.reply == "Here is a better answer."
    assert [t[0] for t in retry.tools] == ["lookup", "switch_model"]
    assert retry.tools[0][2].startswith("Tool lookup failed: ConnectionError")
    assert retry.tools[1][2].startswith("Switched to the premium tier")

    calls = [(r["id"], r["kind"], r["tier"]) for r in rows(tmp_path / "l.db")]
    assert calls == [(1, "chat", "chat"), (2, "chat", "chat"), (3, "chat", "chat"), (4, "tool", "premium"),
                     (5, "chat", "premium")]
    outcomes = list(rt.ledger.outcomes())
    got = [(o["call_id"], o["good"], o["source"], o["signal"]) for o in outcomes]
    # Call 1 answered the first sending (the retry judged it), call 2 called the tool that failed, call 3
    # asked for a stronger model; call 5, the answer after the switch, has no verdict.
    assert got == [
        (1, False, "implicit", "retry"),
        (2, False, "implicit", "tool_error"),
        (3, False, "implicit", "switch_model"),
    ]
    assert all(o["task_type"] == "chat" and o["tier"] == "chat" for o in outcomes)

    # The verdicts reached the learned router at once (no wait for its periodic sync): the cheap tier is now
    # trusted less for chat requests, so the same request needs premium more.
    after = auto.route(hello)
    assert after.analysis.features["need"] > before.analysis.features["need"]
    assert after.analysis.score > before.analysis.score
    assert any(r.startswith("adaptive: outcomes for chat moved need") for r in after.analysis.reasons)
    weak = auto.learned.estimator.summary()["chat"]["weak"]
    assert weak["outcomes"] == pytest.approx(1.5)  # three implicit verdicts at half weight each


def test_steps_of_one_turn_are_not_a_retry_and_a_new_request_is_not_either(tmp_path):
    srv, s, rt = _session(tmp_path)
    try:
        with ProviderClient(s, catalog=rt.catalog) as client:
            agent = ReferenceAgent(
                rt, provider_complete(client), tools={"lookup": lambda q: f"found {q}"}, conversation_id="c2"
            )
            agent.run_turn(HELLO)
            agent.run_turn("Write a haiku about routers.")
            # The same text again, but not right after itself: the previous request was different.
            agent.run_turn(HELLO)
    finally:
        srv.stop()
    assert list(rt.ledger.outcomes()) == []


def test_a_switch_to_a_lower_tier_or_back_to_auto_is_no_verdict(tmp_path):
    srv, s, rt = _session(tmp_path, routing={"strategy": "manual", "manual_model": "sonnet"})
    try:
        with ProviderClient(s, catalog=rt.catalog) as client:
            agent = ReferenceAgent(rt, provider_complete(client), conversation_id="c3")
            agent.run_turn("Summarize our plan.")
            from agent_router.runtime.switch import switch_model

            assert switch_model(rt, "c3", {"tier": "utility", "reason": "plain formatting"}).accepted
            assert switch_model(rt, "c3", {"auto": True, "reason": "back to routing"}).accepted
    finally:
        srv.stop()
    assert list(rt.ledger.outcomes()) == []


def test_tool_failed_reads_error_flags_exceptions_and_error_texts():
    assert tool_failed(ToolResponse("Tool x failed: boom", "boom"))
    assert not tool_failed(ToolResponse("42 files found"))
    assert tool_failed(ValueError("bad"))
    assert tool_failed({"message": "ok", "error": "timeout"})
    # Agent Zero's Response carries text only: a traceback or an output that opens with an error is a failure.
    assert tool_failed(type("Response", (), {"message": 'Traceback (most recent call last):\n  File "x"'})())
    assert tool_failed("Error: file not found")
    assert tool_failed("[error] command exited with 2")
    assert not tool_failed("Errors are counted in column 3; none today.")
    assert not tool_failed("The request failed earlier but now works")


def test_a_verdict_that_cannot_be_recorded_does_not_break_the_turn(tmp_path, caplog):
    srv, s, rt = _session(tmp_path)
    try:
        with ProviderClient(s, catalog=rt.catalog) as client:
            agent = ReferenceAgent(rt, provider_complete(client), tools={"lookup": _lookup}, conversation_id="c4")
            agent.run_turn(HELLO)
            rt.ledger.close()  # the ledger went away under the agent
            rt.signals.on_tool_error("c4")
    finally:
        srv.stop()
    assert "implicit verdict 'tool_error' on call 1 not recorded" in caplog.text
