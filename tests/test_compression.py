"""Compression: each rule of the issue, checked on conversations a user would send."""

from __future__ import annotations

import copy
import json
import random
import re
import threading
import time

import pluggy
import pytest

from agent_router import hookspecs
from agent_router.builtins import summarize as builtin_summarize
from agent_router.catalog import Catalog
from agent_router.compression import compressor as compression
from agent_router.compression.compressor import Budget, plan_budget, structure_problems, unclosed_fence
from agent_router.errors import InputError, SettingsError
from agent_router.settings import CompressionSettings, Settings, parse
from agent_router.tokens import TokenCounter

from .compression_fixtures import (  # noqa: E402
    FACT_KEYS,
    FIRST,
    SYSTEM,
    code_block,
    conversation,
    random_conversation,
)

NO_HOOK = CompressionSettings(summarize=False)


def text_of(messages):
    return json.dumps(messages, ensure_ascii=False)


# One TokenCounter for the module, whose cache keeps each text's count: the tests' own measure of a conversation
# (`tokens`) and every compression below, as an agent's runtime compresses its growing history with its one counter
# (builtins/host_loop.py passes rt.counter). A text's count does not depend on what the counter saw before;
# test_same_input_same_output compares this with a new counter, and the CLI test compresses with compress's own.
COUNTER = TokenCounter()


def tokens(messages):
    return COUNTER.count_messages(messages).tokens


def compress(messages, budget, model=None, **kw):
    """compression.compress, counting with the module's COUNTER unless the test gives its own."""
    kw.setdefault("counter", COUNTER)
    return compression.compress(messages, budget, model, **kw)


def pm_with(*plugins):
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for p in plugins:
        pm.register(p)
    return pm


# --- 1. budget, what is always kept ----------------------------------------------------------------------
def test_fitting_messages_come_back_unchanged_and_input_is_not_modified():
    msgs = conversation(3)
    snapshot = copy.deepcopy(msgs)
    res = compress(msgs, 100_000, settings=NO_HOOK)
    assert res.messages == snapshot and msgs == snapshot
    assert res.before == res.after == tokens(msgs) and res.tokens_saved == 0 and res.fits


@pytest.mark.parametrize("share", [0.5, 0.25, 0.1])
def test_fits_budget_and_keeps_system_first_request_and_newest_turns(share):
    msgs = conversation(40)
    snapshot = copy.deepcopy(msgs)
    budget = int(tokens(msgs) * share)
    res = compress(msgs, budget, settings=CompressionSettings(keep_recent_turns=4, summarize=False))
    out = res.messages
    assert msgs == snapshot
    assert res.fits and res.after <= budget and res.after == tokens(out)
    assert res.before == tokens(msgs) and res.tokens_saved == res.before - res.after
    assert out[0] == {"role": "system", "content": SYSTEM}
    assert out[1]["role"] == "user" and out[1]["content"].startswith(FIRST)
    # Newest 4 turns: final user; note 39; user 39 + call + result; note 38 (a turn starts at a user message
    # or at an assistant message after tool results).
    assert out[-6:] == msgs[-6:]
    assert structure_problems(out) == []


def test_keep_recent_turns_setting_is_honoured():
    msgs = conversation(20)
    res = compress(msgs, int(tokens(msgs) * 0.3), settings=CompressionSettings(keep_recent_turns=8,
                                                                                summarize=False))
    assert res.messages[-14:] == msgs[-14:]


def test_largest_items_go_first_conversation_stays():
    msgs = conversation(12)
    big = next(m for m in msgs if m["role"] == "tool")
    big["content"] = "\n".join(f"row {k}: " + "payload " * 20 for k in range(2000))  # the one huge item
    res = compress(msgs, tokens(msgs) - 30_000, settings=NO_HOOK)
    out = res.messages
    assert res.fits
    assert len(out) == len(msgs)  # nothing summarized: eliding the huge output was enough
    elided = [m for m in out if m["role"] == "tool" and m["content"].startswith("[tool result elided")]
    assert len(elided) == 1 and "2,000 lines" in elided[0]["content"]
    assert [m for m in out if m["role"] in ("user", "assistant")] == \
        [m for m in msgs if m["role"] in ("user", "assistant")]


def test_budget_below_what_must_be_kept_reports_it():
    msgs = conversation(10)
    res = compress(msgs, 50, settings=NO_HOOK)
    assert not res.fits and res.after > 50
    assert any("over budget" in a for a in res.actions)
    assert res.messages[0]["content"] == SYSTEM and res.messages[-1] == msgs[-1]
    assert structure_problems(res.messages) == []


@pytest.mark.parametrize("bad", [0, -5, 2.5, "100", True])
def test_bad_budget_is_an_input_error(bad):
    with pytest.raises(InputError, match="budget"):
        compress(conversation(2), bad)


# --- 2. structure ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("share", [0.6, 0.3, 0.12])
def test_code_blocks_whole_or_named_and_no_orphans(seed, share):
    msgs = conversation(30, seed=seed)
    res = compress(msgs, int(tokens(msgs) * share), settings=NO_HOOK)
    out_text = "\n".join(str(m.get("content")) for m in res.messages)
    assert structure_problems(res.messages) == []
    assert not any(unclosed_fence(str(m.get("content") or "")) for m in res.messages)
    for r in range(0, 30, 3):
        block = code_block(r)
        whole = block in out_text
        named = f'"def helper_{r}(x):"' in out_text
        counted = re.search(r"\d+ code blocks", out_text)
        assert whole or named or counted, f"code block {r} vanished without a trace"
        assert whole or block.split("\n")[1] + "\n    total = 0" not in out_text  # never half a block


def test_json_tool_output_is_kept_whole_or_replaced_never_cut():
    msgs = conversation(10)
    doc = {"rows": [{"id": k, "name": f"item-{k}", "tags": ["a", "b"]} for k in range(400)]}
    for m in msgs:
        if m["role"] == "tool":
            m["content"] = json.dumps(doc, indent=1)
    res = compress(msgs, int(tokens(msgs) * 0.4), settings=NO_HOOK)
    for m in res.messages:
        if m["role"] == "tool":
            c = m["content"]
            if c.startswith("[tool result elided"):
                assert re.search(r"\d[\d,]* chars, ~[\d,]+ tokens", c)
            else:
                assert json.loads(c) == doc


def test_json_document_inside_a_message_is_elided_as_a_whole():
    doc = json.dumps({"config": {f"key_{k}": list(range(20)) for k in range(150)}}, indent=2)
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "start"},
            {"role": "assistant", "content": "Here is the config:\n" + doc + "\nUse it well."},
            {"role": "user", "content": "thanks"}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "next"}]
    cs = CompressionSettings(keep_recent_turns=2, summarize=False)
    res = compress(msgs, tokens(msgs) - 2000, settings=cs)
    content = res.messages[2]["content"]
    assert content.startswith("Here is the config:\n[JSON object with keys config elided:")
    assert content.endswith("\nUse it well.")


def test_large_tool_call_arguments_stay_valid_json():
    args = json.dumps({"path": "a.txt", "text": "x y z " * 3000})
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "write it"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "w1", "type": "function", "function": {"name": "write_file", "arguments": args}}]},
            {"role": "tool", "tool_call_id": "w1", "content": "written"},
            {"role": "assistant", "content": "Done."}, {"role": "user", "content": "good"},
            {"role": "assistant", "content": "ok"}, {"role": "user", "content": "next"}]
    res = compress(msgs, 600, settings=CompressionSettings(keep_recent_turns=2, summarize=False))
    assert res.fits and structure_problems(res.messages) == []
    for m in res.messages:
        for tc in m.get("tool_calls") or []:
            args = json.loads(tc["function"]["arguments"])
            assert "write_file" in args["_elided"]


def test_summary_never_makes_two_user_or_two_assistant_messages_in_a_row():
    # Agent-loop shape: one request, then only assistant calls and tool results.
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": FIRST}]
    for k in range(40):
        msgs.append({"role": "assistant", "content": f"step {k}", "tool_calls": [
            {"id": f"c{k}", "type": "function", "function": {"name": "run", "arguments": "{}"}}]})
        msgs.append({"role": "tool", "tool_call_id": f"c{k}", "content": f"output {k} " * 200})
    msgs.append({"role": "assistant", "content": "All done."})
    res = compress(msgs, int(tokens(msgs) * 0.2), settings=NO_HOOK)
    out = res.messages
    assert res.fits and structure_problems(out) == []
    assert out[1]["content"].startswith(FIRST)  # the request is kept, the summary may follow it
    assert "Earlier conversation compressed" in text_of(out)


def test_same_input_same_output():
    msgs = conversation(30, seed=3)
    a = compress(msgs, int(tokens(msgs) * 0.2), settings=NO_HOOK)
    b = compress(copy.deepcopy(msgs), int(tokens(msgs) * 0.2), settings=NO_HOOK, counter=TokenCounter())
    assert a.messages == b.messages and a.actions == b.actions and a.after == b.after


def test_structure_checker_finds_what_providers_reject():
    bad = [{"role": "system", "content": "s"}, {"role": "assistant", "content": "hi"},
           {"role": "assistant", "content": None, "tool_calls": [{"id": "x", "function": {"name": "f"}}]},
           {"role": "tool", "tool_call_id": "y", "content": "r"},
           {"role": "user", "content": "```py\nprint(1)\n"}]
    problems = structure_problems(bad)
    assert any("not user" in p for p in problems)
    assert any("two assistant" in p for p in problems)
    assert any("tool result y" in p for p in problems)
    assert any("tool call x" in p for p in problems)
    assert any("unclosed code fence" in p for p in problems)


# --- 3. summaries through the hook, and the fallback ------------------------------------------------------
class GoodSummarizer:
    calls: list[int] = []

    @hookspecs.hookimpl
    def summarize(self, messages, budget):
        GoodSummarizer.calls.append(len(messages))
        return f"The user and the agent worked through {len(messages)} messages of build fixes."


def test_summarize_hook_writes_the_summary_and_facts_still_survive():
    msgs = conversation(30)
    GoodSummarizer.calls = []
    res = compress(msgs, int(tokens(msgs) * 0.15), pm=pm_with(GoodSummarizer()))
    assert res.summarizer == "hook" and GoodSummarizer.calls
    assert "worked through" in text_of(res.messages)
    assert all(k in text_of(res.messages) for k in FACT_KEYS)
    assert res.fits and structure_problems(res.messages) == []


def test_builtin_summarizer_asks_the_utility_caller_with_the_packaged_prompt():
    seen = {}

    def caller(system, message, timeout):
        seen.update(system=system, message=message, timeout=timeout)
        return "Summary: the agent read many modules while fixing the nightly build."

    msgs = conversation(30)
    res = compress(msgs, int(tokens(msgs) * 0.15), pm=pm_with(builtin_summarize), utility_caller=caller,
                   settings=CompressionSettings(summarize_timeout_s=7))
    assert res.summarizer == "hook"
    assert "the agent read many modules" in text_of(res.messages)
    assert "faithful summary" in seen["system"] and re.search(r"at most \d+ tokens", seen["system"])
    assert "## tool (result of read_file" in seen["message"]
    assert 0 < seen["timeout"] <= 7


def test_the_utility_caller_belongs_to_the_call_that_was_given_it():
    msgs = conversation(30)
    budget = int(tokens(msgs) * 0.15)
    res = compress(msgs, budget, pm=pm_with(builtin_summarize),
                   utility_caller=lambda system, message, timeout: "The agent fixed the nightly build.")
    assert res.summarizer == "hook" and compression.get_utility_caller() is None
    compression.clear_summary_cache()
    assert compress(msgs, budget, pm=pm_with(builtin_summarize)).summarizer == "deterministic"


def test_set_utility_caller_still_works_and_says_it_is_deprecated():
    msgs = conversation(30)
    with pytest.warns(DeprecationWarning, match="compress\\(..., utility_caller=fn\\)"):
        compression.set_utility_caller(lambda system, message, timeout: "The agent fixed the nightly build.")
    try:
        res = compress(msgs, int(tokens(msgs) * 0.15), pm=pm_with(builtin_summarize))
    finally:
        compression.set_utility_caller(None)
    assert res.summarizer == "hook" and "fixed the nightly build" in text_of(res.messages)


def test_unchanged_span_is_not_summarized_twice():
    calls = []

    def caller(system, message, timeout):
        calls.append(message)
        return "The agent read modules and fixed imports."

    msgs = conversation(30)
    budget = int(tokens(msgs) * 0.15)
    first = compress(msgs, budget, pm=pm_with(builtin_summarize), utility_caller=caller)
    n = len(calls)
    again = compress(copy.deepcopy(msgs), budget, pm=pm_with(builtin_summarize), utility_caller=caller)
    assert n >= 1 and len(calls) == n  # the second call reused the summaries
    assert again.messages == first.messages and again.summarizer == "hook"
    assert any("reused" in a for a in again.actions)


def test_utility_model_that_fails_falls_back_to_the_digest():
    def caller(system, message, timeout):
        raise ConnectionError("provider down")

    msgs = conversation(30)
    res = compress(msgs, int(tokens(msgs) * 0.15), pm=pm_with(builtin_summarize), utility_caller=caller)
    assert res.summarizer == "deterministic" and res.fits
    assert any("failed (ConnectionError)" in a for a in res.actions)
    assert all(k in text_of(res.messages) for k in FACT_KEYS)
    det = compress(msgs, int(tokens(msgs) * 0.15), settings=NO_HOOK)
    assert res.messages == det.messages  # exactly the deterministic result


def test_utility_model_that_hangs_is_abandoned_after_the_timeout():
    release = threading.Event()

    def caller(system, message, timeout):
        release.wait(30)  # a stalled provider
        return "too late"

    msgs = conversation(30)
    t0 = time.monotonic()
    try:
        res = compress(msgs, int(tokens(msgs) * 0.15), pm=pm_with(builtin_summarize), utility_caller=caller,
                       settings=CompressionSettings(summarize_timeout_s=0.3))
        elapsed = time.monotonic() - t0
        assert not release.is_set()  # compress returned while the caller was still hanging
    finally:
        release.set()
    assert elapsed < 10
    assert res.summarizer == "deterministic" and res.fits
    assert sum("timed out" in a for a in res.actions) == 1  # waited once, not once per span
    assert "too late" not in text_of(res.messages)


def test_after_a_failure_the_summarizer_rests_then_is_asked_again():
    calls = []

    def caller(system, message, timeout):
        calls.append(1)
        raise TimeoutError("read timeout")

    msgs = conversation(30)
    budget = int(tokens(msgs) * 0.15)
    compress(msgs, budget, pm=pm_with(builtin_summarize), utility_caller=caller)
    assert len(calls) == 1  # one failure trips the breaker: the other spans are not tried either
    res = compress(msgs, budget, pm=pm_with(builtin_summarize), utility_caller=caller)
    assert len(calls) == 1 and res.summarizer == "deterministic" and res.fits
    assert any("summarizer skipped" in a and "failed (TimeoutError)" in a for a in res.actions)
    no_rest = CompressionSettings(summarize_retry_after_s=0)
    compress(msgs, budget, pm=pm_with(builtin_summarize), utility_caller=caller, settings=no_rest)
    assert len(calls) == 1  # still resting from the first failure (rest time is set when it trips)
    compression.clear_summary_cache()
    compress(msgs, budget, pm=pm_with(builtin_summarize), utility_caller=caller, settings=no_rest)
    compress(msgs, budget, pm=pm_with(builtin_summarize), utility_caller=caller, settings=no_rest)
    assert len(calls) >= 3  # with no rest it is asked on every call


def test_no_caller_set_means_deterministic_without_waiting():
    msgs = conversation(30)
    res = compress(msgs, int(tokens(msgs) * 0.15), pm=pm_with(builtin_summarize))
    assert res.summarizer == "deterministic"
    assert not any("summary" in a and "timed out" in a for a in res.actions)


def test_summary_with_an_unbalanced_fence_is_rejected():
    class Broken:
        @hookspecs.hookimpl
        def summarize(self, messages, budget):
            return "Here:\n```python\ndef half("

    msgs = conversation(30)
    res = compress(msgs, int(tokens(msgs) * 0.15), pm=pm_with(Broken()))
    assert res.summarizer == "deterministic"
    assert structure_problems(res.messages) == []


# --- 4. facts --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("share", [0.15, 0.08])
def test_planted_facts_survive_when_their_messages_go(share):
    msgs = conversation(40)
    res = compress(msgs, int(tokens(msgs) * share), settings=NO_HOOK)
    out = text_of(res.messages)
    assert not any(str(m.get("content")).startswith("Round 0:") for m in res.messages)  # the message went
    missing = [k for k in FACT_KEYS if k not in out]
    assert missing == []
    assert res.facts_carried >= len(FACT_KEYS)


def test_fact_inside_an_elided_tool_output_is_carried_into_the_marker():
    msgs = conversation(10, facts=False)
    tool = next(m for m in msgs if m["role"] == "tool")
    lines = tool["content"].split("\n")
    lines.insert(60, "WARNING: disk quota at 95% on /var/lib/postgres/data.db")
    tool["content"] = "\n".join(lines)
    res = compress(msgs, int(tokens(msgs) * 0.5), settings=NO_HOOK)
    marker = next(m["content"] for m in res.messages if m.get("tool_call_id") == tool["tool_call_id"])
    assert marker.startswith("[tool result elided")
    assert "WARNING: disk quota at 95% on /var/lib/postgres/data.db" in marker


def test_custom_important_patterns():
    msgs = conversation(30, facts=False)
    msgs[6]["content"] += "\nThe launch code word is PINEAPPLE-SEVEN."
    cs = CompressionSettings(important_patterns=[r"code word"], summarize=False)
    res = compress(msgs, int(tokens(msgs) * 0.1), settings=cs)
    assert "PINEAPPLE-SEVEN" in text_of(res.messages)
    plain = compress(msgs, int(tokens(msgs) * 0.1), settings=NO_HOOK)
    assert "PINEAPPLE-SEVEN" not in text_of(plain.messages)


def test_invalid_pattern_is_a_settings_error_naming_it():
    with pytest.raises(SettingsError, match=r"compression\.important_patterns.*\[1\]"):
        parse({"compression": {"important_patterns": ["ok", "(unclosed"]}}, "s.json")


# --- 5. cost-aware ---------------------------------------------------------------------------------------
def settings_with_prices(expensive: float = 15.0) -> Settings:
    return parse({
        "models": {
            "cheap": {"provider": "openai", "name": "gpt-4.1-mini", "price": {"input": 0.4, "output": 1.6},
                      "context_window": 1_000_000},
            "pricey": {"provider": "anthropic", "name": "claude-opus-4-1", "context_window": 200_000,
                       "price": {"input": expensive, "output": 75.0}},
            "small": {"provider": "openai", "name": "gpt-4.1-nano", "context_window": 8000,
                      "max_output_tokens": 1000, "price": {"input": 0.1, "output": 0.4}},
        },
        "tiers": {"utility": ["small"], "chat": ["cheap"], "premium": ["pricey"]},
    })


def test_plan_budget_decides_when_and_how_far():
    s = settings_with_prices()
    cat = Catalog(s)
    msgs = conversation(8)
    n = tokens(msgs)
    assert plan_budget(msgs, cat.get("cheap"), s) is None  # fits and cheap: leave it
    b = plan_budget(msgs, cat.get("pricey"), s)
    assert isinstance(b, Budget) and b.reason == "cost" and b.compress_system
    assert abs(b.tokens - int(n * 0.7)) <= 2  # target_reduction 0.3 (counts differ by encoding a little)
    fit = plan_budget(msgs, cat.get("small"), s)
    assert fit is not None and fit.reason == "fit" and fit.tokens == min(int(8000 * 0.7), 8000 - 1000)
    off = parse({**s.model_dump(by_alias=True, exclude_none=True), "compression": {"enabled": False}})
    assert plan_budget(msgs, Catalog(off).get("small"), off) is None


def test_expensive_model_saving_is_reported_in_tokens_and_dollars():
    s = settings_with_prices(expensive=15.0)
    pricey = Catalog(s).get("pricey")
    msgs = conversation(12)
    b = plan_budget(msgs, pricey, s)
    res = compress(msgs, b, pricey, settings=s)
    assert res.fits and res.after <= b.tokens
    assert res.tokens_saved == res.before - res.after > 0
    assert res.saved_usd == pytest.approx(res.tokens_saved * 15.0 / 1e6)
    assert res.to_dict()["saved_usd"] == round(res.saved_usd, 8)
    # The system prompt's whitespace is tidied in cost mode; its words are all kept.
    assert res.messages[0]["content"].split() == SYSTEM.split() and res.messages[0]["content"] != SYSTEM
    assert any("system prompt" in a for a in res.actions)


# --- 6. CLI ----------------------------------------------------------------------------------------------
class Ran:
    def __init__(self, r):
        self.returncode = r.exit_code
        self.stdout = r.stdout_bytes
        self.stderr = r.stderr_bytes


def cli(*args, stdin=None):
    from click.testing import CliRunner

    from agent_router.cli import cli as group

    return Ran(CliRunner().invoke(group, list(args), input=stdin, env={"AGENT_ROUTER_HOME": "/nonexistent"}))


def test_cli_compresses_a_file(tmp_path):
    msgs = conversation(20)
    f = tmp_path / "in.json"
    f.write_text(json.dumps(msgs))
    budget = int(tokens(msgs) * 0.3)
    p = cli("compress", str(f), "--budget", str(budget))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert isinstance(out, list) and out[0]["content"] == SYSTEM and tokens(out) <= budget
    p = cli("compress", str(f), "--budget", str(budget), "--json", "--model", "gpt-4.1")
    doc = json.loads(p.stdout)
    assert doc["before"] > doc["after"] and doc["actions"] and doc["saved_usd"] > 0
    assert doc["messages"][0]["content"] == SYSTEM


@pytest.mark.parametrize("content,args,expect", [
    (b"[{]", ["--budget", "100"], "invalid JSON at line 1"),
    (b"\xff\xfe[]", ["--budget", "100"], "not valid UTF-8"),
    (b'"just a string"', ["--budget", "100"], "expected a list of messages"),
    (b'[{"role": "user", "content": "hi"}]', ["--budget", "0"], "--budget: must be a positive"),
    (b'[{"role": "user", "content": "hi"}]', ["--budget", "lots"], "--budget: expected a whole number"),
    (b'[{"role": "user", "content": "hi"}]', [], "--budget: required"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path, content, args, expect):
    f = tmp_path / "in.json"
    f.write_bytes(content)
    p = cli("compress", str(f), *args)
    err = p.stderr.decode()
    assert p.returncode == 2 and p.stdout == b""
    assert err.count("\n") == 1 and err.startswith("error: ") and expect in err
    if "budget" not in expect:
        assert str(f) in err


def test_images_in_older_messages_are_replaced_by_a_text_marker():
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Compare the screenshots."}]
    for k in range(6):
        msgs.append({"role": "assistant", "content": f"Send screenshot {k}."})
        msgs.append({"role": "user", "content": [
            {"type": "text", "text": f"Screenshot {k} of the settings page."},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{'A' * 40}{k}"}}]})
    cs = CompressionSettings(keep_recent_turns=2, summarize=False)
    res = compress(msgs, tokens(msgs) - 2000, settings=cs)
    assert res.fits and structure_problems(res.messages) == []
    parts = [p for m in res.messages if isinstance(m["content"], list) for p in m["content"]]
    assert {"type": "text", "text": "[image elided (~765 tokens)]"} in parts
    assert res.messages[-1] == msgs[-1]  # the newest image stays
    assert sum(p.get("type") == "image_url" for p in parts) < 6


def test_older_bands_give_way_before_the_current_topic():
    msgs = conversation(40, facts=False)
    res = compress(msgs, int(tokens(msgs) * 0.5), settings=NO_HOOK)
    kept, elided = [], []
    for m in res.messages:
        if m["role"] == "tool":
            r = int(m["tool_call_id"].rsplit("_", 1)[1])
            (elided if m["content"].startswith("[tool result elided") else kept).append(r)
    assert kept and elided

    def kept_share(lo, hi):
        return sum(lo <= r < hi for r in kept) / sum(lo <= r < hi for r in kept + elided)

    old, mid, new = kept_share(0, 13), kept_share(13, 26), kept_share(26, 39)
    assert old < mid < new or (old < new and mid == new == 1.0)
    assert 0 in elided  # the oldest output went first


def test_when_recent_turns_alone_overflow_their_big_blocks_go_but_the_newest_turn_stays():
    msgs = conversation(3)
    huge = "\n".join(f"line {k}: " + "data " * 30 for k in range(800))
    msgs[-3]["content"] = huge  # the tool result of the last round: inside the newest 4 turns
    budget = 5000
    res = compress(msgs, budget, settings=NO_HOOK)
    assert res.fits and structure_problems(res.messages) == []
    assert res.messages[-3]["content"].startswith("[tool result elided")
    assert res.messages[-1] == msgs[-1] and res.messages[-2] == msgs[-2]
    assert any("recent turns exceed the budget" in a for a in res.actions)


TRICKY = [
    "plain prose only",
    "```python\nprint(1)\n```\n",
    "before\n````md\n```python\ninner fence stays inside\n```\n````\nafter",
    "~~~\ncode with ``` inside\n~~~\n",
    "unclosed\n```sh\nrm -rf build\n",
    "    ```\n    indented four spaces is not a fence\n",
    "inline ``` is not a fence when text precedes it",
    '{\n  "a": [1, 2, {"b": "}"}]\n}\ntrailing text',
    "[1, 2,\n 3]\n",
    "{not json at all\nsecond line}",
    "```\n\n```\n```js\nlet x = 1;\n```",
]


@pytest.mark.parametrize("text", TRICKY)
def test_blocks_partition_the_text_exactly_and_fences_are_whole(text):
    from agent_router.compression.blocks import split_text

    pieces = split_text(text)
    assert "".join(p for _, p, _ in pieces) == text
    for kind, piece, _ in pieces:
        if kind == "code":
            # A code piece opens with a fence and either closes it or runs to the end of the text.
            assert piece.lstrip(" ").startswith(("```", "~~~"))
            assert not unclosed_fence(piece) or text.endswith(piece)
        if kind == "json":
            json.loads(piece)
        if kind == "prose":
            assert not unclosed_fence(piece)


@pytest.mark.parametrize("seed", range(40))
def test_random_conversations_keep_every_invariant(seed):
    rng = random.Random(seed)
    msgs = random_conversation(rng)
    assert structure_problems(msgs) == []
    snapshot = copy.deepcopy(msgs)
    k = rng.randint(0, 5)
    budget = max(1, int(tokens(msgs) * rng.uniform(0.05, 0.95)))
    cs = CompressionSettings(keep_recent_turns=k, summarize=False)
    res = compress(msgs, budget, settings=cs)
    out = res.messages
    assert msgs == snapshot
    assert structure_problems(out) == [], (seed, structure_problems(out))
    assert out[0] == msgs[0]
    assert str(out[1]["content"]).startswith(str(msgs[1]["content"])) or out[1] == msgs[1]
    assert res.after == tokens(out) and (res.fits == (res.after <= budget))
    if res.fits:
        assert res.after <= budget
    assert compress(copy.deepcopy(msgs), budget, settings=cs).messages == out  # deterministic


# --- tool-call integrity when results stand apart from their calls; histories without a user ---------------
def _id_problems(out, given):
    """Tool ids left without their other half in `out`, for pairs that `given` held complete."""
    def halves(ms):
        calls = {str(tc["id"]): i for i, m in enumerate(ms) for tc in (m.get("tool_calls") or [])}
        results = {str(m["tool_call_id"]): i for i, m in enumerate(ms) if m.get("role") == "tool"}
        return calls, results

    gc, gr = halves(given)
    oc, orr = halves(out)
    problems = [f"result {cid} without its call" for cid in orr if cid in gc and cid not in oc]
    problems += [f"call {cid} without its result" for cid in oc if cid in gr and cid not in orr]
    problems += [f"result {cid} before its call" for cid in orr if cid in oc and orr[cid] < oc[cid]]
    return problems


def _separated(rng, msgs):
    """Move some tool results later, past other messages (as some agents write their histories)."""
    msgs = copy.deepcopy(msgs)
    for _ in range(rng.randint(1, 6)):
        tools = [i for i, m in enumerate(msgs) if m.get("role") == "tool"]
        if not tools:
            break
        i = rng.choice(tools)
        m = msgs.pop(i)
        msgs.insert(rng.randint(i, len(msgs)), m)
    return msgs


def test_separated_tool_results_are_never_orphaned():
    rng = random.Random(12)
    checked = 0
    for _ in range(60):
        given = _separated(rng, random_conversation(rng))
        total = tokens(given)
        for share in (0.05, 0.2, 0.4, 0.7, 0.9):
            r = compress(given, max(50, int(total * share)), settings=NO_HOOK)
            assert _id_problems(r.messages, given) == [], (share, [m["role"] for m in given])
            checked += 1
    assert checked == 300


def test_separated_result_goes_with_its_call_into_the_summary():
    call = {"id": "call_far", "type": "function", "function": {"name": "grep", "arguments": '{"q": "x"}'}}
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": FIRST},
            {"role": "assistant", "content": None, "tool_calls": [call]}]
    rng = random.Random(3)
    from .compression_fixtures import filler
    for _ in range(5):
        msgs += [{"role": "user", "content": filler(rng, 300)}, {"role": "assistant", "content": filler(rng, 300)}]
    msgs.append({"role": "tool", "tool_call_id": "call_far", "content": filler(rng, 400)})
    for _ in range(6):
        msgs += [{"role": "user", "content": filler(rng, 300)}, {"role": "assistant", "content": filler(rng, 300)}]
    summarized_both = 0
    for share in (0.3, 0.45, 0.6, 0.7, 0.8, 0.9):
        r = compress(msgs, int(tokens(msgs) * share), settings=NO_HOOK)
        assert _id_problems(r.messages, msgs) == []
        kept = [m for m in r.messages if m.get("tool_call_id") == "call_far" or m.get("tool_calls")]
        assert len(kept) in (0, 2)  # both halves kept, or both summarized together; never one of them
        summarized_both += not kept
    assert summarized_both >= 1


def test_history_without_a_user_message_is_compressed():
    rng = random.Random(5)
    from .compression_fixtures import filler
    msgs = [{"role": "system", "content": SYSTEM}]
    for k in range(12):
        msgs.append({"role": "assistant", "content": filler(rng, 20),
                     "tool_calls": [{"id": f"t{k}", "type": "function",
                                     "function": {"name": "shell", "arguments": '{"cmd": "make"}'}}]})
        msgs.append({"role": "tool", "tool_call_id": f"t{k}", "content": filler(rng, 600)})
    msgs.append({"role": "assistant", "content": "All steps ran; the build is green."})
    before = tokens(msgs)
    for share in (0.1, 0.3, 0.6):
        r = compress(msgs, int(before * share), settings=NO_HOOK)
        assert r.after < before and r.tokens_saved > 0
        assert r.messages[0] == msgs[0] and r.messages[-1] == msgs[-1]
        assert _id_problems(r.messages, msgs) == []
        # Well formed for a provider: no orphan call or result, no two messages of one role in a row.
        assert [p for p in structure_problems(r.messages) if "first message" not in p] == []
        if share >= 0.3:
            assert r.fits, r.actions


def test_history_without_a_user_message_random():
    rng = random.Random(21)
    for _ in range(40):
        given = [m for m in _separated(rng, random_conversation(rng)) if m["role"] != "user"]
        if len(given) < 2:
            continue
        total = tokens(given)
        for share in (0.1, 0.5):
            r = compress(given, max(50, int(total * share)), settings=NO_HOOK)
            assert not any(m.get("role") == "user" and "_agent_router_summary" in m for m in r.messages)
            assert _id_problems(r.messages, given) == []
