"""Routing experiments: a challenger policy in shadow (recorded beside the live decision, never called) or on a
share of conversations (A/B by a stable hash), and `agent-router costs --by arm` comparing the arms."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.demo.server import DemoServer
from agent_router.demo.session import run_demo
from agent_router.errors import SettingsError
from agent_router.ledger import Ledger, costs
from agent_router.providers import ProviderClient
from agent_router.router import Router, ab_bucket
from agent_router.runtime import core as rtmod
from agent_router.runtime.loop import ReferenceAgent, provider_complete
from agent_router.settings import Settings, parse

from .host_fixtures import make_runtime, rows, settings_for

# Everything to premium: easy to tell from the live policy's choices.
ALL_PREMIUM = {"routing": {"thresholds": {"low": 0.0, "high": 0.0}}}


@pytest.fixture(autouse=True)
def _no_runtime_left():
    yield
    rtmod.activate(None)


def test_a_whole_demo_run_records_the_shadow_decision_beside_every_routed_call(tmp_path):
    db = tmp_path / "demo.db"
    overlay = parse({"routing": {"experiments": [{"name": "prem", "mode": "shadow", "challenger": ALL_PREMIUM}]}})
    out = run_demo(str(db), echo=lambda *_: None, overlay=overlay)
    model_rows = [r for r in rows(db) if r["kind"] in ("chat", "utility")]
    assert len(model_rows) == out["requests"] >= 10
    for r in model_rows:
        assert r["arm"] == "prem:live"
        shadow = json.loads(r["shadow"])
        assert shadow["experiment"] == "prem" and r["shadow_cost_usd"] > 0
        if r["kind"] == "utility":  # the challenger's utility calls stay under routing.utility_max_tier too
            assert shadow["tier"] == "utility"
    # The challenger sends chat calls to premium until the conversation's remaining budget no longer fits it.
    shadow_tiers = [json.loads(r["shadow"])["tier"] for r in model_rows if r["kind"] == "chat"]
    assert shadow_tiers[:3] == ["premium"] * 3 and "premium" not in shadow_tiers[-3:]
    # Never called: every call the server answered is the live policy's.
    assert {r["tier"] for r in model_rows} != {"premium"}
    assert sum(r["cost_usd"] for r in model_rows) < sum(r["shadow_cost_usd"] for r in model_rows)
    rep = CliRunner().invoke(cli, ["costs", "--by", "arm", "--db", str(db)])
    assert rep.exit_code == 0, rep.output
    assert "prem:live:" in rep.output and "shadow est. $" in rep.output


def test_the_demo_command_takes_the_experiment_from_a_settings_file(tmp_path):
    s = tmp_path / "s.json"
    s.write_text(json.dumps({"routing": {"experiments": [{"name": "x", "challenger": ALL_PREMIUM}]}}))
    res = CliRunner().invoke(cli, ["demo", "--settings", str(s), "--ledger", str(tmp_path / "d.db")])
    assert res.exit_code == 0, res.output
    assert all(r["arm"] == "x:live" for r in rows(tmp_path / "d.db") if r["kind"] == "chat")


def test_an_ab_split_sends_each_conversation_to_one_arm_by_a_stable_hash():
    ex = {"name": "ab1", "mode": "ab", "share": 0.3, "challenger": ALL_PREMIUM}
    s = Settings.model_validate({"routing": {"experiments": [ex]}})
    a, b = Router(s), Router(s)  # two processes' routers agree
    msgs = [{"role": "user", "content": "hi"}]
    arms = {}
    for i in range(400):
        conv = f"conv-{i}"
        d1, d2 = a.route(msgs, {"conversation_id": conv}), b.route(msgs, {"conversation_id": conv})
        assert d1.arm == d2.arm and d1.tier == d2.tier
        arms[conv] = d1.arm
        assert (d1.tier == "premium") == (d1.arm == "ab1:challenger")
        assert (ab_bucket("ab1", conv) < 0.3) == (d1.arm == "ab1:challenger")
    share = sum(v == "ab1:challenger" for v in arms.values()) / len(arms)
    assert 0.22 < share < 0.38
    assert a.route(msgs).arm == "ab1:control"  # no conversation id: the live policy


def test_an_ab_conversation_keeps_its_arm_for_every_call_and_the_report_compares_arms(tmp_path):
    db = tmp_path / "l.db"
    refuse = '{"tool_name": "response", "tool_args": {"text": "I\'m sorry, but I can\'t help with that."}}'

    def reply(model, messages):
        if model == "gpt-4.1-nano":
            return refuse
        return '{"tool_name": "response", "tool_args": {"text": "ok"}}'

    with DemoServer(reply) as srv:
        s = settings_for(
            srv.base_url, db, escalation={"enabled": True},
            routing={"experiments": [{"name": "t", "mode": "ab", "share": 0.5, "challenger": ALL_PREMIUM}]},
        )
        rt = make_runtime(s)
        rtmod.activate(rt)
        with ProviderClient(s, catalog=rt.catalog) as client:
            for i in range(8):
                agent = ReferenceAgent(rt, provider_complete(client), conversation_id=f"c{i}")
                agent.run_turn("hi")
                agent.run_turn("hello again")
        rt.ledger.close()
    by_conv: dict[str, set[str]] = {}
    for r in rows(db):
        by_conv.setdefault(r["conversation_id"], set()).add(r["arm"])
    assert all(len(v) == 1 for v in by_conv.values())
    assert {next(iter(v)) for v in by_conv.values()} == {"t:control", "t:challenger"}
    with Ledger(db) as ledger:
        rep = {r["key"]: r for r in costs(ledger, by="arm")["rows"]}
    ctl, ch = rep["t:control"], rep["t:challenger"]
    n_ctl = sum(1 for v in by_conv.values() if v == {"t:control"})
    assert ctl["escalations"] == ctl["bad_verdicts"] == 2 * n_ctl  # the cheap arm's refusals, re-asked
    assert ch["escalations"] == ch["bad_verdicts"] == 0  # premium answered: nothing to check above it
    assert ch["cost_usd"] / ch["calls"] > ctl["cost_usd"] / ctl["calls"]


def test_a_challenger_fragment_is_validated_with_its_json_path(tmp_path):
    bad = {"routing": {"experiments": [{"name": "x", "challenger": {"routing": {"stratgy": "manual"}}}]}}
    with pytest.raises(SettingsError, match=r"routing\.experiments\[0\]\.challenger\.routing\.stratgy: unknown key"):
        parse(bad)
    two = {"routing": {"experiments": [{"name": "a"}, {"name": "b"}]}}
    with pytest.raises(SettingsError, match="at most 1"):
        parse(two)
