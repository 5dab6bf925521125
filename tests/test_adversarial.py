"""Hostile message text: 1 MB strings built to make regular expressions, the JSON scanner or the tokenizer
backtrack or recurse, fed through route, compress, the analyzer and the learned features.

No wall-clock claims here (bench/adversarial.py measures time). Each test runs under a 20 s watchdog that only
detects a hang (before the fix, 200 KB of "a" took 80-110 s to route); what is asserted is the result, and
structurally that every scan reads a bounded part of the text however long the text is.
"""

from __future__ import annotations

import faulthandler
import json
import math
import random
import re

import pytest

from agent_router import analyzer, tokens
from agent_router.analyzer import analyze
from agent_router.compression import blocks as text_blocks
from agent_router.compression import facts
from agent_router.compression.blocks import split_text
from agent_router.compression.compressor import compress, structure_problems
from agent_router.compression.facts import OperatorPattern, compile_patterns, find_facts
from agent_router.errors import SettingsError
from agent_router.learned import features as learned_features
from agent_router.learned.features import extract
from agent_router.messages import SCAN_HEAD_CHARS, SCAN_TAIL_CHARS
from agent_router.plugins import load_plugins
from agent_router.router import Router
from agent_router.settings import DEFAULT_IMPORTANT_PATTERNS, CompressionSettings, Settings, parse, pattern_problem
from agent_router.tokens import EXACT_CHARS, TokenCounter

from .compression_fixtures import SYSTEM, filler  # noqa: E402

MB = 1_000_000
NO_HOOK = CompressionSettings(summarize=False)


def adversarial(n: int = MB) -> dict[str, str]:
    """Text of about `n` characters of each hostile kind."""
    rng = random.Random(7)
    hexrun = "".join(rng.choices("0123456789abcdef", k=n))
    dump = "".join(f"{i * 16:08x}: " + " ".join(hexrun[j:j + 4] for j in range(i * 32, i * 32 + 32, 4)) + "\n"
                   for i in range(n // 58))
    js = ('!function(e,t){"use strict";var n=e.document,r=[],i=function(a,b){return a.c(b)&&{x:1}};'
          'for(var o=0;o<r.length;o++)if(r[o]===t)return!0;e.$=i}(window);')
    kinds = {
        "word_run": "a" * n,
        "hex_run": hexrun,
        "hex_dump": dump,
        "slash_run": "/a" * (n // 2),
        "brackets": "[" * n,
        "brackets_lines": "[\n" * (n // 2),
        "objects": '{"a":' * (n // 5),
        "spaces": "start" + " " * n + "end",
        "newlines": "start" + "\n" * n + "end",
        "blank_mix": "go" + " \t\n" * (n // 3) + "stop",
        "minified_js": (js * (n // len(js) + 1))[:n],
        "digits": "1" * n,
        "capitals": "A" * n,
        "answer_cues": "Answer: x\n" * (n // 10),
        "option_lines": "(A) x\n" * (n // 6),
        "calls": "f(" * (n // 2),
        "dollars": "$" + "x" * n,
    }
    kinds["mixed"] = "".join(v[: n // len(kinds)] for v in kinds.values())
    return kinds


class _Kinds(dict):
    """adversarial() built on first use, in the worker that runs these tests, not in every worker collecting
    them (the parametrize lists need only the names)."""

    def __missing__(self, kind: str) -> str:
        self.update(adversarial())
        return dict.__getitem__(self, kind)


KIND_NAMES = list(adversarial(60))
KINDS = _Kinds()


@pytest.fixture(autouse=True)
def hang_guard():
    """End the run with every thread's traceback if one test takes 20 s: a hang detector, not a timing claim
    (each test takes well under a second). A watchdog thread, so it fires even inside a C regex loop."""
    faulthandler.dump_traceback_later(20, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def router():
    return Router()


@pytest.fixture(scope="module")
def learned_router():
    return Router(Settings.model_validate({"learned": {"enabled": True}}), pm=load_plugins())


# --- results on 1 MB of each kind -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_route_decides_on_1mb(router, kind):
    d = router.route([{"role": "system", "content": SYSTEM}, {"role": "user", "content": KINDS[kind]}])
    assert d.tier in ("utility", "chat", "premium") and d.model
    assert 0.0 <= d.analysis.score <= 1.0
    # A megabyte is ~250k tokens: more than most windows; the count says so and is flagged as an estimate.
    assert d.estimated_input_tokens > 1000 and d.token_source == "estimated"


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_learned_router_decides_on_1mb(learned_router, kind):
    msgs = [{"role": "user", "content": KINDS[kind]}]
    d = learned_router.route(msgs)
    assert d.analysis.source == "learned" and 0.0 <= d.analysis.score <= 1.0
    f = extract(msgs)
    assert all(math.isfinite(v) for v in f.dense) and f.hashed
    # The real length still counts, though only the two ends are read.
    assert f.dense[learned_features.DENSE_KEYS.index("log_chars_full")] > math.log1p(MB // 2) / 10


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_analyze_on_1mb(kind):
    a = analyze([{"role": "user", "content": KINDS[kind]}])
    assert 0.0 <= a.score <= 1.0 and a.task_type and a.reasons
    assert a.features["length"] > 0


@pytest.mark.parametrize("kind", KIND_NAMES)
@pytest.mark.parametrize("role", ["assistant", "tool"])
def test_compress_fits_budget_with_1mb_in_history(kind, role):
    big = KINDS[kind]
    call = {"id": "call_1", "type": "function", "function": {"name": "fetch", "arguments": '{"url": "x"}'}}
    middle = ([{"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_1", "content": big}] if role == "tool"
              else [{"role": "assistant", "content": big}])
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Read the page and fix the bug."},
            *middle, {"role": "user", "content": "Now run the tests " + filler(random.Random(1), 40)},
            {"role": "assistant", "content": "Running them."}]
    r = compress(msgs, 4000, settings=NO_HOOK)
    assert r.fits and r.after <= 4000, r.actions
    assert r.before > 4000 and r.tokens_saved > 0
    assert big not in json.dumps(r.messages)
    assert [p for p in structure_problems(r.messages) if "tool" in p] == []


@pytest.mark.parametrize("kind", ["word_run", "slash_run", "hex_dump", "mixed", "newlines", "brackets_lines"])
def test_compress_with_1mb_newest_request(kind):
    """The newest turn is kept verbatim: it cannot fit, and compression says so instead of hanging."""
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hello there, start"},
            {"role": "assistant", "content": "ok"}, {"role": "user", "content": KINDS[kind]}]
    r = compress(msgs, 4000, settings=NO_HOOK)
    assert not r.fits and r.messages[-1]["content"] == KINDS[kind]


def test_split_text_survives_deep_brackets():
    for kind in ("brackets", "brackets_lines", "objects"):
        pieces = split_text(KINDS[kind])
        assert "".join(p for _, p, _ in pieces) == KINDS[kind]


# --- structure: every scan reads a bounded part of the text ----------------------------------------------
class _Recording:
    """Stands in for a compiled pattern and records the length of every text it is given."""

    def __init__(self, inner, seen):
        self.inner, self.seen = inner, seen

    def __getattr__(self, name):
        fn = getattr(self.inner, name)

        def call(text="", *a, **kw):
            self.seen.append(len(text) if isinstance(text, str) else 0)
            return fn(text, *a, **kw)
        return call


def _record_patterns(monkeypatch, module, seen):
    for name, v in list(vars(module).items()):
        if isinstance(v, re.Pattern):
            monkeypatch.setattr(module, name, _Recording(v, seen))
        elif isinstance(v, analyzer._Words):
            monkeypatch.setattr(v, "rx", _Recording(v.rx, seen))


def test_feature_scans_read_a_bounded_window(monkeypatch):
    seen: list[int] = []
    _record_patterns(monkeypatch, analyzer, seen)
    _record_patterns(monkeypatch, learned_features, seen)
    for big in (KINDS["mixed"], KINDS["word_run"] * 3):
        extract([{"role": "user", "content": big}])
        analyze([{"role": "user", "content": big}])
    assert seen and max(seen) <= SCAN_HEAD_CHARS + SCAN_TAIL_CHARS + 1


def test_fact_scans_read_bounded_lines(monkeypatch):
    seen: list[int] = []
    patterns = [_Recording(p, seen) for p in compile_patterns(list(DEFAULT_IMPORTANT_PATTERNS))]
    text = KINDS["slash_run"] + "\n" + KINDS["hex_dump"] + "remember: deploy at 17:00 to /srv/app/main.py\n"
    found = find_facts(text, patterns, 0)
    bound = facts.SCAN_HEAD_CHARS + facts.SCAN_TAIL_CHARS + 3 * facts.LINE_CHARS
    assert seen and max(seen) <= bound
    # A fact in the text's last part is found, and its position points into the original text.
    kept = [f for f in found if "remember" in f.line]
    assert kept and text[kept[0].pos:].startswith("remember: deploy")


def test_token_count_encodes_a_bounded_amount(monkeypatch):
    enc = tokens._ENCODINGS.get("cl100k_base", None)
    assert enc is not None
    given: list[int] = []

    class Enc:
        def encode(self, text, **kw):
            given.append(len(text))
            return enc.encode(text, **kw)

    n, exact = tokens.encoded_length(Enc(), KINDS["word_run"])
    assert not exact and sum(given) <= EXACT_CHARS
    assert abs(n - MB / 8) / (MB / 8) < 0.02  # "a" * 8 is one token


def test_sampled_count_is_close_and_flagged():
    counter = TokenCounter()
    enc = tokens._ENCODINGS.get("cl100k_base", None)
    rng = random.Random(2)
    for text in (filler(rng, 40_000), KINDS["hex_dump"][:200_000], KINDS["minified_js"][:200_000]):
        c = counter.count_text(text, "openai", "gpt-4")  # cl100k: otherwise "counted"
        exact = len(enc.encode(text, disallowed_special=()))
        assert c.source == "estimated" and abs(c.tokens - exact) / exact < 0.05
        # Counted again from the cache: still flagged.
        assert counter.count_messages([{"role": "user", "content": text}], "openai", "gpt-4").source == "estimated"
    short = counter.count_messages([{"role": "user", "content": "hello"}], "openai", "gpt-4")
    assert short.source == "counted"


def test_shipped_patterns_have_no_nested_repetition():
    for p in DEFAULT_IMPORTANT_PATTERNS:
        assert pattern_problem(p) == ""
    for module in (analyzer, learned_features, text_blocks, facts):
        for v in vars(module).values():
            rx = v.rx if isinstance(v, analyzer._Words) else v
            if isinstance(rx, re.Pattern):
                assert pattern_problem(rx.pattern) == "", rx.pattern


# --- operator patterns ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [r"(a+)+$", r"(?:x\w*)*y", r"((ab)*)+", r"(?:/[\w.-]+)+\.py"])
def test_nested_repetition_refused_at_load(bad):
    with pytest.raises(SettingsError) as e:
        parse({"compression": {"important_patterns": ["ok", bad]}}, "s.json")
    msg = str(e.value)
    assert "$.compression.important_patterns" in msg and "[1]" in msg and "nested repetition" in msg


def test_huge_pattern_refused_at_load():
    with pytest.raises(SettingsError, match=r"important_patterns.*at most 1,000"):
        parse({"compression": {"important_patterns": ["x" * 5000]}}, "s.json")


def test_former_default_is_replaced_by_its_linear_form():
    old = r"/[\w.-]+(?:/[\w.-]+)*\.[A-Za-z]\w*"
    cs = CompressionSettings(important_patterns=[old])
    assert cs.important_patterns == [DEFAULT_IMPORTANT_PATTERNS[1]]


def test_backtracking_operator_pattern_is_time_bounded():
    """A pattern the load check cannot see through (bounded, but exponential on a run of "a") is stopped by
    its time limit: compression finishes, and the other patterns still carry their lines."""
    slow = r"(?:a|aa){1,40}c"
    cs = CompressionSettings(important_patterns=[slow, "remember"], summarize=False)
    assert isinstance(compile_patterns(cs.important_patterns)[0], OperatorPattern)
    text = ("a" * 60 + "\n") * 2000 + "remember: the port is 8080\n"
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "start the work now"},
            {"role": "assistant", "content": text},
            {"role": "user", "content": "next step please, go on"}, {"role": "assistant", "content": "ok"}]
    r = compress(msgs, 1000, settings=cs)
    assert r.fits
    assert "remember: the port is 8080" in json.dumps(r.messages)


def test_lone_surrogates_are_routed_and_counted_not_raised():
    """JSON can carry a lone surrogate (a string cut between the halves of an emoji): routing, the learned
    features and token counts treat it as U+FFFD; a split pair is the character it encodes."""
    from agent_router.messages import clean_text, validate
    from agent_router.router import Router
    from agent_router.settings import load

    assert clean_text("a\ud83d\ude00b\ud800") == "a\U0001F600b\ufffd"
    plain = [{"role": "user", "content": "plain"}]
    assert validate(plain) is plain  # nothing to clean: the caller's own list
    msgs = [{"role": "user", "content": "Summarize: ok \ud83d then \udc00 " * 2000},
            {"role": "assistant", "content": [{"type": "text", "text": "x\ud800"}]},
            {"role": "user", "content": [{"type": "text", "text": "and now? \udfff"}]}]
    d = Router(load()).route(msgs)
    assert d.tier in ("utility", "chat", "premium") and d.estimated_cost_usd >= 0
    assert msgs[0]["content"].count("\ud83d") == 2000  # the caller's messages are not changed
