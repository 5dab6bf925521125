import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_router.cli import cli


def run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_route_prompt_and_stdin_messages():
    r = run("route", "--json", "hi")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["tier"] == "utility" and d["reasons"]
    r = run("route", input=json.dumps([{"role": "user", "content": "Write a Python script that sorts a CSV."}]))
    assert r.exit_code == 0 and "est. $" in r.output


def test_route_rejects_non_utf8_and_empty_stdin():
    r = run("route", input=b"\xff\xfe[]")
    assert r.exit_code == 2 and "not valid UTF-8" in r.output
    r = run("route", input="[]")
    assert r.exit_code == 2 and "is empty" in r.output


def test_models_and_check_and_bad_settings(tmp_path):
    r = run("models", "--json")
    rows = json.loads(r.output)
    assert all(row["price_source"].startswith("genai-prices") for row in rows)
    bad = tmp_path / "s.json"
    bad.write_text('{"routing": {"strategy": "cheapest"}}')
    r = run("check", "--settings", str(bad))
    assert r.exit_code == 2 and str(bad) in r.output and "$.routing.strategy" in r.output


def test_score_and_eval_on_rows(tmp_path):
    rows = tmp_path / "rows.jsonl"
    lines = []
    for i in range(40):
        hard = i % 2 == 0
        text = ("Prove step by step that the algorithm terminates, then implement it in Rust. " * (3 if hard else 0)
                + f"question {i}")
        lines.append({"id": f"r{i}", "messages": [{"role": "user", "content": text}],
                      "quality": {"weak": 0.0 if hard else 1.0, "strong": 1.0},
                      "cost_usd": {"weak": 0.001, "strong": 0.01}})
    rows.write_text("\n".join(json.dumps(x) for x in lines))
    r = run("score", str(rows))
    out = [json.loads(x) for x in r.output.splitlines()]
    assert len(out) == 40 and {"id", "score", "task_type", "tier"} <= set(out[0])
    r = run("eval", str(rows), "--models", "weak,strong", "--json")
    rep = json.loads(r.output)["results"]
    assert rep["analyzer"]["apgr"] > rep["random"]["apgr"] + 0.2
    assert rep["oracle"]["save95"] > 0.4
    r = run("eval", str(rows), "--models", "weak,gpt-5")
    assert r.exit_code == 2 and "gpt-5 not in" in r.output
    (tmp_path / "broken.jsonl").write_text('{"id": 1, "messages": [{"role": "user", "content": "x"}]}\n{oops\n')
    r = run("score", str(tmp_path / "broken.jsonl"))
    assert r.exit_code == 2 and "broken.jsonl:2" in r.output


def test_console_script_is_installed():
    p = subprocess.run([sys.executable, "-m", "agent_router", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "route" in p.stdout


def test_settings_example_is_current():
    example = Path(__file__).parent.parent / "settings.example.json"
    r = run("settings", "example")
    assert json.loads(r.output) == json.loads(example.read_text()), "regenerate: agent-router settings example"


def test_unexpected_os_error_is_one_line_not_a_traceback():
    """Output to a full device raises an OSError no command expects; the top-level handler reports it in one
    line with exit status 2."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "agent_router", "settings", "example"], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == ["error: No space left on device"]


def test_eval_default_scorer_is_the_builtin_router_as_it_routes(tmp_path):
    from agent_router.learned.router import LearnedRouter
    from agent_router.learned.scoring import router_scores
    from agent_router.settings import Settings

    texts = ["hi", "thanks!", "Write a Python function that parses ISO 8601 dates, with tests.",
             "Prove that there are infinitely many primes.", "Which metal is liquid?\nA) iron\nB) mercury\nAnswer:"]
    rows = [{"id": f"new{i}", "messages": [{"role": "user", "content": t}],
             "quality": {"weak": 1.0, "strong": 1.0}, "cost_usd": {"weak": 0.001, "strong": 0.01}}
            for i, t in enumerate(texts)]
    s = Settings()
    lr = LearnedRouter(s.learned.model_copy(update={"adaptive": False}))
    # On rows its weights never saw, the `default` scorer gives the scores the default router routes by.
    got = router_scores(rows, ["weak", "strong"], lr, s.routing.thresholds.low, s.routing.thresholds.high)
    assert got == pytest.approx([lr.analyze(r["messages"]).score for r in rows])
    assert got[0] < s.routing.thresholds.low and got[1] < s.routing.thresholds.low  # "hi", "thanks!": utility
    assert min(got[2], got[3]) >= s.routing.thresholds.low  # the coding task and the proof: chat or above
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    off = tmp_path / "off.json"
    off.write_text('{"learned": {"enabled": false}}')
    r = run("eval", str(path), "--models", "weak,strong", "--router", "default", "--router", "analyzer",
            "--settings", str(off))
    assert r.exit_code == 0, r.output
    assert "default: learned router (packaged weights, objective cost)" in r.output
    assert "analyzer: the heuristic analyzer (learned.enabled false)" in r.output
