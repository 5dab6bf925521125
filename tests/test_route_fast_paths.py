"""The learned router's per-request work, made cheaper, computes what the straightforward code computes: each
shortcut below is checked against the plain version on generated requests (short, long, past the scan window,
few-shot, multiple choice, images, tool calls, multi-turn, non-ASCII), to the bit."""

from __future__ import annotations

import functools
import json
import math
import random
import zlib

import numpy as np
import pytest

from agent_router import analyzer
from agent_router.learned import adaptive
from agent_router.learned.features import _MASK, _WORD, MAX_HASH_CHARS, _word_buckets, digits_and_capitals, extract
from agent_router.learned.model import load_model
from agent_router.learned.router import heuristic_score
from agent_router.messages import has_image, last_user_index, text_of

WORDS = (
    "why prove compare design debug python code sql regex solve compute probability research story poem joke "
    "extract summarize json table search deploy install detailed brief hi thanks must never tl;dr c++ step-by-step "
    "root cause write a function fix the bug how many xfix the code then finally first, 1. 2) - * = 3 + 4 $x$ "
    "\\frac İstanbul ΣΊΣΥΦΟΣ naïve 東京 😀 ² ½ ٣ ___ _ Option A (b) the a of and to in is it"
).split()
FEW = "Q: 2+2?\nAnswer: 4\n\nQ: 3+5?\nAnswer: 8\n\nQ: What is 17 * 23? Show the work.\n"
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def _text(rnd: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        w = rnd.choice(WORDS)
        w = w.upper() if rnd.random() < 0.15 else w
        out.append(w + (rnd.choice(["?", ".", "\n", "\n\n", ":"]) if rnd.random() < 0.1 else ""))
    return " ".join(out)


N_REQUESTS = 150


def _requests(n: int) -> list[list[dict]]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        k = i % 9
        if k == 0:
            m = [{"role": "user", "content": _text(rnd, rnd.randint(1, 15))}]
        elif k == 1:
            m = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": _text(rnd, 300)}]
        elif k == 2:  # past the scan window, and past MAX_HASH_CHARS
            m = [{"role": "user", "content": _text(rnd, 9000)}]
        elif k == 3:
            m = [{"role": "user", "content": FEW * rnd.randint(1, 2) + _text(rnd, rnd.randint(0, 6))}]
        elif k == 4:  # an image on the request, or on a message after it
            m = [{"role": "user", "content": [{"type": "text", "text": FEW + _text(rnd, 8)}, IMAGE]}]
            if rnd.random() < 0.5:
                m = [{"role": "user", "content": _text(rnd, 8)}, {"role": "assistant", "content": [IMAGE]}]
        elif k == 5:
            m = [{"role": "user", "content": "weather?"},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": "c", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
                 {"role": "tool", "tool_call_id": "c", "content": "sunny"},
                 {"role": "user", "content": _text(rnd, rnd.randint(1, 20))}]
        elif k == 6:
            m = []
            for _ in range(rnd.randint(2, 6)):
                m += [{"role": "user", "content": _text(rnd, 20)}, {"role": "assistant", "content": _text(rnd, 30)}]
            m.append({"role": "user", "content": _text(rnd, 10)})
        elif k == 7:
            m = [{"role": "user", "content": rnd.choice(["a", "why ", "1. ", "İ", "`"]) * 40_000}]
        else:
            m = [{"role": "user", "content": "Which is prime?\nA. 4\nB) 6\nC: 7\n(D) 9\nAnswer:"}]
        out.append(m)
    return out


@functools.cache
def requests_() -> list[list[dict]]:
    """The requests, built in the worker that runs these tests (not in every worker collecting them)."""
    return _requests(N_REQUESTS)


def _hashed_plain(text: str) -> dict[int, float]:
    """The hashed n-grams as first written: a dict of float counts, L2-normed."""
    words = _WORD.findall(text[:MAX_HASH_CHARS].lower())
    counts: dict[int, float] = {}
    for w in set(words):
        for b in _word_buckets(w):
            counts[b] = counts.get(b, 0.0) + 1.0
    for a, b in set(zip(words, words[1:], strict=False)):
        k = zlib.crc32(("b:" + a + " " + b).encode("utf-8")) & _MASK
        counts[k] = counts.get(k, 0.0) + 1.0
    norm = math.sqrt(sum(v * v for v in counts.values())) or 1.0
    return {k: v / norm for k, v in counts.items()}


@pytest.mark.parametrize("i", range(N_REQUESTS))
def test_features_equal_the_straightforward_computation(i: int) -> None:
    msgs = requests_()[i]
    f = extract(msgs)
    j = last_user_index(msgs)
    # The analyzer's features of the focus as a message of its own, as extract() first computed them.
    last = msgs[j] if has_image(msgs[j]) else {"role": "user", "content": f.focus}
    assert f.analyzer == analyzer.features([*msgs[:j], last])[0]
    # The heuristic score simple chat asks for: reused from those features when they are the same.
    assert heuristic_score(msgs, f) == analyzer.analyze(msgs).score
    assert list(f.hashed.items()) == list(_hashed_plain(f.focus).items())
    # The model's logits: the plain column gather, to the bit.
    model = load_model(None)
    z = model.w_dense @ np.asarray(f.dense, dtype=np.float32)
    if f.hashed:
        idx = np.fromiter(f.hashed.keys(), dtype=np.int64)
        z = z + model.w_hash[:, idx] @ np.fromiter(f.hashed.values(), dtype=np.float32)
    assert model.logits(f).tobytes() == z.tobytes()
    # The per-request layer's folded n-grams: from the arrays or the dict, as a loop adds them.
    plain = np.zeros(adaptive.HASH_FOLD)
    for k, v in f.hashed.items():
        plain[k % adaptive.HASH_FOLD] += v
    assert adaptive.fold_hashed((f.buckets, f.values)).tobytes() == plain.tobytes()
    assert adaptive.fold_hashed(f.hashed).tobytes() == plain.tobytes()


def test_sketch_is_the_json_it_always_was() -> None:
    def plain(dense, pw, ps, key=None):
        d = {"v": adaptive.SKETCH_VERSION, "x": [round(float(v), 3) for v in dense],
             "p": [round(float(pw), 4), round(float(ps), 4)]}
        if key is not None:
            d["k"] = key
        return json.dumps(d, separators=(",", ":"))

    rnd = random.Random(3)
    odd = [0.0, -0.0, -0.0001, 1, 2.5e-4, 1e17, float("nan"), float("inf"), -float("inf"), np.float32(0.1),
           np.float64(1 / 3), 0.0005, 0.0015]
    for _ in range(300):
        dense = [rnd.choice(odd) if rnd.random() < 0.3 else rnd.random() * rnd.choice([1, 10, 0.001])
                 for _ in range(rnd.randint(0, 50))]
        pw, ps = rnd.choice([rnd.random(), 0.0, -0.0, float("nan")]), rnd.random()
        key = rnd.choice([None, "a1b2:7", "ü\"\\"])
        assert adaptive.sketch(dense, pw, ps, key) == plain(dense, pw, ps, key)
        assert adaptive.sketch(dense, pw, ps, key) == plain(dense, pw, ps, key)  # again, from remembered texts


def test_digits_and_capitals_count_as_str_methods_do() -> None:
    rnd = random.Random(5)
    alphabet = "aZ09 _\n.İıΣσ²½٣東😀ǅ"
    for n in range(300):
        s = "".join(rnd.choice(alphabet[:6] if n % 2 else alphabet) for _ in range(rnd.randint(0, 80)))
        assert digits_and_capitals(s) == (sum(map(str.isdigit, s)), sum(map(str.isupper, s)))


def test_requests_cover_what_they_claim() -> None:
    kinds = {
        "image": any(has_image(m) for r in requests_() for m in r),
        "few-shot": any(extract(r).shots for r in requests_()),
        "past the window": any(len(text_of(r[-1])) > 40_000 for r in requests_()),
        "non-ASCII": any(not text_of(r[-1]).isascii() for r in requests_()),
    }
    assert all(kinds.values()), kinds


def test_word_lists_match_as_their_plain_alternation() -> None:
    lists = [o for o in vars(analyzer).values() if isinstance(o, analyzer._Words)]
    assert len(lists) >= 10
    texts = [text_of(r[-1]).lower()[:5000] for r in requests_()]
    texts += [" ".join(w for o in lists for w in o.words if w.isalpha()) + " xdebug xfix the code rap tl;dr c++x"]
    import re

    for o in lists:
        plain = re.compile(r"(?:" + "|".join(o.words) + r")\b")
        for t in texts:
            assert [m.span() for m in o.rx.finditer(t)] == [m.span() for m in plain.finditer(t)]


TOOL_STEP = [{"role": "assistant", "content": None, "tool_calls": [
    {"id": "t1", "type": "function", "function": {"name": "search", "arguments": "{\"q\": \"x\"}"}}]},
    {"role": "tool", "tool_call_id": "t1", "content": "result " * 50}]


def _variants(msgs: list[dict]) -> list[list[dict]]:
    """The request as the steps of a tool loop (what follows its question), and changed where extract() reads."""
    j = last_user_index(msgs)
    out = [msgs + TOOL_STEP, msgs + TOOL_STEP + TOOL_STEP + [{"role": "assistant", "content": "so far"}]]
    out.append([{"role": "system", "content": "Be brief."}, *msgs])  # a system message
    out.append([{"role": "developer", "content": "x"}, *msgs])
    out.append([{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"}, *msgs])  # a turn
    out.append([{"role": "assistant", "content": "a longer earlier answer"}, *msgs])  # more context
    out.append([{"role": "assistant", "content": [IMAGE]}, *msgs])  # an image before the question
    out.append([*msgs[:j], {**msgs[j], "content": text_of(msgs[j]) + " more"}, *msgs[j + 1:]])
    return out


def _same(a, b) -> bool:
    return (a.dense == b.dense and a.buckets.tobytes() == b.buckets.tobytes()
            and a.values.tobytes() == b.values.tobytes() and a.task_type == b.task_type and a.focus == b.focus
            and a.analyzer == b.analyzer and a.shots == b.shots)


def test_requests_with_one_features_key_have_the_same_features_and_others_a_key_of_their_own() -> None:
    from agent_router.learned.features import KEY_MAX_CHARS, features_key

    seen: dict = {}
    for msgs in requests_()[:60]:
        for m in [msgs, *_variants(msgs)]:
            k = features_key(m)
            if k is None:
                assert has_image(m[last_user_index(m)]) or len(text_of(m[last_user_index(m)])) > KEY_MAX_CHARS
                continue
            f = extract(m)
            if k in seen:
                assert _same(seen[k], f)
            seen[k] = f
        base, loop1, loop2, *changed = [features_key(m) for m in [msgs, *_variants(msgs)]]
        if base is not None:
            assert base == loop1 == loop2  # the steps of a tool loop are the request they answer
            assert all(c != base for c in changed)


def test_a_router_keeping_what_it_scored_decides_as_one_that_scores_every_request() -> None:
    from agent_router.learned.router import LearnedRouter
    from agent_router.settings import LearnedSettings

    kept, fresh, small = (LearnedRouter(LearnedSettings()) for _ in range(3))
    fresh.SCORED_MAX, small.SCORED_MAX = 0, 5  # none kept; the oldest forgotten beyond five
    rnd = random.Random(11)
    # Requests of every kind but the very long (they are never kept; one of them is enough), and tool-loop steps.
    short = [r for r in requests_()[:40] if len(text_of(r[last_user_index(r)])) <= 5_000]
    pool = short + [requests_()[2]] + [v for r in requests_()[:12] for v in _variants(r)[:2]]
    for step in range(120):
        msgs = rnd.choice(pool)
        a, b, c = kept.analyze(msgs), fresh.analyze(msgs), small.analyze(msgs)
        for x in (b, c):
            assert (a.score, a.task_type, a.reasons, a.features, a.needs_vision) == (
                x.score, x.task_type, x.reasons, x.features, x.needs_vision), step
            assert a.sketch.rsplit(',"k":', 1)[0] == x.sketch.rsplit(',"k":', 1)[0]  # all but the memory key
        assert len(small._scored) <= 5
        if step % 3 == 0:  # outcomes move the adaptive layer; both routers learn the same
            tier, good = rnd.choice(["chat", "premium"]), rnd.random() < 0.5
            for r in (kept, fresh, small):
                r.record_outcome(None, tier, good, messages=msgs)
    assert len(kept._scored) > 0 and not fresh._scored


def test_scans_skipped_on_a_cheap_test_find_what_the_full_scans_find() -> None:
    """A scan skipped because the text lacks what every match needs ("(" for a call ending a line, a digit,
    "$" or "\\" for math, "_" for a blank, a final ":" for an answer cue, ":" and a line break for a worked
    example) counts what the full scan counts."""
    import re

    from agent_router.learned.features import _ANSWER_CUE, _BLANK, DENSE_KEYS
    from agent_router.messages import scan_window

    odd = ["fill in: the cat sat on the _ mat", "snake_case __ x_y", "Q: 2+2?\nAnswer:", "Answer:   ", "answer :\n",
           "The answer: 42", "ANSWER:\u2003", "foo(bar)\nbaz(1, 2) {", "x = f(y);\n", "a => b -> c :: d",
           "def f(x):\n    return x\n", "```py\nprint(1)\n```", "no digits here, only words", "$x$ and \\frac{a}{b}",
           "٣ + ٤ = ٧", "x² ½", "price 3.50, or 4", "then finally\n1. first\n- next", "A: yes\nfine\n\nQ: and now?"]
    texts = [text_of(r[last_user_index(r)]) for r in requests_()] + odd
    for t in texts:
        w = scan_window(t)
        low = w.lower()
        f = analyzer.text_features(w, low, 0, 0, 0, 0, False)
        assert f["code_presence"] == analyzer._sat(
            len(re.findall("```", w)) * 3 + len(analyzer._CODE_LINE.findall(w)), 4)
        assert f["math"] == analyzer._sat(analyzer._MATH_WORDS.count(low) + len(analyzer._MATH.findall(w)), 2)
        assert f["numbers"] == analyzer._sat(len(analyzer._NUMBER.findall(w)), 4)
        for k in (1, 2):
            ends = list(analyzer._SHOT_END.finditer(w))
            plain = (w, 0) if len(ends) < k or len(w[ends[-1].end():].strip()) < analyzer.MIN_QUESTION_CHARS else (
                w[ends[-1].end():], len(ends))
            assert analyzer.split_examples(w, k) == plain
        fe = extract([{"role": "user", "content": t}])
        assert fe.dense[DENSE_KEYS.index("blank")] == (1.0 if _BLANK.search(fe.focus) else 0.0)
        assert fe.dense[DENSE_KEYS.index("answer_cue")] == (
            1.0 if _ANSWER_CUE.search(fe.focus.rstrip()[-200:]) else 0.0)
    # The texts exercise both sides of every test.
    assert any("(" not in t and analyzer._CODE_LINE_NO_CALL.search(t) for t in texts)
    assert any(analyzer._NUMBER.search(t) and not t.isascii() for t in texts)
    assert any(extract([{"role": "user", "content": t}]).dense[DENSE_KEYS.index("answer_cue")] for t in odd)
    assert any(extract([{"role": "user", "content": t}]).dense[DENSE_KEYS.index("blank")] for t in odd)
