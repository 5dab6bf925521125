"""Per-request adaptive routing: outcomes move the kind of request they were about, spend stays near the static
router's share, and what was learned survives through the ledger into another process."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.learned import router as learned
from agent_router.learned.adaptive import HASH_FOLD, AdaptiveEstimator
from agent_router.learned.features import DENSE_KEYS
from agent_router.ledger import Ledger
from agent_router.plugins import load_plugins
from agent_router.router import Router
from agent_router.settings import Settings, load

# Two kinds of request of one task type (chat), both sent to the cheap tier by the packaged weights: multiple
# choice questions, and short open questions.
CHOICE = [
    "Which is larger, 0.7 or 0.65?\nA) 0.7\nB) 0.65\nAnswer:",
    "Which planet is closest to the sun?\nA) Venus\nB) Mercury\nC) Mars\nAnswer:",
    "Which word is a verb?\nA) quickly\nB) run\nC) blue\nAnswer:",
    "Which animal lays eggs?\nA) cow\nB) dog\nC) hen\nAnswer:",
    "Which of these is a prime number?\nA) 9\nB) 15\nC) 7\nAnswer:",
]
NEW_CHOICE = "Which metal is liquid at room temperature?\nA) iron\nB) mercury\nC) copper\nAnswer:"
OPEN = ["What time zone is Paris in?", "Name three colours of the rainbow.", "Tell me a fun fact about otters.",
        "What is the capital of Canada?", "Suggest a name for a goldfish."]
NEW_OPEN = "Give me a synonym for happy."


def _msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _router(**kw) -> Router:
    # Written for the quality objective (the cost objective adds a cost ranking these outcomes do not test).
    return Router(Settings.model_validate({"learned": {"enabled": True, "objective": "quality", **kw}}),
                  pm=load_plugins())


def test_bad_outcomes_on_one_kind_of_request_send_that_kind_to_premium_but_not_another_of_its_task_type():
    router = _router(adaptive_keep_spend=0, adaptive_explore=0)
    before_choice, before_open = router.route(_msgs(NEW_CHOICE)), router.route(_msgs(NEW_OPEN))
    assert before_choice.analysis.task_type == before_open.analysis.task_type == "chat"
    assert before_choice.tier != "premium" and before_open.tier != "premium"
    # The cheap tier got the multiple choice questions wrong and the open questions right.
    for _ in range(8):
        for c, o in zip(CHOICE, OPEN, strict=True):
            learned.record_outcome(router, None, "chat", good=False, messages=_msgs(c))
            learned.record_outcome(router, None, "chat", good=True, messages=_msgs(o))
    after_choice, after_open = router.route(_msgs(NEW_CHOICE)), router.route(_msgs(NEW_OPEN))
    assert after_choice.tier == "premium"
    assert after_open.tier == before_open.tier
    rise = {k: a.analysis.features["need"] - b.analysis.features["need"]
            for k, a, b in (("choice", after_choice, before_choice), ("open", after_open, before_open))}
    assert rise["choice"] > 0.1 and rise["choice"] > 10 * abs(rise["open"])
    assert any(r.startswith("adaptive: outcomes for chat moved need") for r in after_choice.analysis.reasons)


def test_spend_stays_near_the_static_share_when_outcomes_say_the_cheap_tier_fails_everything():
    kept = _router(adaptive_explore=0)  # adaptive_keep_spend: the default window
    free = _router(adaptive_keep_spend=0, adaptive_explore=0, adaptive_prior_strength=21.0)  # its own estimator
    stream = [t for _ in range(30) for t in (*CHOICE, *OPEN)]
    shares = {}
    for name, router in (("kept", kept), ("free", free)):
        premium = static = 0
        for i, text in enumerate(stream):
            d = router.route(_msgs(text))
            premium += d.tier == "premium"
            static += d.analysis.features["need_raw"] >= router.learned.calibration.high
            if d.tier != "premium":  # every cheap answer is bad; premium ones are good
                learned.record_outcome(router, None, d.tier, good=False, messages=_msgs(text))
            elif i % 2:
                learned.record_outcome(router, None, d.tier, good=True, messages=_msgs(text))
        shares[name] = (premium / len(stream), static / len(stream))
    # Left free, the outcomes buy quality with spend; kept, the premium share stays at the static router's.
    assert shares["free"][0] > shares["free"][1] + 0.3
    assert abs(shares["kept"][0] - shares["kept"][1]) <= 0.05


def test_decisions_are_deterministic_for_the_same_outcomes_in_the_same_order():
    def run() -> list[bool]:
        est = AdaptiveEstimator({}, per_request=True, explore=1.0, keep_spend=50, seed=3)
        out = []
        for i in range(200):
            dense = [0.0] * len(est.dense_keys)
            dense[i % 7] = 1.0
            dense[est.dense_keys.index("bias")] = 1.0
            key = est.new_key()
            _need, strong, _raw, _static = est.decide("chat", 0.7, 0.9, 0.56, dense=dense, key=key)
            out.append(strong)
            est.update({"task_type": "chat", "tier": "premium" if strong else "chat", "good": (i % 3) > 0,
                        "key": key, "cost_usd": 0.01 if strong else 0.001})
        return out

    assert run() == run()


def _second_process(settings_file: Path, texts: list[str]) -> dict:
    """Route `texts` in a fresh Python process that only shares the ledger with this one."""
    code = (
        "import json, sys\n"
        "from agent_router import learned\n"
        "from agent_router.plugins import load_plugins\n"
        "from agent_router.router import Router\n"
        "from agent_router.settings import load\n"
        "s = load(sys.argv[1])\n"
        "r = Router(s, pm=load_plugins())\n"
        "read = learned.sync_ledger(r)\n"
        "out = {t: r.route([{'role': 'user', 'content': t}]).tier for t in json.loads(sys.argv[2])}\n"
        "print(json.dumps({'read': read, 'tiers': out}))\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(settings_file), json.dumps(texts)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_outcomes_in_the_ledger_teach_another_process_per_request_without_storing_the_prompt(tmp_path):
    db = tmp_path / "ledger.db"
    settings_file = tmp_path / "settings.json"
    learned_kw = {"enabled": True, "objective": "quality", "adaptive_keep_spend": 0, "adaptive_explore": 0}
    settings_file.write_text(json.dumps({"ledger": {"path": str(db)}, "learned": learned_kw}))
    settings = load(settings_file)
    router = Router(settings, pm=load_plugins())
    with Ledger(db, settings) as led:
        for _ in range(8):
            for c, o in zip(CHOICE, OPEN, strict=True):
                bad = led.record(decision=router.route(_msgs(c)))
                good = led.record(decision=router.route(_msgs(o)))
                led.add_feedback(bad, False, "explicit", "test")
                led.add_feedback(good, True, "explicit", "test")
    with sqlite3.connect(db) as con:
        sketches = [r[0] for r in con.execute("SELECT route_sketch FROM calls")]
    # One verdict the way a user gives it.
    r = CliRunner().invoke(cli, ["feedback", "1", "bad", "--settings", str(settings_file)])
    assert r.exit_code == 0, r.output
    # The ledger holds numbers, not the request: no word of any prompt is in a sketch.
    assert all(sketches) and not any(w in s for s in sketches for w in ("planet", "Paris", "otters", "prime"))
    got = _second_process(settings_file, [NEW_CHOICE, NEW_OPEN])
    assert got["read"] == 81
    assert got["tiers"][NEW_CHOICE] == "premium"
    assert got["tiers"][NEW_OPEN] != "premium"
    # Without the outcomes the same process would have sent both to the cheapest tier (short, simple requests).
    assert _second_process_without_outcomes(tmp_path, [NEW_CHOICE, NEW_OPEN]) == {NEW_CHOICE: "utility",
                                                                                  NEW_OPEN: "utility"}


def _second_process_without_outcomes(tmp_path: Path, texts: list[str]) -> dict:
    empty = tmp_path / "empty"
    empty.mkdir()
    f = empty / "settings.json"
    f.write_text(json.dumps({"ledger": {"path": str(empty / "ledger.db")},
                             "learned": {"enabled": True, "objective": "quality", "adaptive_keep_spend": 0,
                                         "adaptive_explore": 0}}))
    got = _second_process(f, texts)
    assert got["read"] == 0
    return got["tiers"]


# The estimator keeps one shared copy of a vector asked again (the same array object, as LearnedRouter passes a
# request's cached vector): an outcome must still teach on the request it is about.
def test_an_outcome_moves_the_request_it_is_about_and_not_the_one_decided_after_it():
    est = AdaptiveEstimator({}, explore=0.0, keep_spend=0)
    dim = len(DENSE_KEYS) + HASH_FOLD
    first, other = np.zeros(dim), np.zeros(dim)
    first[0], other[1] = 1.0, 1.0
    # `first` twice (the same array object, as LearnedRouter passes a request's cached vector), `other` between.
    for key, v in (("a", first), ("b", other), ("c", first), ("d", other)):
        est.decide("chat", 0.6, 0.8, 0.5, key=key, vector=v)
    est.update({"task_type": "chat", "tier": "premium", "good": False, "key": "c"})
    _, strong_first = est.residual.adjust(first, 0.6, 0.8)
    _, strong_other = est.residual.adjust(other, 0.6, 0.8)
    assert strong_first < 0.8  # premium's answer to that request was bad: premium looks worse for it
    assert strong_other == 0.8  # the request decided after it is not touched
    est.update({"task_type": "chat", "tier": "premium", "good": True, "key": "d"})
    assert est.residual.adjust(other, 0.6, 0.8)[1] > 0.8
