"""Budgets on every path that spends, and fallback chains that keep to the limits of the first choice.

Against the local model server of providers_fixtures.py: its request log says whether a provider call was made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.errors import SettingsError
from agent_router.providers import AllModelsFailed, ProviderClient
from agent_router.router import BudgetBlocked, Router
from agent_router.runtime import core as rtmod
from agent_router.runtime.loop import ReferenceAgent, provider_complete
from agent_router.runtime.switch import switch_model
from agent_router.settings import Settings, load

from .host_fixtures import make_runtime, rows
from .providers_fixtures import GOOD_KEYS, FakeLLM

GOOD = sorted(GOOD_KEYS)[0]
FAST = {"timeout_s": 3.0, "connect_timeout_s": 3.0, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
        "max_retries": 0}


def _data(llm: FakeLLM, tmp_path: Path, **over: Any) -> dict[str, Any]:
    """Three priced models on the local server; premium costs 10x chat, chat 10x utility."""

    def m(name: str, i: float, o: float) -> dict[str, Any]:
        return {"provider": "openai", "name": name, "base_url": llm.url + "/v1", "api_key_env": "TEST_KEY",
                "price": {"input": i, "output": o}}

    data: dict[str, Any] = {
        "models": {"u": m("m-util", 1.0, 2.0), "c": m("m-chat", 10.0, 20.0), "p": m("m-prem", 100.0, 200.0)},
        "tiers": {"utility": ["u"], "chat": ["c"], "premium": ["p"]},
        "providers": FAST,
        "ledger": {"path": str(tmp_path / "ledger.db")},
    }
    data.update(over)
    return data


def _write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(data))
    return str(path)


# --- ask ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("on_exceed", ["block", "downgrade"])
def test_ask_stops_at_an_exhausted_budget_without_calling_the_provider(llm, tmp_path, monkeypatch, on_exceed):
    monkeypatch.setenv("TEST_KEY", GOOD)
    # One ask on u costs $0.000035 (21 in, 5 of them cached, 7 out) against an estimate near $0.00002.
    path = _write(tmp_path, _data(llm, tmp_path, budgets={"daily_usd": 0.00004, "on_exceed": on_exceed}))
    runner = CliRunner()
    results = [runner.invoke(cli, ["ask", "hi", "--settings", path, "--tier", "utility", "--max-tokens", "8"])
               for _ in range(5)]
    assert results[0].exit_code == 0, results[0].output
    assert results[0].stdout.startswith("Hello from m-util")
    refused = results[1:]
    for r in refused:
        assert r.exit_code == 2, r.output
        assert r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "budget" in lines[0]
    assert len(llm.requests) == 1  # no provider call past the exhausted budget
    # The one call is in the ledger and its reservation is settled: nothing is left held.
    import sqlite3

    con = sqlite3.connect(tmp_path / "ledger.db")
    assert con.execute("select count(*) from calls").fetchone()[0] == 1
    assert con.execute("select count(*) from reservations").fetchone()[0] == 0


def test_ask_over_budget_downgrades_to_a_model_that_fits(llm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY", GOOD)
    # Premium would cost far more than $0.001; the utility model fits, so "downgrade" answers with it.
    path = _write(tmp_path, _data(llm, tmp_path, budgets={"daily_usd": 0.001, "on_exceed": "downgrade"}))
    r = CliRunner().invoke(cli, ["ask", "hi", "--settings", path, "--tier", "premium", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["model"] in ("u", "c") and llm.count("m-prem") == 0
    assert any("downgraded" in x for x in out["decision"]["reasons"])
    assert "p" not in out["decision"]["fallbacks"]


# --- fallback chains ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "policy, budgets",
    [
        ({"max_tier": "chat"}, {}),  # the ceiling alone keeps premium out
        ({"max_tier": "premium"}, {"per_conversation_usd": 0.01}),  # the budget alone keeps premium out
    ],
)
def test_a_chat_switch_never_fails_over_to_premium(llm, tmp_path, policy, budgets):
    data = _data(llm, tmp_path, tool_policy=policy, budgets=budgets, routing={"fallbacks": {"c": ["p", "u"]}})
    s = Settings.model_validate(data)
    rt = make_runtime(s)
    rtmod.activate(rt)
    try:
        with ProviderClient(s, env={"TEST_KEY": GOOD}) as client:
            agent = ReferenceAgent(rt, provider_complete(client), conversation_id="conv")
            agent.messages.append({"role": "user", "content": "Rename the variable x to count in this file."})
            rt.route_turn("conv", agent.messages)
            res = switch_model(rt, "conv", {"tier": "chat", "reason": "needs care", "scope": "conversation"})
            assert res.accepted, res.message
            llm.fault("m-chat", "500", "500", "500")
            out = agent.run_turn("Now do it.")
    finally:
        rtmod.activate(None)
    assert out.reply == "Hello from m-util"
    assert llm.count("m-chat") >= 1 and llm.count("m-prem") == 0
    assert "p" not in out.decisions[0]["fallbacks"]
    # The answer is recorded as the model that gave it, at its price.
    chat = [r for r in rows(tmp_path / "ledger.db") if r["kind"] == "chat"]
    assert chat[-1]["model"] == "m-util" and chat[-1]["requested_model"] == "u"


def test_utility_calls_never_fail_over_above_utility_max_tier(llm, tmp_path):
    data = _data(llm, tmp_path, routing={"utility_max_tier": "utility", "fallbacks": {"u": ["p", "c"]}})
    s = Settings.model_validate(data)
    d = Router(s).route([{"role": "user", "content": "Summarize: " + "the build failed. " * 20}],
                        {"call_kind": "utility", "override": {"model": "p"}})
    assert d.model == "u" and d.fallbacks == []
    assert "utility call: capped at utility" in d.reasons
    llm.fault("m-util", "500", "500")
    with ProviderClient(s, env={"TEST_KEY": GOOD}) as client, pytest.raises(AllModelsFailed):
        client.complete(d, [{"role": "user", "content": "Summarize this."}])
    assert llm.count("m-util") >= 1 and llm.count("m-prem") == 0 and llm.count("m-chat") == 0


def test_fallbacks_keep_to_the_remaining_budget(llm, tmp_path):
    s = Settings.model_validate(_data(llm, tmp_path))
    msgs = [{"role": "user", "content": "Rename the variable x to count in this file."}]
    r = Router(s)
    free = r.route(msgs, {"override": {"tier": "chat"}})
    assert "p" in free.fallbacks  # without a budget premium is a fallback
    tight = r.route(msgs, {"override": {"tier": "chat"}, "budget_remaining_usd": free.estimated_cost_usd * 2})
    assert tight.model == "c" and "p" not in tight.fallbacks and "u" in tight.fallbacks


# --- the reference loop ---------------------------------------------------------------------------------
def test_loop_refuses_a_turn_past_the_budget_with_no_provider_call(llm, tmp_path):
    s = Settings.model_validate(_data(llm, tmp_path, budgets={"per_conversation_usd": 0.0001,
                                                              "on_exceed": "block"}))
    rt = make_runtime(s)
    rt.record(model="m-prem", requested_model="p", usage={"prompt_tokens": 1000, "completion_tokens": 0},
              provider="openai", conversation_id="conv")  # $0.1 spent already
    rtmod.activate(rt)
    try:
        with ProviderClient(s, env={"TEST_KEY": GOOD}) as client:
            agent = ReferenceAgent(rt, provider_complete(client), conversation_id="conv")
            with pytest.raises(BudgetBlocked, match="budget"):
                agent.run_turn("hi there")
    finally:
        rtmod.activate(None)
    assert llm.requests == []


# --- settings -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, where",
    [
        ('{"budgets": {"daily_usd": NaN}}', "$.budgets.daily_usd"),
        ('{"budgets": {"reservation_ttl_s": Infinity}}', "$.budgets.reservation_ttl_s"),
        ('{"providers": {"timeout_s": -Infinity}}', "$.providers.timeout_s"),
        ('{"models": {"x": {"provider": "openai", "name": "n", "price": {"input": NaN, "output": 1}}}}',
         "$.models.x.price.input"),
    ],
)
def test_nan_and_infinite_numbers_are_rejected_at_load(tmp_path, text, where):
    path = tmp_path / "settings.json"
    path.write_text(text)
    with pytest.raises(SettingsError) as e:
        load(path)
    assert where in str(e.value) and "finite" in str(e.value)
    r = CliRunner().invoke(cli, ["check", "--settings", str(path)])
    assert r.exit_code == 2 and where in r.stderr and "Traceback" not in r.output
