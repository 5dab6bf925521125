"""The learned router: packaged weights, deterministic training, calibration, adaptive shifts, the hook."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.learned import router as learned
from agent_router.learned.adaptive import AdaptiveEstimator
from agent_router.learned.features import focus_text
from agent_router.learned.model import QualityModel, WeightsError
from agent_router.plugins import load_plugins
from agent_router.router import Router
from agent_router.settings import TASK_TYPES, Settings, load

from .learned_fixtures import STRONG, WEAK, write_rows

ROOT = Path(__file__).resolve().parents[1]


def _train(*args: str):
    """`agent-router train ARGS` as a user runs it."""
    return CliRunner().invoke(cli, ["train", *args])


def test_packaged_weights_load_offline_and_are_small():
    path = ROOT / "agent_router" / "data" / "router_weights.npz"
    assert path.stat().st_size <= 5_000_000
    m = QualityModel.load()
    assert len(m.heads) == 2
    assert m.meta["trained_on"]["file"] == "routellm_mmlu_gsm8k_dev.jsonl"  # the Apache-2.0 rows only
    cal = m.meta["calibration"]
    assert 0 <= cal["low"] <= cal["high"] <= 1
    # A grade-school word problem needs the strong model more than a greeting does.
    hard = m.score_messages([{"role": "user", "content": "Natalia sold clips to 48 of her friends in April, and "
                              "then she sold half as many clips in May. How many clips did she sell altogether?"}])
    easy = m.score_messages([{"role": "user", "content": "hi, thanks!"}])
    assert hard > easy


def test_training_is_deterministic_and_learns_the_fixture(tmp_path):
    rows = write_rows(tmp_path / "fixture.jsonl")
    outs = []
    for name in ("a.npz", "b.npz"):
        out = tmp_path / name
        r = _train(str(rows), "--models", f"{WEAK},{STRONG}", "--out", str(out), "--folds", "2", "--iterations", "40")
        assert r.exit_code == 0, r.output
        outs.append(QualityModel.load(out))
    a, b = outs
    assert a.heads == b.heads == [WEAK, STRONG]
    assert np.array_equal(a.w_hash, b.w_hash) and np.array_equal(a.w_dense, b.w_dense)
    assert a.meta == b.meta
    assert a.cost_dense is not None and np.array_equal(a.cost_dense, b.cost_dense)
    assert a.seen("fixture-3") and not a.seen("fixture-999")
    hard = a.score_messages([{"role": "user", "content": "Prove that the sum of the first 9 odd numbers is a "
                              "perfect square, step by step."}])
    easy = a.score_messages([{"role": "user", "content": "Say hello to my friend number 9."}])
    assert hard > easy + 0.2
    # The cost objective (gain per predicted dollar) uses the same weights' cost head.
    lr = learned.LearnedRouter(learned.LearnedSettings(weights=str(tmp_path / "a.npz"), objective="cost"))
    assert lr.objective == "cost"
    hard_a = lr.analyze([{"role": "user", "content": "Prove that the sum of the first 9 odd numbers is a "
                          "perfect square, step by step."}])
    easy_a = lr.analyze([{"role": "user", "content": "Say hello to my friend number 9."}])
    assert hard_a.score > easy_a.score


def test_train_refuses_rows_that_cannot_be_shipped(tmp_path):
    rows = write_rows(tmp_path / "alpacaeval_copy.jsonl", 10)
    r = _train(str(rows), "--models", f"{WEAK},{STRONG}", "--out", str(tmp_path / "x.npz"))
    assert r.exit_code != 0 and "licence" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.npz").exists()


def test_bad_weights_file_names_the_file(tmp_path):
    bad = tmp_path / "weights.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match=str(bad)):
        QualityModel.load(bad)
    with pytest.raises(WeightsError, match="cannot open"):
        QualityModel.load(tmp_path / "missing.npz")


def test_calibrate_writes_settings(tmp_path):
    rows = write_rows(tmp_path / "fixture.jsonl")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"routing": {"strategy": "balanced"}}), encoding="utf-8")
    r = CliRunner().invoke(cli, ["calibrate", str(rows), "--models", f"{WEAK},{STRONG}", "--target", "0.9",
                                "--settings", str(settings), "--enable"])
    assert r.exit_code == 0, r.output
    assert "premium share" in r.output
    data = json.loads(settings.read_text())
    assert data["routing"] == {"strategy": "balanced"}  # the rest of the file is kept
    cal = data["learned"]["calibration"]
    assert data["learned"]["enabled"] is True and data["learned"]["quality_target"] == 0.9
    assert cal["quality"] >= 0.9 and 0 <= cal["premium_share"] <= 1 and cal["rows"] == 80
    s = load(settings)
    assert s.learned.calibration is not None and s.learned.calibration.high == cal["high"]


def test_after_calibrate_enable_easy_requests_still_reach_the_utility_tier(tmp_path):
    # Rows of two models calibrate the chat/premium cut only; the utility tier must not vanish with it (a
    # greeting went to chat after `calibrate --enable`: the low cut sat at 0 on the need scale).
    rows = write_rows(tmp_path / "fixture.jsonl")
    settings = tmp_path / "settings.json"
    r = CliRunner().invoke(cli, ["calibrate", str(rows), "--models", f"{WEAK},{STRONG}", "--settings", str(settings),
                                "--enable"])
    assert r.exit_code == 0, r.output
    # Progress goes to stderr as a few lines when it is not a terminal.
    progress = [ln for ln in r.output.splitlines() if ln.startswith("calibrate: ")]
    assert progress and len(progress) <= 5
    router = Router(load(settings), pm=load_plugins())
    for easy in ("hi", "thanks!", "hello there"):
        d = router.route([{"role": "user", "content": easy}])
        assert d.analysis.source == "learned" and d.tier == "utility", (easy, d.reasons)
    for asks in ("Prove that the sum of the first 9 odd numbers is a perfect square, step by step.",
                 "Write a Python function that merges two sorted lists."):
        d = router.route([{"role": "user", "content": asks}])
        assert d.tier != "utility", (asks, d.reasons)  # code, math and reasoning stay on the calibrated tiers


def test_calibrating_on_the_training_rows_reads_their_stored_out_of_fold_predictions(tmp_path):
    rows = write_rows(tmp_path / "fixture.jsonl")
    weights = tmp_path / "w.npz"
    r = _train(str(rows), "--models", f"{WEAK},{STRONG}", "--out", str(weights), "--folds", "2", "--iterations", "40")
    assert r.exit_code == 0, r.output
    m = QualityModel.load(weights)
    assert m.oof is not None and m.oof.shape == (80, 2)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"learned": {"weights": str(weights)}}))
    r = CliRunner().invoke(cli, ["calibrate", str(rows), "--settings", str(settings), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "calibrate: folds" not in r.output  # no retraining: the predictions came with the weights
    # The same out-of-fold scores as at training, so the same cut point as the weights' own calibration.
    high = float(re.search(r"cut points low [0-9.]+ high ([0-9.]+)", r.output).group(1))
    assert high == pytest.approx(m.meta["calibration"]["high"], abs=2e-3)  # stored as float16


def test_calibrate_rejects_bad_target(tmp_path):
    rows = write_rows(tmp_path / "fixture.jsonl", 10)
    r = CliRunner().invoke(cli, ["calibrate", str(rows), "--models", f"{WEAK},{STRONG}", "--target", "1.5",
                                "--settings", str(tmp_path / "s.json")])
    assert r.exit_code == 2 and "--target" in r.output
    assert not (tmp_path / "s.json").exists()


def test_calibration_meets_quality_target_at_least_cost():
    rng = np.random.default_rng(0)
    n = 400
    hard = rng.random(n) < 0.3
    q = np.stack([np.where(hard, 0.0, 1.0), np.ones(n)], axis=1)
    c = np.tile([0.001, 0.01], (n, 1))
    scores = np.where(hard, 0.8, 0.2) + rng.normal(0, 0.05, n)
    cal = learned.calibrate(scores, q, c, target=0.95)
    assert cal.quality >= 0.95
    assert cal.premium_share < 0.35  # only (most of) the hard rows go to premium
    capped = learned.calibrate(scores, q, c, cost_cap=0.2)
    assert capped.cost_share <= 0.2


def _router(**learned_kw) -> Router:
    s = Settings.model_validate({"learned": {"enabled": True, **learned_kw}})
    return Router(s, pm=load_plugins())


def test_learned_analyzer_returns_valid_analysis():
    router = _router()
    d = router.route([{"role": "user", "content": "Write a Python function that merges two sorted lists."}])
    a = d.analysis
    assert a.source == "learned"
    assert 0.0 <= a.score <= 1.0
    assert a.task_type in TASK_TYPES and a.task_type == "code"
    assert a.reasons[0] == "task: code" and any(r.startswith("learned: P(good)") for r in a.reasons)
    assert {"need", "need_raw"} <= set(a.features)
    # Learned routing is the default; learned.enabled false routes on the heuristic alone.
    default = Router(Settings(), pm=load_plugins()).route([{"role": "user", "content": "hello"}])
    assert default.analysis.source == "learned"
    off = Router(Settings.model_validate({"learned": {"enabled": False}}), pm=load_plugins())
    assert off.route([{"role": "user", "content": "hello"}]).analysis.source == "heuristic"


def test_default_router_sends_a_simple_creative_ask_to_utility():
    # The weights learned from MMLU and GSM8K rows and know nothing of a joke; the cost objective ranked it by its
    # low predicted premium cost and sent it to premium. Simple creative asks go to utility like plain chat.
    router = Router(Settings(), pm=load_plugins())
    for easy in ("Tell me a joke", "Write a limerick about cats"):
        d = router.route([{"role": "user", "content": easy}])
        assert d.analysis.source == "learned" and d.tier == "utility", (easy, d.reasons)
        assert "creative" in d.analysis.reasons[0] and any("-> utility" in r for r in d.analysis.reasons)
    essay = router.route([{"role": "user", "content": "Write a 2000-word essay on the causes of World War I, "
                                                      "with citations and a counter-argument section."}])
    assert essay.analysis.task_type == "creative" and essay.tier != "utility", essay.reasons


def test_few_shot_prompt_is_judged_on_its_real_question():
    shot = "Which gas do plants take in?\nA) oxygen\nB) carbon dioxide\nAnswer:\nB\n\n"
    focus, n = focus_text(shot * 3 + "What is 2 + 2?\nA) 3\nB) 4\nAnswer:")
    assert n == 3 and focus.startswith("What is 2 + 2?")
    assert focus_text("Just a question?") == ("Just a question?", 0)


def test_bad_feedback_on_the_cheap_tier_shifts_routing_up():
    router = _router()
    msgs = [{"role": "user", "content": "hi, thanks!"}]
    before = router.route(msgs)
    assert before.tier != "premium"
    for _ in range(200):
        learned.record_outcome(router, before.analysis.task_type, before.tier, good=False)
    after = router.route(msgs)
    assert after.analysis.score > before.analysis.score
    assert after.tier == "premium"
    assert any(r.startswith("adaptive:") for r in after.analysis.reasons)


def test_adaptive_estimator_without_outcomes_changes_nothing_and_good_premium_feedback_raises_need():
    # The per task type layer alone (learned.adaptive_per_request off).
    est = AdaptiveEstimator({"chat": {"weak": 0.8, "strong": 0.9}}, strength=10, per_request=False)
    assert est.adjust("chat", 0.7, 0.9) == (0.7, 0.9)
    est.consume([{"task_type": "chat", "tier": "premium", "good": True, "source": "explicit"}] * 30)
    pw, ps = est.adjust("chat", 0.7, 0.9)
    assert pw == 0.7 and ps > 0.9
    with pytest.raises(Exception, match="missing 'good'"):
        est.update({"task_type": "chat", "tier": "chat"})


def test_ledger_feedback_reaches_the_router(tmp_path):
    from agent_router.ledger import Ledger

    db = tmp_path / "ledger.db"
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps({"ledger": {"path": str(db)}, "learned": {"enabled": True}}))
    settings = load(settings_file)
    router = Router(settings, pm=load_plugins())
    msgs = [{"role": "user", "content": "hi, thanks!"}]
    before = router.route(msgs)
    assert before.tier != "premium"
    with Ledger(db, settings) as led:
        ids = [led.record(decision=before) for _ in range(120)]
        for cid in ids[1:]:
            led.add_feedback(cid, False, "explicit", "test")
    # One verdict through the CLI, as a user would give it.
    r = CliRunner().invoke(cli, ["feedback", str(ids[0]), "bad", "--settings", str(settings_file)])
    assert r.exit_code == 0, r.output
    assert learned.sync_ledger(router) == 120
    assert learned.sync_ledger(router) == 0  # nothing new: each outcome counts once
    after = router.route(msgs)
    assert after.tier == "premium" and after.analysis.score > before.analysis.score


def test_signal_tracker_turns_retries_and_escalations_into_implicit_verdicts():
    from agent_router.learned.adaptive import SignalTracker

    got = []
    t = SignalTracker(lambda cid, good, source, signal: got.append((cid, good, source, signal)))
    ask = [{"role": "user", "content": "Fix the failing test in parser.py"}]
    assert t.on_call("c1", ask, 1) is None
    assert t.on_call("c1", [{"role": "user", "content": "fix the failing test in  parser.py"}], 2) == 1
    assert t.on_switch_model("c1") == 2
    assert t.on_tool_error("c1") is None  # call 2 already has a verdict
    assert t.on_switch_model("other") is None
    assert got == [(1, False, "implicit", "retry"), (2, False, "implicit", "switch_model")]


def test_eval_scores_the_learned_routers_beside_the_baselines(tmp_path):
    rows = write_rows(tmp_path / "fixture.jsonl")
    r = CliRunner().invoke(cli, ["eval", str(rows), "--models", f"{WEAK},{STRONG}", "--router", "learned",
                                "--router", "learned_cv", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)["results"]
    # Trained on the other folds, the fixture's hard kind is found on held-out rows: as good as the oracle.
    assert res["learned_cv"]["apgr"] >= res["oracle"]["apgr"] - 0.01 > res["random"]["apgr"] + 0.2
    assert {"learned", "length", "oracle"} <= set(res)


def _cost_rows(path: Path, n: int = 120) -> Path:
    """Rows where essays cost the strong model 50x what short questions do (long answers), gains alike."""
    out = []
    for i in range(n):
        essay = i % 2 == 0
        text = (f"Write a long, detailed essay of at least 2000 words on the history of bridge {i}."
                if essay else f"What is the capital of country {i}?")
        out.append({"id": f"cost-{i}", "messages": [{"role": "user", "content": text}],
                    "quality": {WEAK: float(i % 3 == 0), STRONG: 1.0},
                    "cost_usd": {WEAK: 0.0005 if essay else 0.00001, STRONG: 0.05 if essay else 0.001}})
    path.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    return path


def test_calibrate_refits_the_cost_head_on_the_rows_recorded_costs(tmp_path):
    rows = _cost_rows(tmp_path / "costs.jsonl")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"learned": {"objective": "cost"}}), encoding="utf-8")
    r = CliRunner().invoke(cli, ["calibrate", str(rows), "--models", f"{WEAK},{STRONG}",
                                "--settings", str(settings)])
    assert r.exit_code == 0, r.output
    assert "cost head refit" in r.output
    cal = json.loads(settings.read_text())["learned"]["calibration"]
    assert cal["cost_head"] and "cost_ref" in cal
    essay = [{"role": "user", "content": "Write a long, detailed essay of at least 2000 words on the history of "
              "bridge 999."}]
    short = [{"role": "user", "content": "What is the capital of country 999?"}]
    refit = learned.LearnedRouter(load(settings).learned)
    own = learned.LearnedRouter(learned.LearnedSettings(objective="cost"))
    w = refit.model.cost_weight
    # The refit head learned the 50x cost gap (log 50 = 3.9) from the rows; the weights' own head, trained on
    # short-answer benchmark rows, sees far less of it.
    def gap(r: learned.LearnedRouter) -> float:
        return (r.model.log_cost(r.model.features(essay), r._cost_head)
                - r.model.log_cost(r.model.features(short), r._cost_head)) / w

    gap_refit, gap_own = gap(refit), gap(own)
    assert gap_refit > 3.0 and gap_refit > gap_own + 2.0


def test_unknown_cost_head_feature_is_named(tmp_path):
    s = learned.LearnedSettings(objective="cost", calibration={"low": 0.1, "high": 0.5, "cost_head": {"lenght": 1.0}})
    with pytest.raises(learned.InputError, match=r"learned\.calibration\.cost_head: unknown feature 'lenght'"):
        learned.LearnedRouter(s)


def test_cost_moves_a_score_at_most_e_fold():
    from agent_router.learned.model import objective_score

    # A greeting predicted 20x cheaper than usual is boosted no more than one predicted e (2.7x) cheaper.
    assert objective_score(0.8, 0.9, -3.0) == objective_score(0.8, 0.9, -1.0) > objective_score(0.8, 0.9, 0.0)
    assert objective_score(0.8, 0.9, 5.0) == objective_score(0.8, 0.9, 1.0) < objective_score(0.8, 0.9, 0.0)
