"""Virtual keys on `agent-router serve`: the master key, bad keys, admin-only management, a key's highest tier,
rate limit, budget (downgrade, then 429 once spent), revocation; ledger rows name the key, never hold it."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest

from .gateway_fixtures import Gateway, http_call, openai_client, rows, settings_for

if TYPE_CHECKING:
    import openai

# openai (~0.5 s of CPU to import) is imported by the tests that use it, so that an xdist worker which only
# collects this file does not pay for it.
MASTER = "sk-master-0123456789abcdef0123"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gw(gw_upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gwkeys")
    g = Gateway(settings_for(gw_upstream.url, tmp), tmp, env={"AGENT_ROUTER_MASTER_KEY": MASTER})
    yield g
    g.stop()


def client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai_client(gw.url, key)


def make_key(gw: Gateway, **body) -> str:
    r = http_call("POST", f"{gw.url}/api/keys", json=body, headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 201, r.text
    return r.json()["key"]


def test_missing_and_bad_keys_are_401_in_openai_shape_and_not_recorded(gw):
    import openai

    with pytest.raises(openai.AuthenticationError) as e:
        client(gw, "sk-wrong-0123456789abcdef").chat.completions.create(
            model="auto", messages=HI, extra_headers={"X-Conversation-Id": "bad-key"})
    assert e.value.body["code"] == "invalid_api_key"
    r = http_call("POST", f"{gw.url}/v1/chat/completions", json={"model": "auto", "messages": HI})
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    assert rows(gw.db, 1, timeout=0.5, where="conversation_id = 'bad-key'") == []
    assert "sk-wrong" not in gw.output() and MASTER not in gw.output()


def test_master_key_is_a_client_key_and_rows_name_it(gw):
    client(gw, MASTER).chat.completions.create(model="auto", messages=HI, extra_headers={"X-Conversation-Id": "m1"})
    (row,) = rows(gw.db, 1, where="conversation_id = 'm1'")
    assert row["agent_id"] == "master"


def test_key_management_is_admin_only_and_keys_are_stored_hashed(gw):
    import openai

    alice = make_key(gw, name="alice", max_tier="utility")
    r = http_call("GET", f"{gw.url}/api/keys", headers={"Authorization": f"Bearer {alice}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    listed = http_call("GET", f"{gw.url}/api/keys", headers={"Authorization": f"Bearer {MASTER}"}).json()["keys"]
    assert [k["name"] for k in listed if k["name"] == "alice"] == ["alice"]
    assert alice not in json.dumps(listed)
    from agent_router.ledger import Ledger

    with Ledger(gw.db) as led:
        stored = led.store.read("SELECT * FROM gateway_keys WHERE name = 'alice'")
    assert alice not in json.dumps(stored) and len(stored[0]["key_hash"]) == 64
    # her highest tier holds even when she asks for premium
    raw = client(gw, alice).chat.completions.with_raw_response.create(
        model="premium", messages=HI, extra_headers={"X-Conversation-Id": "alice-1"})
    assert raw.headers["x-agent-router-tier"] == "utility"
    (row,) = rows(gw.db, 1, where="conversation_id = 'alice-1'")
    assert row["agent_id"] == "alice" and row["tier"] == "utility"
    client(gw, MASTER).chat.completions.create(  # a call of the master key's own, whatever ran before
        model="utility", messages=HI, extra_headers={"X-Conversation-Id": "master-1"})
    rows(gw.db, 1, where="conversation_id = 'master-1'")
    usage = http_call("GET", f"{gw.url}/api/usage?by=key", headers={"Authorization": f"Bearer {MASTER}"}).json()
    assert {"alice", "master"} <= {r["key"] for r in usage["rows"]}
    # revoked: refused within the key cache's 2 s
    revoked = http_call("DELETE", f"{gw.url}/api/keys/alice", headers={"Authorization": f"Bearer {MASTER}"})
    assert revoked.status_code == 200
    time.sleep(2.1)
    with pytest.raises(openai.AuthenticationError):
        client(gw, alice).chat.completions.create(model="auto", messages=HI)


def test_rate_limit_per_key_is_429_with_retry_after(gw):
    import openai

    k = make_key(gw, name="rpm2", rpm=2)
    c = client(gw, k)
    for _ in range(2):
        c.chat.completions.create(model="utility", messages=HI)
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="utility", messages=HI)
    assert e.value.body["code"] == "rate_limit_exceeded" and int(e.value.response.headers["retry-after"]) >= 1


def test_key_budget_downgrades_then_is_exhausted(gw):
    import openai

    probe = client(gw, MASTER).chat.completions.with_raw_response.create(
        model="utility", messages=HI, extra_headers={"X-Conversation-Id": "probe"})
    est = float(probe.headers["x-agent-router-estimated-cost-usd"])
    cost = float(probe.headers["x-agent-router-cost-usd"])
    assert 0 < cost < est
    # room for one call's estimate, not for a second one after its real cost is counted
    bob = make_key(gw, name="bob", budget_usd=est + cost / 2)
    client(gw, bob).chat.completions.create(model="utility", messages=HI, extra_headers={"X-Conversation-Id": "b1"})
    assert rows(gw.db, 1, where="conversation_id = 'b1'")[0]["agent_id"] == "bob"
    with pytest.raises(openai.RateLimitError) as e:
        client(gw, bob).chat.completions.create(model="utility", messages=HI,
                                                extra_headers={"X-Conversation-Id": "b2"})
    assert e.value.body["code"] == "budget_exceeded" and e.value.body["type"] == "insufficient_quota"
    assert rows(gw.db, 1, timeout=0.5, where="conversation_id = 'b2'") == []
    keys = http_call("GET", f"{gw.url}/api/keys", headers={"Authorization": f"Bearer {MASTER}"}).json()["keys"]
    assert [k["spent_usd"] for k in keys if k["name"] == "bob"] == [pytest.approx(cost)]
    # a budget too small for premium: routed down instead (budgets.on_exceed = downgrade)
    prem = client(gw, MASTER).chat.completions.with_raw_response.create(
        model="premium", messages=HI, extra_headers={"X-Conversation-Id": "probe-p"})
    carol = make_key(gw, name="carol", budget_usd=float(prem.headers["x-agent-router-estimated-cost-usd"]) / 2)
    raw = client(gw, carol).chat.completions.with_raw_response.create(
        model="premium", messages=HI, extra_headers={"X-Conversation-Id": "c1"})
    assert raw.headers["x-agent-router-tier"] != "premium"
    (row,) = rows(gw.db, 1, where="conversation_id = 'c1'")
    assert row["agent_id"] == "carol" and "budget" in row["reasons"]


def test_over_budget_block_setting_answers_429_instead_of_downgrading(gw_upstream, tmp_path):
    import openai

    g = Gateway(settings_for(gw_upstream.url, tmp_path, gateway={"over_budget": "block"}), tmp_path,
                env={"AGENT_ROUTER_MASTER_KEY": MASTER})
    try:
        prem = client(g, MASTER).chat.completions.with_raw_response.create(model="premium", messages=HI)
        dave = make_key(g, name="dave", budget_usd=float(prem.headers["x-agent-router-estimated-cost-usd"]) / 2)
        with pytest.raises(openai.RateLimitError) as e:
            client(g, dave).chat.completions.create(model="premium", messages=HI,
                                                    extra_headers={"X-Conversation-Id": "dave"})
        assert e.value.body["code"] == "budget_exceeded"
        assert rows(g.db, 1, timeout=0.5, where="conversation_id = 'dave'") == []
    finally:
        g.stop()


def test_keys_cli_prints_a_key_once_and_lists_no_values(tmp_path):
    import json as _json

    from click.testing import CliRunner

    from agent_router.cli import cli

    s = tmp_path / "s.json"
    s.write_text(_json.dumps({"ledger": {"path": str(tmp_path / "l.db")}}))
    r = CliRunner().invoke(cli, ["keys", "create", "ci", "--budget", "2", "--rpm", "5", "--max-tier", "chat",
                                 "--settings", str(s)])
    assert r.exit_code == 0 and r.output.startswith("sk-ar-")
    value = r.output.strip()
    listed = CliRunner().invoke(cli, ["keys", "list", "--settings", str(s)]).output
    assert value not in listed and _json.loads(listed)[0]["max_tier"] == "chat"
    assert CliRunner().invoke(cli, ["keys", "revoke", "ci", "--settings", str(s)]).exit_code == 0
    again = CliRunner().invoke(cli, ["keys", "revoke", "ci", "--settings", str(s)])
    assert again.exit_code == 2 and "no active key named 'ci'" in again.output
