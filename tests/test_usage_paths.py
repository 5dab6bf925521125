"""One usage reading whatever the path: a payload counts the same through `usage.normalize` (the host path) and
through `ProviderClient` against a local server, and a paid call with inconsistent counts still gets its row."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.ledger import Ledger
from agent_router.providers import ProviderClient
from agent_router.settings import Settings
from agent_router.usage import Usage, UsageError, normalize

from .providers_fixtures import GOOD_KEYS, REPLIES, FakeLLM

GOOD = sorted(GOOD_KEYS)[0]
PREFIX = {"openai": "/v1", "gemini": "/v1beta"}


@pytest.fixture
def llm():
    with FakeLLM() as server:
        yield server


def _settings(llm: FakeLLM, fmt: str, name: str, tmp_path=None) -> dict:
    data = {
        "models": {"m": {"provider": fmt, "name": name, "base_url": llm.url + PREFIX[fmt], "api_key_env": "TEST_KEY",
                         "price": {"input": 1.0, "output": 2.0}}},
        "tiers": {"utility": ["m"], "chat": ["m"], "premium": ["m"]},
        "providers": {"max_retries": 0},
    }
    if tmp_path is not None:
        data["ledger"] = {"path": str(tmp_path / "ledger.db")}
    return data


def test_gemini_tool_use_prompt_counts_the_same_on_both_paths(llm):
    payload = REPLIES["gemini"]["tool_use_prompt"]
    host = normalize(payload, "gemini")
    # usageMetadata: prompt 1,000 (200 of them cached) + tool-use prompt 400 are billed as input;
    # candidates 50 + thoughts 30 as output (totalTokenCount 1,480 = 1,400 + 80).
    assert host == Usage(input=1400, output=80, cached_input=200, reasoning=30)
    llm.fault("gem", "reply:tool_use_prompt")
    with ProviderClient(Settings.model_validate(_settings(llm, "gemini", "gem")), env={"TEST_KEY": GOOD}) as c:
        got = c.complete("m", [{"role": "user", "content": "hi"}])
    assert got.text == "done"
    assert got.usage == host


def test_reasoning_above_output_is_settled_not_refused():
    u = normalize(REPLIES["openai"]["reasoning_over_output"], "openai")
    assert (u.input, u.output, u.reasoning) == (20, 9, 9)
    assert Usage.reported(input=10, cached_input=30, cache_write=5) == Usage(input=10, cached_input=10)
    with pytest.raises(UsageError, match="reasoning"):
        Usage(output=1, reasoning=2)  # counts a program makes itself stay checked


def test_attempt_recorder_records_inconsistent_counts(tmp_path):
    s = Settings.model_validate({"ledger": {"path": str(tmp_path / "l.db")}})
    with Ledger.from_settings(s) as led:
        rid = led.attempt_recorder(kind="chat")(
            {"id": "a", "model": "gpt-4.1-mini", "provider": "openai", "input_tokens": 20, "output_tokens": 5,
             "reasoning_tokens": 9, "cached_input_tokens": 50, "token_source": "provider", "outcome": "ok"}
        )
        assert rid is not None
    row = sqlite3.connect(tmp_path / "l.db").execute(
        "select input_tokens, cached_input_tokens, output_tokens, reasoning_tokens from calls").fetchone()
    assert tuple(row) == (20, 20, 9, 9)


def test_cli_ask_records_a_call_whose_server_reports_more_reasoning_than_output(llm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY", GOOD)
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(_settings(llm, "openai", "thinker", tmp_path)))
    llm.fault("thinker", "reply:reasoning_over_output")
    r = CliRunner().invoke(cli, ["ask", "hi", "--settings", str(path), "--json"])
    assert r.exit_code == 0, r.output
    rows = sqlite3.connect(tmp_path / "ledger.db").execute(
        "select model, outcome, input_tokens, output_tokens, reasoning_tokens, cost_usd from calls").fetchall()
    assert rows == [("thinker", "ok", 20, 9, 9, pytest.approx((20 * 1.0 + 9 * 2.0) / 1e6))]
    out = json.loads(r.stdout)
    assert out["answer"] == "thought hard" and out["usage"]["output"] == 9
