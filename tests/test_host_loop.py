"""End to end: the reference loop drives the host-loop hooks through whole sessions against a real local
OpenAI-compatible server (127.0.0.1), with real HTTP, real usage numbers and a real SQLite ledger."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.demo.server import DemoServer
from agent_router.demo.session import DEFAULT_BUDGET, SCRIPT, run_demo
from agent_router.providers import ProviderClient
from agent_router.router import BudgetBlocked
from agent_router.runtime import core as rtmod
from agent_router.runtime.loop import Completion, ReferenceAgent, provider_complete
from agent_router.tokens import TokenCounter

from .host_fixtures import make_runtime, rows, settings_for


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "ledger.db"
    out = run_demo(str(path), DEFAULT_BUDGET, echo=lambda *_: None)
    return out, rows(path)


def test_session_routes_each_turn_to_the_tier_it_needs(session):
    out, _ = session
    first = [t["decisions"][0] for t in out["turns"]]
    assert [d["tier"] for d in first[:3]] == ["utility", "chat", "premium"]  # hello, coding, proof
    assert first[0]["analysis"]["task_type"] == "chat" and first[1]["analysis"]["task_type"] == "code"
    for d in first:
        assert any(r.startswith("complexity") for r in d["reasons"])
        assert not any(
            r.startswith("compressed prompt") for r in d["reasons"]
        )  # short prompts fit as they are


def test_last_turn_is_downgraded_as_the_budget_nears_its_limit(session):
    out, ledger_rows = session
    last = out["turns"][-1]["decisions"][0]
    assert "-> premium" in " ".join(last["reasons"])  # complexity asked for premium...
    assert last["tier"] != "premium"  # ...the remaining budget did not allow it
    assert any(r.startswith("budget:") and "downgraded" in r for r in last["reasons"])
    thresholds = [a["threshold"] for a in out["alerts"]]
    assert thresholds == [0.5, 0.8]
    spent = sum(r["cost_usd"] for r in ledger_rows)
    assert 0.8 * DEFAULT_BUDGET <= spent <= DEFAULT_BUDGET


def test_every_model_call_is_one_ledger_row_with_provider_usage(session):
    out, ledger_rows = session
    model_rows = [r for r in ledger_rows if r["kind"] in ("chat", "utility")]
    assert len(model_rows) == out["requests"]  # one row per HTTP request the server answered
    assert all(r["token_source"] == "provider" for r in model_rows)
    assert all(r["input_tokens"] > 0 and r["output_tokens"] > 0 and r["latency_ms"] > 0 for r in model_rows)
    assert all(r["conversation_id"] == "demo" for r in ledger_rows)
    assert sum(1 for r in model_rows if r["kind"] == "utility") == 1
    util = next(r for r in model_rows if r["kind"] == "utility")
    assert util["tier"] == "utility" and util["model"] == "gpt-4.1-nano"  # the log summary stayed cheap
    premium = [r for r in model_rows if r["tier"] == "premium"]
    assert premium and all(r["model"] == "claude-sonnet-4-5" for r in premium)
    assert all(r["cost_usd"] > 0 and r["price_source"].startswith("genai-prices") for r in model_rows)


def test_switch_model_decisions_are_tool_rows_and_shape_the_next_call(session):
    out, ledger_rows = session
    tool_rows = [r for r in ledger_rows if r["kind"] == "tool"]
    assert [(r["tool"], r["outcome"]) for r in tool_rows] == [
        ("switch_model", "refused"),
        ("switch_model", "ok"),
    ]
    assert "premium tier is above chat" in json.loads(tool_rows[0]["reasons"])[0]
    refused_turn, accepted_turn = out["turns"][4], out["turns"][5]
    assert refused_turn["tools"][0][0] == "switch_model" and "refused" in refused_turn["tools"][0][2]
    after = accepted_turn["decisions"][1]  # the step after the accepted switch
    assert after["tier"] == "utility"
    assert any(r.startswith("override: tier utility (agent: plain formatting") for r in after["reasons"])
    assert not any(
        r.startswith("override") for r in out["turns"][6]["decisions"][0]["reasons"]
    )  # next_turn only


def test_saving_against_always_premium_is_reported(session):
    out, _ = session
    total = out["report"]["total"]
    assert total["premium_cost_usd"] > total["cost_usd"] > 0
    assert total["routing_saved_usd"] == pytest.approx(total["premium_cost_usd"] - total["cost_usd"])


def test_demo_command_runs_offline_and_prints_turns_and_costs(tmp_path):
    ledger = tmp_path / "demo.db"
    res = CliRunner().invoke(cli, ["demo", "--ledger", str(ledger)])
    assert res.exit_code == 0, res.output
    assert res.output.count("\nturn ") == len(SCRIPT)
    assert "routing saved $" in res.output and "tool switch_model" in res.output
    assert "http://127.0.0.1:" in res.output
    assert len(rows(ledger)) > len(SCRIPT)


def test_usage_is_counted_and_flagged_when_the_server_reports_none(tmp_path):
    with DemoServer(report_usage=False) as srv:
        s = settings_for(srv.base_url, tmp_path / "l.db")
        rt = make_runtime(s)
        rtmod.activate(rt)
        with ProviderClient(s, catalog=rt.catalog) as client:
            agent = ReferenceAgent(rt, provider_complete(client), conversation_id="c1")
            agent.run_turn("hello there")
        sent = srv.requests[0]["messages"]
    (row,) = rows(tmp_path / "l.db")
    assert row["token_source"] in ("counted", "estimated")  # ours, not the provider's
    expected = TokenCounter().count_messages(sent, "openai_compatible", "gpt-4.1-nano").tokens
    assert row["input_tokens"] == expected


def test_block_budget_refuses_the_call_before_it_is_made(tmp_path):
    with DemoServer() as srv:
        s = settings_for(
            srv.base_url, tmp_path / "l.db", budgets={"per_conversation_usd": 0.000001, "on_exceed": "block"}
        )
        rt = make_runtime(s)
        rtmod.activate(rt)
        agent = ReferenceAgent(
            rt, lambda m, msgs: pytest.fail("the model must not be called"), conversation_id="c1"
        )
        with pytest.raises(BudgetBlocked):
            agent.run_turn("Write a Python function that sorts a list, with tests.")
        assert srv.requests == []
    assert rows(tmp_path / "l.db") == []


def test_utility_calls_never_exceed_utility_max_tier(tmp_path):
    s = settings_for("http://127.0.0.1:9/v1", tmp_path / "l.db", routing={"utility_max_tier": "utility"})
    rt = make_runtime(s)
    rtmod.activate(rt)
    seen = []

    def complete(model, messages):
        seen.append(model.alias)
        return Completion("ok", {"prompt_tokens": 10, "completion_tokens": 2})

    agent = ReferenceAgent(rt, complete, conversation_id="c1")
    hard = "Prove step by step, analyze and compare the trade-offs of three designs; derive the bound. " * 20
    agent.call_utility_model("Summarize this.", hard)
    assert seen == ["nano"]
    (row,) = rows(tmp_path / "l.db")
    assert row["kind"] == "utility" and row["tier"] == "utility"
    assert "utility call: capped at utility" in json.loads(row["reasons"])
    assert row["token_source"] == "provider" and row["input_tokens"] == 10


def test_hooks_do_nothing_without_an_active_runtime():
    from agent_router.plugins import load_plugins

    call_data = {"model": "host-own-model", "messages": [{"role": "user", "content": "hi"}]}
    load_plugins().hook.chat_model_call_before(agent=object(), call_data=call_data)
    assert call_data["model"] == "host-own-model"


def test_a_failed_call_is_a_ledger_row_and_frees_its_budget_reservation(tmp_path):
    # Port 9 on 127.0.0.1 (discard) is closed: a real connection error, after the budget check reserved.
    s = settings_for("http://127.0.0.1:9/v1", tmp_path / "l.db", budgets={"per_conversation_usd": 1.0})
    rt = make_runtime(s)
    rtmod.activate(rt)
    with ProviderClient(s, catalog=rt.catalog) as client:
        agent = ReferenceAgent(rt, provider_complete(client), conversation_id="c1")
        with pytest.raises(Exception) as err:
            agent.run_turn("hello")
    (row,) = rows(tmp_path / "l.db")
    assert row["outcome"].startswith("error: ") and row["cost_usd"] == 0.0 and row["input_tokens"] > 0
    assert getattr(err.value, "kind", type(err.value).__name__) in row["outcome"]
    assert rt.ledger.remaining("c1") == pytest.approx(1.0)  # nothing spent, nothing left reserved


def test_an_expensive_model_gets_a_compressed_prompt_and_the_saving_is_recorded(tmp_path):
    with DemoServer() as srv:
        s = settings_for(
            srv.base_url,
            tmp_path / "l.db",
            compression={
                "summarize": False,
                "expensive_input_price": 1.0,
            },  # sonnet ($3/M) counts as expensive
            routing={"strategy": "manual", "manual_model": "sonnet"},
        )
        rt = make_runtime(s)
        rtmod.activate(rt)
        with ProviderClient(s, catalog=rt.catalog) as client:
            agent = ReferenceAgent(rt, provider_complete(client), conversation_id="c1")
            for i in range(6):
                log = "\n".join(f"line {j} ok value={j * i}" for j in range(300))
                agent.messages += [
                    {"role": "user", "content": f"Here is log part {i}:\n{log}"},
                    {"role": "assistant", "content": "noted"},
                ]
            res = agent.run_turn(
                "Prove step by step and analyze the trade-offs of the three approaches; derive the bound, "
                "compare and justify the final design under constraints."
            )
        (sent,) = srv.requests
    d = res.decisions[0]
    assert d["tier"] == "premium", d["reasons"]
    (note,) = [r for r in d["reasons"] if r.startswith("compressed prompt")]
    before, after = (int(x.replace(",", "")) for x in note.split()[2:5:2])
    assert after < 0.8 * before and note.endswith("(cost)")
    (row,) = rows(tmp_path / "l.db")
    counted_sent = (
        TokenCounter().count_messages(sent["messages"], "openai_compatible", "claude-sonnet-4-5").tokens
    )
    assert row["input_tokens"] == counted_sent == after  # the server got the compressed prompt
    assert row["tokens_saved"] == before - after and row["saved_usd"] > 0


def test_compression_summaries_are_capped_utility_calls_recorded_in_the_ledger(tmp_path):
    with DemoServer() as srv:
        s = settings_for(
            srv.base_url,
            tmp_path / "l.db",
            compression={"expensive_input_price": 1.0},
            routing={"strategy": "manual", "manual_model": "sonnet"},  # every chat call on premium
        )
        rt = make_runtime(s)
        rtmod.activate(rt)
        with ProviderClient(s, catalog=rt.catalog) as client:
            agent = ReferenceAgent(rt, provider_complete(client), conversation_id="c1")
            topics = ["billing", "auth", "search", "cache", "deploy", "logging", "metrics", "backups"]
            for i in range(40):
                t = topics[i % 8]
                agent.messages += [
                    {
                        "role": "user",
                        "content": f"Question {i} about {t}: how should we handle the {t} retries "
                        "when the upstream is slow and the queue grows past its soft limit?",
                    },
                    {
                        "role": "assistant",
                        "content": f"For {t}, cap retries at three with jittered backoff, shed "
                        "load at the soft limit, and alert when the queue stays above it for five minutes.",
                    },
                ]
            agent.run_turn("Now compare the approaches and justify one.")
    summary, chat = rows(tmp_path / "l.db")
    assert (
        summary["kind"] == "utility" and summary["tier"] == "chat"
    )  # routing.utility_max_tier (default chat)
    assert "utility call: capped at chat" in json.loads(summary["reasons"])
    assert chat["kind"] == "chat" and chat["tier"] == "premium" and chat["tokens_saved"] > 0
    from agent_router.compression import compressor as compression

    assert compression.get_utility_caller() is None  # the agent's caller is set for its turn only


def test_prompts_are_stored_only_when_settings_say_so(tmp_path):
    for store in (False, True):
        path = tmp_path / f"{store}.db"
        s = settings_for("http://127.0.0.1:9/v1", path, ledger={"path": str(path), "store_prompts": store})
        rt = make_runtime(s)
        rtmod.activate(rt)
        agent = ReferenceAgent(rt, lambda m, msgs: Completion("plain answer", None), conversation_id="c1")
        agent.run_turn("hello there, my key is sk-proj-abcdefghijklmnop1234")
        (row,) = rows(path)
        if not store:
            assert row["prompt"] is None
        else:
            sent = json.loads(row["prompt"])
            assert sent[-1]["content"] == "hello there, my key is [redacted]"  # the ledger masks keys
