import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.escalation import evaluation as E
from agent_router.escalation import load_scorer, run_checks
from agent_router.escalation import scorer as S
from agent_router.escalation.checks import arithmetic


def ask(text):
    return [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": text}]


def fired(messages, answer, **kw):
    return {f.check for f in run_checks(messages, answer, **kw)}


GOOD = ask("Write a Python function that returns the average of a list, and tell me what 12 * 7 is.")
GOOD_ANSWER = """Here is a small function:

```python
def average(xs: list[float]) -> float:
    if not xs:
        raise ValueError("empty list")
    return sum(xs) / len(xs)
```

It raises on an empty list instead of dividing by zero. For example, average([2, 4, 9]) gives 15 / 3 = 5.

As for your second question: 12 * 7 = 84, and 84 + 16 = 100.
"""


def test_a_good_answer_fires_nothing():
    assert run_checks(GOOD, GOOD_ANSWER) == []
    assert run_checks(GOOD, GOOD_ANSWER, finish_reason="stop") == []
    good_call = [{"id": "c1", "type": "function",
                  "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "C"}'}}]
    assert run_checks(ask("What's the weather in Paris?"), "", tool_calls=good_call) == []
    # Short plain answers (a letter, a number) are complete answers, not truncated ones.
    assert run_checks(ask("Which is larger, A) 3 or B) 5? Answer:"), "B") == []
    assert run_checks(ask("How many legs has a spider?"), "8") == []


def test_broken_tool_call_json_and_json_blocks():
    broken = [{"id": "c1", "type": "function",
               "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": '}}]
    f = run_checks(ask("What's the weather in Paris?"), "", tool_calls=broken)
    assert [x.check for x in f] == ["json_unparseable"]
    assert "get_weather" in f[0].reason and "not JSON" in f[0].reason
    nameless = [{"type": "function", "function": {"name": "", "arguments": "{}"}}]
    assert "json_unparseable" in fired(ask("Call a tool"), "", tool_calls=nameless)
    block = "Here is the config:\n```json\n{\"name\": \"x\", \"tags\": [\"a\", \"b\",]}\n```\n"
    assert "json_unparseable" in fired(ask("Give me the config as JSON."), block)
    assert "json_unparseable" in fired(ask("Return JSON with keys name and age."), "{'name': 'Bo', 'age': 3}")
    assert not fired(ask("Return JSON with keys name and age."), '{"name": "Bo", "age": 3}')


def test_truncation():
    m = ask("Explain how TCP congestion control works.")
    cut = ("TCP congestion control keeps a sender from overwhelming the network. The sender keeps a congestion "
           "window that limits how much unacknowledged data can be in flight. At the start of a connection the "
           "window grows exponentially during slow start, and once it crosses the threshold the sender switches to")
    f = run_checks(m, cut)
    assert [x.check for x in f] == ["truncated"] and "mid-sentence" in f[0].reason
    assert not fired(m, cut + " congestion avoidance, growing the window linearly.")
    assert fired(m, "Short answer.", finish_reason="length") == {"truncated"}
    fence = "Use this:\n```python\ndef f(x):\n    return [i for i in range(x)\n"
    assert "truncated" in fired(ask("Write a python function listing numbers"), fence)
    assert "truncated" in fired(ask("Return the user as JSON"), '{"user": {"name": "Ann", "roles": ["admin", ')


def test_unparseable_python_only_when_code_is_asked():
    bad = "```python\ndef add(a, b)\n    return a + b\n```"
    f = run_checks(ask("Write a Python function that adds two numbers."), bad)
    assert [x.check for x in f] == ["code_unparseable"] and "line 1" in f[0].reason
    assert not fired(ask("Write a Python function that adds two numbers."),
                     "```python\ndef add(a, b):\n    return a + b\n```")
    # An interactive session parses once its prompts are stripped.
    assert not fired(ask("Show me Python code for sorting"), "```python\n>>> sorted([3, 1])\n[1, 3]\n```")


def test_refusal_and_asking_back():
    m = ask("How do I kill a Python process that hangs?")
    assert fired(m, "I'm sorry, but I can't help with that request.") == {"refusal"}
    assert "refusal" in fired(m, "As a responsible AI language model, I must point out that killing is harmful.")
    assert fired(ask("Fix the bug"), "Could you clarify which file the bug is in?") == {"ask_back"}
    assert not fired(m, "Run `kill -9 PID`, where PID comes from `ps aux | grep python`. That can't be caught.")


def test_repetition_loops():
    m = ask("List some fruits.")
    loop = "Here are some fruits:\n" + "- apples, pears and bananas are fruit\n" * 12
    assert "repetition" in fired(m, loop)
    words = " ".join(["the answer is that the model keeps saying the same thing again"] * 30)
    assert "repetition" in fired(m, words)
    assert "repetition" in fired(m, "Sure: " + "na" * 2000)
    assert not fired(m, "Apples, pears, bananas, cherries, plums, figs and dates.\n" + "-" * 3000 + "\nDone.")


def test_wrong_language():
    m = ask("Please explain what a binary search tree is and when to use one.")
    f = run_checks(m, "Двоичное дерево поиска — это структура данных, в которой каждый узел имеет не более двух детей.")
    assert [x.check for x in f] == ["wrong_language"] and "cyrillic" in f[0].reason
    zh = "二叉搜索树是一种数据结构，每个节点最多有两个子节点，左子树的值都小于节点的值。"
    assert "wrong_language" in fired(m, zh)
    translate = ask("Translate into Russian: a binary search tree is a data structure used for lookups")
    assert not fired(translate, "Двоичное дерево поиска — это структура данных для поиска.")


def test_arithmetic_slips():
    m = ask("Janet has 16 eggs, eats 3 and bakes with 4. How many are left?")
    f = run_checks(m, "She eats 3 and bakes 4, so 16 - 3 - 4 = 8 eggs are left.")
    assert [x.check for x in f] == ["arithmetic_slip"] and "16 - 3 - 4 = 8" in f[0].reason
    assert not fired(m, "She eats 3 and bakes 4, so 16 - 3 - 4 = 9 eggs are left.")
    assert arithmetic("So 9 * $2 = $<<9*2=18>>18 a day, and 1,000 + 500 = 1,500.") == (2, [])
    assert arithmetic("x + 3 = 5 and 20% * 50 = 10 and 2 + 3 * 4 = 14")[1] == []
    assert arithmetic("10 / 3 = 3.33, and 7 / 2 = 3 boxes, 7 / 2 = 4")[1] == []
    assert arithmetic("3 + 4 = 8")[1] == ["3 + 4 = 8"]


def test_empty_answer():
    assert fired(ask("hi"), "  \n") == {"empty"}
    assert fired(ask("hi"), "", finish_reason="length") == {"empty", "truncated"}
    assert fired(ask("hi"), None) == {"empty"}


# Built by the test that uses them, not at import: every xdist worker imports this module to collect it (~50 ms).
HOSTILE = [
    lambda: "(" * 1_000_000,
    lambda: "{" * 500_000 + "}" * 400_000,
    lambda: "```\n" * 250_000,
    lambda: "1+" * 500_000 + "=3",
    lambda: "= 1 " * 250_000,
    lambda: "9" * 1_000_000,
    lambda: "I can't " * 125_000,
    # random code points, lone surrogates included (a JSON answer can carry them)
    lambda: "".join(map(chr, random.Random(7).choices(range(32, 0x2FFFF), k=200_000))) * 5,
    lambda: "```python\n" + "(" * 999_000 + "\n```",
    lambda: "```json\n" + "[" * 999_000 + "\n```",
    lambda: "word " * 200_000,
]


@pytest.mark.parametrize("case", range(len(HOSTILE)), ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_megabyte_hostile_answers_do_not_raise(case):
    hostile = HOSTILE[case]()
    m = ask("Write a Python function that returns JSON " + hostile[:1000])
    out = run_checks(m, hostile, tool_calls=[{"function": {"name": "f", "arguments": hostile}}])
    assert all(f.check and f.reason for f in out)
    x, _ = S.features(m, hostile)
    assert np.isfinite(x).all()


def _rows(n=120, seed=0):
    """Rows whose cheap answer visibly fails on a third of requests (then the strong model wins)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = i % 3
        q = f"Question {i}: how do I sort a list of {rng.randint(2, 99)} numbers in Python?"
        if kind == 0:
            ans, qw = "I'm sorry, but I can't help with that request.", 0.0
        elif kind == 1:
            ans, qw = "```python\ndef sort_it(xs)\n    return sorted(xs)\n```", 0.0
        else:
            ans, qw = "Use `sorted(xs)`, which returns a new list, or `xs.sort()` to sort in place.", 1.0
        if rng.random() < 0.1:
            qw = 1.0 - qw  # label noise
        rows.append({"id": f"r{i}", "source": "test", "messages": [{"role": "user", "content": q}],
                     "quality": {"cheap": qw, "strong": 1.0}, "cost_usd": {"cheap": 0.0001, "strong": 0.01},
                     "answers": {"cheap": ans, "strong": "Use sorted(xs)."}})
    return rows


def test_scorer_out_of_fold_ranks_failed_answers_first():
    rows = _rows()
    s = S.scores_for_rows(rows, ["cheap", "strong"])
    failed = [s[i] for i in range(len(rows)) if i % 3 != 2]
    good = [s[i] for i in range(len(rows)) if i % 3 == 2]
    assert min(failed) > max(good)
    # No length features: still ranks them, and a scorer trained on other rows scores unseen ones.
    s2 = S.scores_for_rows(rows, ["cheap", "strong"], length=False)
    assert np.mean([s2[i] for i in range(len(rows)) if i % 3 != 2]) > np.mean([s2[i] for i in range(2, 120, 3)])
    other = _rows(seed=1)
    for r in other:
        r["id"] = "o" + r["id"]
    s3 = S.scores_for_rows(rows[:3], ["cheap", "strong"], train_rows=other)
    assert s3[0] > s3[2] and s3[1] > s3[2]


def test_packaged_scorer_and_calibrated_threshold():
    sc = load_scorer()
    assert sc.meta["source"].startswith("gsm8k") and 0 < sc.threshold < 1
    m = ask("A shop sells 4 boxes of 12 pens. How many pens does it sell?")
    good, s_good, f_good = sc.should_escalate(m, "4 boxes of 12 pens: 4 * 12 = 48 pens.")
    bad, s_bad, f_bad = sc.should_escalate(m, "4 boxes of 12 pens: 4 * 12 = 52 pens.")
    assert f_good == [] and [f.check for f in f_bad] == ["arithmetic_slip"] and s_bad > s_good
    rows = _rows()
    q = np.asarray([[r["quality"]["cheap"], r["quality"]["strong"]] for r in rows])
    c = np.asarray([[r["cost_usd"]["cheap"], r["cost_usd"]["strong"]] for r in rows])
    cal = S.calibrate_threshold(S.scores_for_rows(rows, ["cheap", "strong"]), q, c, target=0.95)
    assert cal["quality"] >= 0.95 and cal["escalation_rate"] < 0.9 and cal["cost_share"] < 0.95


def test_bad_weights_file_is_one_clear_error(tmp_path):
    p = tmp_path / "w.json"
    p.write_text('{"format": "something else"}')
    with pytest.raises(S.EscalationWeightsError, match="not escalation weights"):
        load_scorer(str(p))


def test_curves_count_the_cheap_call():
    n = 200
    qual = np.asarray([[0.0, 1.0] if i % 4 == 0 else [1.0, 1.0] for i in range(n)])
    cost = np.asarray([[0.001, 0.01]] * n)
    perfect = [1.0 if i % 4 == 0 else 0.0 for i in range(n)]
    res = E.compare(qual, cost, {"perfect": perfect}, {"escalation": perfect}, hybrid_of="perfect", seeds=3)
    # 95% of strong-only quality needs 40 of the 50 failures fixed. Request-only with perfect knowledge sends those
    # 40 to strong and the rest to cheap; escalation pays the cheap call on every row, and the strong call on 40.
    assert res["request-only (perfect)"]["save95"] == pytest.approx(1 - (40 * 0.01 + 160 * 0.001) / 2.0)
    assert res["escalation"]["save95"] == pytest.approx(1 - (200 * 0.001 + 40 * 0.01) / 2.0)
    assert res["escalation"]["share95"] == pytest.approx(40 / 200)
    assert res["random"]["save95"] < res["escalation"]["save95"] <= res["hybrid"]["save95"] + 1e-12
    const = E.compare(qual, cost, {"c": [0.5] * n}, {}, seeds=1)["request-only (c)"]
    assert const["area"] == pytest.approx(0.5, abs=0.02)


def _write_rows(tmp_path, rows):
    p = tmp_path / "rows.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


def test_cli_eval_and_score_escalate(tmp_path):
    path = _write_rows(tmp_path, _rows())
    r = CliRunner().invoke(cli, ["eval", path, "--models", "cheap,strong", "--escalate", "--router", "analyzer"])
    assert r.exit_code == 0, r.output
    for name in ("request-only (analyzer)", "escalation", "escalation (no length features)", "hybrid", "random",
                 "oracle"):
        assert f"| {name} " in r.output
    r = CliRunner().invoke(cli, ["eval", path, "--models", "cheap,strong", "--escalate", "--router", "analyzer",
                                 "--json"])
    res = json.loads(r.output)["results"]
    assert res["escalation"]["save95"] > res["random"]["save95"] + 0.2
    r = CliRunner().invoke(cli, ["score", path, "--escalate", "--models", "cheap,strong"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.output.splitlines()]
    assert [x["id"] for x in lines] == [f"r{i}" for i in range(120)] and set(lines[0]) == {"id", "score"}
    assert lines[0]["score"] > lines[2]["score"]


def test_cli_escalate_errors_are_one_line(tmp_path):
    rows = _rows(60)
    del rows[5]["answers"]["cheap"]
    path = _write_rows(tmp_path, rows)
    r = CliRunner().invoke(cli, ["score", path, "--escalate", "--models", "cheap,strong"])
    assert r.exit_code == 2 and "'r5'" in r.output and "answers.cheap" in r.output
    r = CliRunner().invoke(cli, ["score", path, "--escalate"])
    assert r.exit_code == 2 and "--models" in r.output
