"""Replay: stream routing-eval rows in order, route each, reveal the chosen model's quality, learn online.

    python bench/replay.py ROWS.jsonl --models WEAK,STRONG [--shuffle SEED] [--ceiling] [--keep-spend 0]

Routers compared on the same stream:
- static: the learned router with its calibrated cut point, never updated;
- adaptive: the same router deciding through `AdaptiveEstimator.decide` exactly as the live router does (the
  per-request layer over the request's features, a Thompson draw, the spend keeper holding the static router's
  premium share, ranking by gain per predicted dollar), fed each revealed outcome (and the chosen side's cost)
  as the ledger would; `--per-task-type` uses the per task type posteriors alone, `--keep-spend 0` lets
  outcomes move spend;
- oracle: the cheaper model unless only the stronger one answers well; always-weak and always-strong.

Rows the weights were trained on are predicted out-of-fold (5-fold, as `agent-router eval --router learned`).
Printed: cumulative quality (mean), cost (sum, USD) and premium share of each, at the end and at quarters of the
stream, and the share of the static-to-oracle gap the adaptive router closes, measured two ways:
- at the operating point: (Q_adaptive - Q_static) / (Q_oracle - Q_static), with the costs beside;
- at equal spend: the same ratio with the static router and the oracle each given the adaptive router's
  spend (the static router's cut point moved, the oracle choosing the largest gain per dollar first).
`--ceiling` adds what a full-information model of the same features reaches at that spend (see `ceiling`).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from agent_router.learned.adaptive import AdaptiveEstimator
from agent_router.learned.evaluation import iter_rows, prepare
from agent_router.learned.features import extract
from agent_router.learned.router import default_calibration, load_model
from agent_router.learned.scoring import learned_log_costs, learned_probs
from agent_router.settings import LearnedSettings


def quality_at_spend(scores: np.ndarray, qw: np.ndarray, qs: np.ndarray, cw: np.ndarray, cs: np.ndarray,
                     budget: float, positive_only: bool = False) -> float:
    """Mean quality when the highest-scored rows go to the strong model while total cost stays <= budget."""
    order = np.argsort(-scores, kind="stable")
    extra = np.cumsum((cs - cw)[order])
    k = int(np.searchsorted(extra, budget - cw.sum(), side="right"))
    if positive_only:  # the oracle never pays for a row the strong model does not improve
        k = min(k, int((scores > 0).sum()))
    strong = np.zeros(len(scores), bool)
    strong[order[:k]] = True
    return float(np.where(strong, qs, qw).mean())


def ceiling(feats: list, probs: np.ndarray, q: np.ndarray, c: np.ndarray, budget: float, folds: int = 5,
            alpha: float = 10.0) -> dict[str, float]:
    """What full information could buy at `budget`: quality when rows are ranked by a 5-fold out-of-fold ridge
    model of the quality gain (over the same dense features, folded n-grams and the heads' logits the adaptive
    router sees), by gain alone and per predicted premium dollar (a ridge model of log cost). An upper bound
    for any router that learns from these features, since every row's outcome on both sides is known."""
    from agent_router.learned.adaptive import fold_hashed

    pc = np.clip(probs, 1e-4, 1 - 1e-4)
    dense = np.array([f.dense for f in feats], dtype=np.float64)
    x = np.hstack([dense, np.log(pc / (1 - pc)), np.array([fold_hashed(f.hashed) for f in feats])])
    gain = q[:, 1] - q[:, 0]
    idx = np.random.default_rng(0).permutation(len(q))
    pred, lc = np.zeros(len(q)), np.zeros(len(q))

    def ridge(a: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
        return np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y)

    for part in np.array_split(idx, folds):
        tr = np.setdiff1d(idx, part)
        pred[part] = x[part] @ ridge(x[tr], gain[tr], alpha)
        lc[part] = dense[part] @ ridge(dense[tr], np.log(np.maximum(c[tr, 1], 1e-9)), 1.0)
    return {"by_gain": quality_at_spend(pred, q[:, 0], q[:, 1], c[:, 0], c[:, 1], budget),
            "per_dollar": quality_at_spend(pred / np.exp(lc), q[:, 0], q[:, 1], c[:, 0], c[:, 1], budget)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows")
    ap.add_argument("--models", required=True, help="WEAK,STRONG as named in the rows")
    ap.add_argument("--weights", default=None, help="weights file (default: packaged)")
    ap.add_argument("--strength", type=float, default=20.0, help="prior pseudo-outcomes per task type")
    ap.add_argument("--per-task-type", action="store_true",
                    help="the coarse layer only: per task type posteriors, no per-request model")
    ap.add_argument("--precision", type=float, default=LearnedSettings().adaptive_precision,
                    help="prior precision of the per-request corrections (higher adapts more slowly)")
    ap.add_argument("--explore", type=float, default=LearnedSettings().adaptive_explore,
                    help="scale of the Thompson draw (0: no exploration)")
    ap.add_argument("--keep-spend", type=int, default=LearnedSettings().adaptive_keep_spend,
                    help="recent decisions the premium share is held over (0: spend may move)")
    ap.add_argument("--per-need", action="store_true", help="rank by need, not by gain per predicted dollar")
    ap.add_argument("--no-ngrams", action="store_true", help="dense features only (as for outcomes read back "
                    "from the ledger by another process)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the exploration draws")
    ap.add_argument("--objective", choices=["quality", "cost"], default="quality",
                    help="the router's objective (default quality, as learned.objective)")
    ap.add_argument("--shuffle", type=int, default=None, help="shuffle the stream with this seed (default: in order)")
    ap.add_argument("--ceiling", action="store_true",
                    help="also print what a full-information, out-of-fold model of these features reaches at the "
                    "adaptive router's spend (an upper bound for learning from them)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    models = [m.strip() for m in a.models.split(",")]
    rows, qual, cost = prepare(list(iter_rows(a.rows)), models, a.rows)
    order = np.arange(len(rows))
    if a.shuffle is not None:
        order = np.random.default_rng(a.shuffle).permutation(len(rows))
    rows = [rows[i] for i in order]
    q = np.asarray(qual)[order][:, [0, -1]]
    c = np.asarray(cost)[order][:, [0, -1]]
    model = load_model(a.weights)
    cal = default_calibration(model, a.objective)
    probs = learned_probs(rows, models, model)
    lcs = learned_log_costs(rows, models, model) if a.objective == "cost" else [None] * len(rows)
    feats = [extract(r["messages"]) for r in rows]
    est = AdaptiveEstimator(model.meta.get("task_priors") or {}, a.strength, per_request=not a.per_task_type,
                            precision=a.precision, explore=a.explore, keep_spend=a.keep_spend,
                            per_dollar=not a.per_need,
                            seed=a.seed)

    n = len(rows)
    static_need = np.zeros(n)
    adaptive_need = np.zeros(n)
    pick = {k: np.zeros(n, dtype=int) for k in ("static", "adaptive", "oracle", "always-weak", "always-strong")}
    pick["always-strong"][:] = 1
    for i in range(n):
        f = feats[i]
        adaptive_need[i], chosen, static_need[i], static_strong = est.decide(
            f.task_type, float(probs[i, 0]), float(probs[i, 1]), cal.high, dense=f.dense,
            hashed=None if a.no_ngrams else f.hashed, log_cost=lcs[i], key=str(i))
        pick["static"][i] = int(static_strong)
        pick["adaptive"][i] = int(chosen)
        pick["oracle"][i] = int(q[i, 1] > q[i, 0])
        # Reveal the chosen model's quality, as feedback on that call would (the call found by its key).
        est.update({"task_type": f.task_type, "tier": "premium" if chosen else "chat", "good": float(q[i, int(chosen)]),
                    "source": "explicit", "key": str(i), "cost_usd": float(c[i, int(chosen)])})

    def totals(p: np.ndarray, upto: int) -> dict[str, float]:
        sl = slice(0, upto)
        idx = np.arange(upto)
        return {"quality": float(q[idx, p[sl]].mean()), "cost_usd": float(c[idx, p[sl]].sum()),
                "premium_share": float(p[sl].mean())}

    report: dict = {"rows": n, "models": models, "cut_point": cal.high, "checkpoints": {}}
    for frac in (0.25, 0.5, 0.75, 1.0):
        upto = max(1, int(round(frac * n)))
        report["checkpoints"][f"{int(frac * 100)}%"] = {k: totals(p, upto) for k, p in pick.items()}
    end = report["checkpoints"]["100%"]
    qs_, qa, qo = end["static"]["quality"], end["adaptive"]["quality"], end["oracle"]["quality"]
    report["gap_closed_at_operating_point"] = (qa - qs_) / (qo - qs_) if qo != qs_ else None
    spend = end["adaptive"]["cost_usd"]
    gain = q[:, 1] - q[:, 0]
    oracle_scores = np.where(gain > 0, gain / np.maximum(c[:, 1] - c[:, 0], 1e-12), -1.0)
    qs_eq = quality_at_spend(static_need, q[:, 0], q[:, 1], c[:, 0], c[:, 1], spend)
    qo_eq = quality_at_spend(oracle_scores, q[:, 0], q[:, 1], c[:, 0], c[:, 1], spend, positive_only=True)
    report["at_adaptive_spend"] = {"static": qs_eq, "adaptive": qa, "oracle": qo_eq}
    report["gap_closed_at_equal_spend"] = (qa - qs_eq) / (qo_eq - qs_eq) if qo_eq != qs_eq else None
    if a.ceiling:
        report["ceiling_at_adaptive_spend"] = ceil = ceiling(feats, np.asarray(probs), q, c, spend)
        report["ceiling_gap_closed"] = {k: (v - qs_eq) / (qo_eq - qs_eq) if qo_eq != qs_eq else None
                                        for k, v in ceil.items()}
    if a.per_task_type:
        report["adaptive_state"] = est.summary()
    if a.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{a.rows}: {n} rows streamed, {models[0]} < {models[1]}, objective {a.objective}, "
          f"cut point {cal.high:.4f}")
    print(f"| {'router':<14} | {'quality 25%':>11} | {'50%':>6} | {'75%':>6} | {'100%':>6} | {'cost $':>9} | "
          f"{'premium':>7} |")
    print(f"|{'-' * 16}|{'-' * 13}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 11}|{'-' * 9}|")
    for k in pick:
        cps = [report["checkpoints"][p][k]["quality"] for p in ("25%", "50%", "75%", "100%")]
        print(f"| {k:<14} | {cps[0]:>11.3f} | {cps[1]:>6.3f} | {cps[2]:>6.3f} | {cps[3]:>6.3f} | "
              f"{end[k]['cost_usd']:>9.4f} | {end[k]['premium_share']:>6.1%} |")
    g1, g2 = report["gap_closed_at_operating_point"], report["gap_closed_at_equal_spend"]
    print(f"gap static->oracle closed by adaptive: {g1:.1%} at the operating point; "
          f"{g2:.1%} at equal spend (static {qs_eq:.3f}, adaptive {qa:.3f}, oracle {qo_eq:.3f} at ${spend:.4f})")
    if a.ceiling:
        cg = report["ceiling_gap_closed"]
        print(f"full-information ceiling at that spend: {ceil['by_gain']:.3f} ranked by gain ({cg['by_gain']:.1%} of "
              f"the gap), {ceil['per_dollar']:.3f} by gain per predicted dollar ({cg['per_dollar']:.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
