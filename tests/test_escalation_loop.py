"""Escalation in the loop: the reference loop, the host-loop hooks and `agent-router ask` against a real local
OpenAI-compatible server whose cheap model fails in the ways the answer checks catch."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent_router import hookspecs  # noqa: F401  (plugins load the host-loop hooks)
from agent_router.builtins import host_loop
from agent_router.cli import cli
from agent_router.demo.server import DemoServer
from agent_router.messages import text_of
from agent_router.providers import ProviderClient
from agent_router.router import Router
from agent_router.runtime import core as rtmod
from agent_router.runtime.loop import ReferenceAgent, provider_complete
from agent_router.settings import Settings

from .host_fixtures import make_runtime, rows, settings_for

GOOD = '{"tool_name": "response", "tool_args": {"text": "%s"}}'
# What the cheap model (gpt-4.1-nano, the utility tier) answers to each request, by a word in it.
CHEAP: dict[str, Any] = {
    "broken": '{"tool_name": "response", "tool_args": {"text": "4",}}',  # a trailing comma: not JSON
    "truncated": ('{"tool_name": "response", "tool_args": {"text": "The capital of France is', "length"),
    "refusal": GOOD % "I'm sorry, but I can't help with that request.",
    "fine": GOOD % "cheap and right",
}


def reply(model: str, messages: list[dict[str, Any]]) -> Any:
    request = next(text_of(m) for m in reversed(messages) if m.get("role") == "user")
    if model == "gpt-4.1-nano":
        for word, answer in CHEAP.items():
            if word in request:
                return answer
    return GOOD % f"answered by {model}"


@pytest.fixture(autouse=True)
def _no_runtime_left():
    yield
    rtmod.activate(None)


def feedback(path: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(str(path))
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("select * from feedback order by id")]
    finally:
        con.close()


def run_turns(tmp_path: Path, prompts: list[str], **over: Any) -> tuple[list[Any], Path]:
    db = tmp_path / "l.db"
    with DemoServer(reply) as srv:
        s = settings_for(srv.base_url, db, escalation={"enabled": True}, **over)
        rt = make_runtime(s)
        rtmod.activate(rt)
        out = []
        with ProviderClient(s, catalog=rt.catalog) as client:
            for i, p in enumerate(prompts):
                agent = ReferenceAgent(rt, provider_complete(client), conversation_id=f"c{i}")
                out.append(agent.run_turn(p))
        rt.ledger.close()
    return out, db


@pytest.mark.parametrize(
    "word, check",
    [("broken", "json_unparseable"), ("truncated", "truncated"), ("refusal", "refusal")],
)
def test_a_failed_cheap_answer_is_reasked_one_tier_up_once_and_both_calls_are_linked(tmp_path, word, check):
    (turn,), db = run_turns(tmp_path, [f"hi, {word} please"])
    assert turn.reply == "answered by gpt-4.1-mini"  # the agent acted on the re-asked answer
    cheap, strong = rows(db)
    assert (cheap["tier"], cheap["model"]) == ("utility", "gpt-4.1-nano")
    assert (strong["tier"], strong["model"]) == ("chat", "gpt-4.1-mini")
    assert strong["escalated_from"] == cheap["id"] and cheap["escalated_from"] is None
    assert strong["conversation_id"] == cheap["conversation_id"] == "c0"
    why = " ".join(json.loads(cheap["reasons"]))
    assert f"answer check failed, re-asked on mini (chat): {check}" in why
    assert any(r.startswith(f"escalated from nano (utility): {check}") for r in json.loads(strong["reasons"]))
    (verdict,) = feedback(db)
    assert (verdict["call_id"], verdict["verdict"], verdict["signal"]) == (cheap["id"], "bad", "answer_check")
    assert [d["tier"] for d in turn.decisions] == ["utility", "chat"]
    assert turn.decisions[1]["escalated_from"] == cheap["id"]


def test_a_good_cheap_answer_is_not_escalated(tmp_path):
    (turn,), db = run_turns(tmp_path, ["hi, fine please"])
    assert turn.reply == "cheap and right"
    (row,) = rows(db)
    assert row["tier"] == "utility" and row["escalated_from"] is None
    assert feedback(db) == []


def test_escalation_off_keeps_the_failed_answer(tmp_path):
    db = tmp_path / "l.db"
    with DemoServer(reply) as srv:
        s = settings_for(srv.base_url, db)
        rt = make_runtime(s)
        rtmod.activate(rt)
        with ProviderClient(s, catalog=rt.catalog) as client:
            ReferenceAgent(rt, provider_complete(client), conversation_id="c").run_turn("hi, refusal please")
        rt.ledger.close()
    assert [r["model"] for r in rows(db)] == ["gpt-4.1-nano"]


def test_a_budget_that_cannot_pay_the_next_tier_keeps_the_answer_and_records_the_verdict(tmp_path):
    # nano's call fits the per-request limit, mini's does not: the escalation is routed like any other
    # choice, downgraded back to utility, so no second call is made.
    (turn,), db = run_turns(tmp_path, ["hi, refusal please"], budgets={"per_request_usd": 0.0002})
    assert "sorry" in turn.reply
    (row,) = rows(db)
    assert row["model"] == "gpt-4.1-nano"
    why = " ".join(json.loads(row["reasons"]))
    assert "answer check failed, kept (limits keep the call at utility" in why and "refusal" in why
    assert [f["signal"] for f in feedback(db)] == ["answer_check"]


def test_a_ceiling_bounds_the_escalation(tmp_path):
    # The top tier is never escalated above; a call already on premium is kept.
    db = tmp_path / "l.db"
    with DemoServer(lambda m, msgs: CHEAP["refusal"]) as srv:
        s = settings_for(srv.base_url, db, escalation={"enabled": True})
        rt = make_runtime(s)
        rtmod.activate(rt)
        rt.state("c").next_turn = {"tier": "premium", "reason": "test"}
        with ProviderClient(s, catalog=rt.catalog) as client:
            ReferenceAgent(rt, provider_complete(client), conversation_id="c").run_turn("hi there")
        rt.ledger.close()
    (row,) = rows(db)
    assert row["tier"] == "premium"
    assert "kept (premium is the top tier)" in " ".join(json.loads(row["reasons"]))


def test_a_streamed_answer_that_failed_sends_the_hosts_retry_one_tier_up(tmp_path):
    """Agent Zero streams the answer before the after-hook: the failed answer is a verdict and the host's own
    next call of that conversation (its retry of the step) goes one tier up, linked."""
    db = tmp_path / "l.db"
    with DemoServer(reply) as srv:
        s = settings_for(srv.base_url, db, escalation={"enabled": True})
        rt = make_runtime(s)
        rtmod.activate(rt)

        class Host(ReferenceAgent):  # a host loop that does not re-ask by itself: it retries the step
            def call_chat_model(self, messages: list[dict[str, Any]]) -> str:
                return self._chat_call(messages)

        with ProviderClient(s, catalog=rt.catalog) as client:
            agent = Host(rt, provider_complete(client), conversation_id="c", max_iterations=1)
            agent.run_turn("hi, refusal please")  # answered (badly) by nano; the host printed it
            assert rt.state("c").escalation is not None
            retry = agent.run_turn("hi, refusal please")  # the host's retry
        rt.ledger.close()
    first, second = rows(db)
    assert first["model"] == "gpt-4.1-nano" and second["model"] == "gpt-4.1-mini"
    assert second["escalated_from"] == first["id"]
    assert retry.reply == "answered by gpt-4.1-mini"
    assert [f["signal"] for f in feedback(db)] == ["answer_check"]  # the retry is no second verdict


def test_hybrid_sends_the_hardest_requests_straight_up():
    hard = "Prove that there are infinitely many primes, step by step, with a rigorous argument."
    base = Router(Settings()).route([{"role": "user", "content": hard}])
    assert base.tier != "premium"
    cut = math.floor(base.analysis.score * 1000) / 1000  # at or below the request's score
    s = Settings.model_validate(
        {"escalation": {"enabled": True, "mode": "hybrid", "hybrid_threshold": cut}}
    )
    d = Router(s).route([{"role": "user", "content": hard}])
    assert d.tier == "premium" and any(r.startswith("hybrid:") for r in d.reasons)
    easy = Router(s).route([{"role": "user", "content": "hi"}])
    assert easy.tier == "utility"  # below the threshold: the cheap try, checked
    off = Settings.model_validate(
        {"escalation": {"enabled": True, "mode": "escalate", "hybrid_threshold": cut}}
    )
    assert Router(off).route([{"role": "user", "content": hard}]).tier == base.tier


def settings_file(tmp_path: Path, base_url: str, **over: Any) -> Path:
    s = settings_for(base_url, tmp_path / "l.db", **over)
    p = tmp_path / "settings.json"
    p.write_text(s.model_dump_json(by_alias=True, exclude_none=True))
    return p


def test_ask_reasks_a_refused_answer_one_tier_up(tmp_path):
    with DemoServer(reply) as srv:
        p = settings_file(tmp_path, srv.base_url, escalation={"enabled": True})
        res = CliRunner().invoke(cli, ["ask", "hi, refusal please", "--settings", str(p), "--json"])
        text = CliRunner().invoke(cli, ["ask", "hi, truncated please", "--settings", str(p)])
        fine = CliRunner().invoke(cli, ["ask", "hi, fine please", "--settings", str(p)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["answer"] == GOOD % "answered by gpt-4.1-mini" and out["model"] == "mini"
    assert out["escalation"]["escalate"] and out["escalation"]["first_answer"]["model"] == "nano"
    assert out["escalation"]["reasons"][0].startswith("refusal:")
    assert text.exit_code == 0, text.output
    assert "answer check failed on nano: truncated" in text.output and "re-asked on mini (chat)" in text.output
    assert fine.exit_code == 0 and "answer check failed" not in fine.output
    r = rows(tmp_path / "l.db")
    assert [x["model"] for x in r] == ["gpt-4.1-nano", "gpt-4.1-mini"] * 2 + ["gpt-4.1-nano"]
    assert r[1]["escalated_from"] == r[0]["id"] and r[3]["escalated_from"] == r[2]["id"]
    assert r[4]["escalated_from"] is None
    assert [f["call_id"] for f in feedback(tmp_path / "l.db")] == [r[0]["id"], r[2]["id"]]


def test_ask_with_a_forced_tier_is_not_escalated(tmp_path):
    with DemoServer(reply) as srv:
        p = settings_file(tmp_path, srv.base_url, escalation={"enabled": True})
        res = CliRunner().invoke(cli, ["ask", "hi, refusal please", "--tier", "utility", "--settings", str(p)])
    assert res.exit_code == 0, res.output
    assert "sorry" in res.output
    assert [x["model"] for x in rows(tmp_path / "l.db")] == ["gpt-4.1-nano"]


def test_the_hooks_module_exposes_the_pending_escalation_type():
    assert host_loop.PendingEscalation.__dataclass_fields__.keys() >= {"call_id", "failed", "why"}


def test_the_settings_know_every_answer_check_and_reject_unknown_ones():
    from agent_router.errors import SettingsError
    from agent_router.escalation import CHECKS
    from agent_router.settings import parse

    assert tuple(Settings().escalation.checks) == CHECKS
    with pytest.raises(SettingsError, match=r"escalation\.checks.*unknown check"):
        parse({"escalation": {"checks": ["truncated", "vibes"]}})


def test_a_quality_target_the_weights_were_not_calibrated_to_is_an_error_naming_the_setting():
    from agent_router.errors import AgentRouterError
    from agent_router.escalation.escalate import decide

    s = Settings.model_validate({"escalation": {"enabled": True, "scorer": True, "quality_target": 0.9}})
    r = Router(s)
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(AgentRouterError, match=r"escalation\.quality_target 0\.9 .* set escalation\.score_threshold"):
        decide(r, r.route(msgs), msgs, "hello")
    s2 = Settings.model_validate({"escalation": {"enabled": True, "scorer": True, "score_threshold": 0.0}})
    r2 = Router(s2)
    esc = decide(r2, r2.route(msgs), msgs, "Hello! How can I help?")
    assert esc.escalate and esc.findings == [] and esc.decision.tier == "chat"  # the scorer alone said so
    assert esc.reasons[0].startswith("escalation score")


def test_protocol_replies_are_read_as_the_tool_call_they_stand_for_and_hostile_ones_do_not_raise():
    from agent_router.escalation.checks import run_checks
    from agent_router.escalation.escalate import protocol_tool_calls

    msgs = [{"role": "user", "content": "hi"}]
    ok = '{"tool_name": "response", "tool_args": {"text": "4"}}\n\nthat is all'
    assert run_checks(msgs, ok, tool_calls=protocol_tool_calls(ok)) == []
    bad = protocol_tool_calls(CHEAP["broken"])
    assert [f.check for f in run_checks(msgs, CHEAP["broken"], tool_calls=bad)] == ["json_unparseable"]
    assert protocol_tool_calls("plain prose") is None
    for hostile in ("{" + "[" * 50_000, "{" * 300_000, '{"a": "' + "x" * 1_000_000):
        calls = protocol_tool_calls(hostile)
        run_checks(msgs, hostile, tool_calls=calls)  # bounded, never raises


def test_a_ceiling_or_the_latency_budget_keeps_a_failed_answer_and_says_why():
    from agent_router.escalation.escalate import decide

    msgs = [{"role": "user", "content": "hi"}]
    refusal = "I'm sorry, but I can't help with that."
    s = Settings.model_validate({"escalation": {"enabled": True, "latency_budget_ms": 1500}})
    r = Router(s)
    d = r.route(msgs)
    assert d.tier == "utility"
    capped = decide(r, d, msgs, refusal, context={"max_tier": "utility"})
    assert capped.failed and not capped.escalate and "limits keep the call at utility" in capped.blocked
    slow = decide(r, d, msgs, refusal, latency_ms=1000)  # + the chat model's expected 800 ms > 1500
    assert not slow.escalate and slow.blocked.startswith("latency budget 1500 ms")
    fast = decide(r, d, msgs, refusal, latency_ms=100)
    assert fast.escalate and fast.decision.tier == "chat"
    util = decide(r, r.route(msgs, {"call_kind": "utility"}), msgs, refusal,
                  context={"call_kind": "utility", "max_tier": None})
    assert util.escalate and util.decision.tier == "chat"  # routing.utility_max_tier (chat) allows one step
    s2 = Settings.model_validate({"escalation": {"enabled": True}, "routing": {"utility_max_tier": "utility"}})
    r2 = Router(s2)
    held = decide(r2, r2.route(msgs, {"call_kind": "utility"}), msgs, refusal, context={"call_kind": "utility"})
    assert not held.escalate and "utility" in held.blocked
