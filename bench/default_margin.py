"""How far is the default router ahead of a random one at 95% of premium-only quality, and how sure is that?

    python bench/default_margin.py ROWS.jsonl --models WEAK,[MID,]STRONG [--resamples 200] [--folds 5]

`agent-router eval --router default` prints one save95 per file; on a few hundred rows that figure moves by
several points with the rows drawn, so a lead over random of a few points says little. This prints, for the
built-in default router as it routes (out-of-fold on its weights' own training rows, like `eval --router
default`) and a random router (mean of 10 seeds, as in `eval`), on the same rows:
- save95 of both on the whole file and their difference;
- the difference on each of k interleaved folds (row i in fold i mod k) and on the two halves: held-out parts
  of the same family;
- a paired bootstrap of the difference (rows drawn with replacement, both routers scored on the same draw):
  its mean, 90% interval and the share of draws where the default saves more.
Metrics and tie handling are `agent_router.learned.evaluation`'s (two models: the pair sweep; three: the
two-share sweep on a 5% grid).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from agent_router.learned.evaluation import evaluate_pair, evaluate_tiers, iter_rows, prepare, random_scores
from agent_router.learned.router import LearnedRouter
from agent_router.learned.scoring import router_scores
from agent_router.settings import Settings

SEEDS = 10


def save95(scores: np.ndarray, q: np.ndarray, c: np.ndarray) -> float:
    if q.shape[1] == 2:
        return evaluate_pair(list(scores), list(q[:, 0]), list(q[:, 1]), list(c[:, 0]), list(c[:, 1])).save95
    return float(evaluate_tiers(list(scores), [list(q[:, i]) for i in range(q.shape[1])],
                                [list(c[:, i]) for i in range(q.shape[1])])["save95"])


def margin(scores: np.ndarray, q: np.ndarray, c: np.ndarray, idx: np.ndarray) -> tuple[float, float]:
    """(default save95, random save95) on the rows `idx`."""
    rand = np.mean([save95(np.array(random_scores(len(idx), seed)), q[idx], c[idx]) for seed in range(SEEDS)])
    return save95(scores[idx], q[idx], c[idx]), float(rand)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows")
    ap.add_argument("--models", required=True, help="cheapest first: WEAK,STRONG or WEAK,MID,STRONG")
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    kept, qual, cost = prepare(list(iter_rows(args.rows)), models, args.rows)
    q, c = np.asarray(qual), np.asarray(cost)
    s = Settings()
    lr = LearnedRouter(s.learned.model_copy(update={"adaptive": False}))  # static routing, as `eval` scores it
    t = s.routing.thresholds
    scores = np.asarray(router_scores(kept, models, lr, t.low, t.high))
    n = len(kept)
    ours, rand = margin(scores, q, c, np.arange(n))
    print(f"{args.rows}: {n} rows, models {' < '.join(models)}")
    print(f"save95 default {ours:.1%}, random {rand:.1%}, difference {100 * (ours - rand):+.1f} points")
    parts = [margin(scores, q, c, np.arange(k, n, args.folds)) for k in range(args.folds)]
    halves = [margin(scores, q, c, np.arange(k, n, 2)) for k in range(2)]
    print(f"{args.folds} folds, default - random: " + ", ".join(f"{100 * (a - b):+.1f}" for a, b in parts)
          + "; halves: " + ", ".join(f"{100 * (a - b):+.1f}" for a, b in halves))
    rng = np.random.default_rng(0)
    diffs = []
    for i in range(args.resamples):
        a, b = margin(scores, q, c, rng.integers(0, n, n))
        diffs.append(a - b)
        if (i + 1) % 50 == 0:
            print(f"  bootstrap {i + 1}/{args.resamples}", file=sys.stderr)
    d = 100 * np.asarray(diffs)
    print(f"paired bootstrap ({args.resamples} draws), default - random: mean {d.mean():+.1f} points, 90% interval "
          f"[{np.percentile(d, 5):+.1f}, {np.percentile(d, 95):+.1f}], default ahead in {np.mean(d > 0):.0%}")


if __name__ == "__main__":
    main()
