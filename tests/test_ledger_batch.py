"""The gateway's ledger writes: a batch of calls and its keys' spend in one transaction (both or neither), and
the memo of scrubbed reasons never hiding a secret remembered after a text was first scrubbed."""

from __future__ import annotations

import json
import secrets as pysecrets

import pytest

from agent_router import secrets
from agent_router.gateway.keys import KeyStore
from agent_router.ledger import Ledger
from agent_router.providers.state import MemoryState

from .ledger_fixtures import plugin_manager, settings


def _calls(led: Ledger) -> list[dict]:
    return led.store.read("SELECT conversation_id, agent_id, reasons FROM calls ORDER BY id")


def test_record_many_writes_the_key_spend_with_the_rows_or_neither(tmp_path):
    led = Ledger(tmp_path / "l.db", settings(), pm=plugin_manager())
    keys = KeyStore(led, None, MemoryState())
    keys.create("team", budget_usd=5.0)
    row = {"model": "gpt-4o-mini", "provider": "openai", "usage": {"prompt_tokens": 10, "completion_tokens": 2},
           "agent_id": "team"}
    ids = led.record_many([{**row, "conversation_id": "a"}, {**row, "conversation_id": "b"}],
                          also=keys.spend_in({"team": 0.25, "master": 9.0}))
    assert len(ids) == 2 and keys.spent("team") == pytest.approx(0.25)

    def broken(store):  # the key's part of the transaction fails: the rows must not stay without it
        keys.spend_in({"team": 1.0})(store)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        led.record_many([{**row, "conversation_id": "c"}], also=broken)
    assert [r["conversation_id"] for r in _calls(led)] == ["a", "b"]
    assert keys.spent("team") == pytest.approx(0.25)
    led.close()


def test_a_secret_remembered_after_a_reason_was_scrubbed_is_masked_in_later_rows(tmp_path):
    led = Ledger(tmp_path / "l.db", settings(), pm=plugin_manager())
    value = "zq" + pysecrets.token_hex(12)  # shaped like nothing: masked only once remembered
    reason = f"routed by rule {value}"
    base = {"model": "gpt-4o-mini", "provider": "openai", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    led.record_many([{**base, "conversation_id": "before", "reasons": [reason, "task: chat"]}])
    secrets.remember(value)
    led.record_many([{**base, "conversation_id": "after", "reasons": [reason, "task: chat"]}])
    before, after = (json.loads(r["reasons"]) for r in _calls(led))
    assert before == [reason, "task: chat"]
    assert after == [f"routed by rule {secrets.REDACTED}", "task: chat"]
    led.close()
