"""Training the learned quality model with numpy: L2-regularised logistic regression per head, full-batch Adam.

Deterministic: same rows and options give the same weights, bit for bit (fixed iteration count, no random
initialisation, no shuffling). `train_weights` is `agent-router train` (the shipped weights, and users retraining
on their own rows or their ledger); the k-fold helpers serve `agent-router eval` and `calibrate`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .features import DENSE_KEYS, HASH_DIM, RequestFeatures, extract
from .model import COST_CLIP, QualityModel

# progress(stage, done, total): called as long work advances (e.g. to draw a progress bar).
Progress = Callable[[str, int, int], None]


@dataclass
class Matrix:
    """Features of many rows: dense (n, d) plus hashed values in CSR form."""

    dense: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    # (n, 384) sentence embeddings of the real questions, when training or scoring weights with embedding heads.
    emb: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.dense.shape[0]

    def take(self, rows: Sequence[int] | np.ndarray) -> Matrix:
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lens = ends - starts
        indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        sel = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)]) if len(rows) else \
            np.zeros(0, dtype=np.int64)
        return Matrix(self.dense[rows], indptr, self.indices[sel], self.data[sel],
                      None if self.emb is None else self.emb[rows])


def to_matrix(feats: Sequence[RequestFeatures]) -> Matrix:
    dense = np.asarray([f.dense for f in feats], dtype=np.float64).reshape(len(feats), len(DENSE_KEYS))
    lens = [len(f.hashed) for f in feats]
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    indices = np.fromiter((k for f in feats for k in f.hashed), dtype=np.int64, count=int(indptr[-1]))
    data = np.fromiter((v for f in feats for v in f.hashed.values()), dtype=np.float64, count=int(indptr[-1]))
    emb = None
    if feats and all(f.emb is not None for f in feats):
        emb = np.asarray([f.emb for f in feats], dtype=np.float64)
    return Matrix(dense, indptr, indices, data, emb)


# Where embeddings of training / evaluation rows are cached between runs (unset: not cached).
EMBED_CACHE_ENV = "AGENT_ROUTER_EMBED_CACHE"


_FROM_ENV = "env"


def featurize(rows: Sequence[dict[str, Any]], embeddings: bool | str = False,
              progress: Progress | None = None, cache: str | None = _FROM_ENV) -> Matrix:
    """Features of routing-eval rows (their `messages`) as a matrix; see `features_of`."""
    return to_matrix(features_of(rows, embeddings, progress, cache))


def features_of(rows: Sequence[dict[str, Any]], embeddings: bool | str = False,
                progress: Progress | None = None, cache: str | None = _FROM_ENV) -> list[RequestFeatures]:
    """Features of routing-eval rows (their `messages`); with `embeddings` (True: "contextual", or an embedding
    kind), also the sentence embedding of each real question, cached in the folder `cache` (by default
    $AGENT_ROUTER_EMBED_CACHE when set; None: not cached)."""
    feats = []
    step = max(1, len(rows) // 50)
    for i, r in enumerate(rows):
        feats.append(extract(r["messages"]))
        if progress is not None and ((i + 1) % step == 0 or i + 1 == len(rows)):
            progress("features", i + 1, len(rows))
    if embeddings:
        from .embeddings.minilm import encode_cached

        kind = embeddings if isinstance(embeddings, str) else "contextual"
        folder = os.environ.get(EMBED_CACHE_ENV) or None if cache == _FROM_ENV else cache
        vecs = encode_cached([f.focus for f in feats], folder, kind=kind)
        for f, v in zip(feats, vecs, strict=True):
            f.emb = v
    return feats


def labels(rows: Sequence[dict[str, Any]], models: Sequence[str]) -> np.ndarray:
    """(n, len(models)) qualities in [0, 1]; NaN where a row has none for a model."""
    y = np.full((len(rows), len(models)), np.nan)
    for i, r in enumerate(rows):
        q = r.get("quality") or {}
        for j, m in enumerate(models):
            v = q.get(m)
            if v is not None:
                y[i, j] = float(v)
    return y


@dataclass
class TrainOptions:
    l2_dense: float = 1e-3
    l2_hash: float = 3e-3
    iterations: int = 250
    learning_rate: float = 0.05
    l2_emb: float = 1e-3
    hashed: bool = True  # False: no hashed n-gram weights (dense + embedding only)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def fit_head(x: Matrix, y: np.ndarray, opts: TrainOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Logistic regression (soft labels allowed) for one head; rows with NaN labels are left out.

    Only the hashed features present in these rows are optimised (every other weight has a zero gradient at
    every step, so Adam leaves it at exactly zero): the same optimisation as updating all 2^17 (equal up to
    float rounding), at a fraction of the work; with `opts.hashed` off the hashed part is skipped altogether."""
    keep = ~np.isnan(y)
    if not keep.all():
        x = x.take(np.flatnonzero(keep))
        y = y[keep]
    n, d = x.dense.shape
    wh_full = np.zeros(HASH_DIM)
    hashed = opts.hashed and len(x.indices) > 0
    if hashed:
        active, idx = np.unique(x.indices, return_inverse=True)
        idx = idx.reshape(-1)
        row_of = np.repeat(np.arange(n), np.diff(x.indptr))
        h = len(active)
    else:
        active = idx = row_of = None
        h = 0
    wd = np.zeros(d)
    wh = np.zeros(h)
    # Start at the base rate so the regularised weights only model deviations from it.
    bias_col = DENSE_KEYS.index("bias")
    base = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    wd[bias_col] = np.log(base / (1 - base))
    md, vd = np.zeros(d), np.zeros(d)
    mh, vh = np.zeros(h), np.zeros(h)
    e = x.emb
    we = np.zeros(e.shape[1]) if e is not None else None
    me, ve = (np.zeros(e.shape[1]), np.zeros(e.shape[1])) if e is not None else (None, None)
    b1, b2, eps = 0.9, 0.999, 1e-8
    reg_d = np.full(d, opts.l2_dense)
    reg_d[bias_col] = 0.0
    for t in range(1, opts.iterations + 1):
        z = x.dense @ wd
        if hashed:
            z = z + np.bincount(row_of, weights=x.data * wh[idx], minlength=n)
        if e is not None:
            z = z + e @ we
        r = (_sigmoid(z) - y) / n
        gd = x.dense.T @ r + reg_d * wd
        md = b1 * md + (1 - b1) * gd
        vd = b2 * vd + (1 - b2) * gd * gd
        c1, c2 = 1 - b1**t, 1 - b2**t
        wd -= opts.learning_rate * (md / c1) / (np.sqrt(vd / c2) + eps)
        if hashed:
            gh = np.bincount(idx, weights=x.data * r[row_of], minlength=h) + opts.l2_hash * wh
            mh = b1 * mh + (1 - b1) * gh
            vh = b2 * vh + (1 - b2) * gh * gh
            wh -= opts.learning_rate * (mh / c1) / (np.sqrt(vh / c2) + eps)
        if e is not None:
            ge = e.T @ r + opts.l2_emb * we
            me = b1 * me + (1 - b1) * ge
            ve = b2 * ve + (1 - b2) * ge * ge
            we -= opts.learning_rate * (me / c1) / (np.sqrt(ve / c2) + eps)
    if hashed:
        wh_full[active] = wh
    return wd, wh_full, we


def train(x: Matrix, y: np.ndarray, heads: Sequence[str], opts: TrainOptions | None = None,
          meta: dict[str, Any] | None = None) -> QualityModel:
    """One head per column of `y` (cheapest model first)."""
    opts = opts or TrainOptions()
    wds, whs, wes = [], [], []
    for j in range(y.shape[1]):
        wd, wh, we = fit_head(x, y[:, j], opts)
        wds.append(wd)
        whs.append(wh)
        wes.append(we)
    info = {**(meta or {}), "options": vars(opts), "rows": int(x.n)}
    if x.emb is not None:
        info["embedding_model"] = "all-MiniLM-L6-v2"
    return QualityModel(heads=list(heads), w_dense=np.asarray(wds, dtype=np.float32),
                        w_hash=np.asarray(whs, dtype=np.float32), meta=info,
                        w_emb=np.asarray(wes, dtype=np.float32) if x.emb is not None else None)


def predict_matrix(model: QualityModel, x: Matrix) -> np.ndarray:
    """(n, heads) probabilities for many rows at once."""
    n = x.n
    row_of = np.repeat(np.arange(n), np.diff(x.indptr))
    out = np.empty((n, len(model.heads)))
    for j in range(len(model.heads)):
        z = x.dense @ model.w_dense[j].astype(np.float64) + np.bincount(
            row_of, weights=x.data * model.w_hash[j].astype(np.float64)[x.indices], minlength=n)
        if model.w_emb is not None:
            if x.emb is None:
                raise ValueError("these weights use sentence embeddings: featurize(rows, embeddings=True)")
            z = z + x.emb @ model.w_emb[j].astype(np.float64)
        out[:, j] = _sigmoid(z)
    return out


def fit_cost(dense: np.ndarray, log_cost: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Ridge regression (closed form, deterministic) of log(cost) on the dense features."""
    keep = np.isfinite(log_cost)
    a, y = dense[keep], log_cost[keep]
    return np.linalg.solve(a.T @ a + l2 * np.eye(a.shape[1]), a.T @ y)


def log_costs(rows: Sequence[dict[str, Any]], model: str) -> np.ndarray:
    """log(cost_usd) of `model` per row; NaN where missing or not positive."""
    out = np.full(len(rows), np.nan)
    for i, r in enumerate(rows):
        v = (r.get("cost_usd") or {}).get(model)
        if v is not None and float(v) > 0:
            out[i] = np.log(float(v))
    return out


def cross_val_log_cost(x: Matrix, log_cost: np.ndarray, k: int = 5) -> np.ndarray:
    """Out-of-fold predicted log costs, centred on the mean prediction."""
    out = np.empty(x.n)
    for test in folds(x.n, k):
        train_idx = np.setdiff1d(np.arange(x.n), test)
        out[test] = x.dense[test] @ fit_cost(x.dense[train_idx], log_cost[train_idx])
    return out - out.mean()


def objective_scores(probs: np.ndarray, log_cost: np.ndarray | None = None) -> np.ndarray:
    """Vectorised `objective_score`: need scores, or gain per predicted dollar squashed into 0..1."""
    if log_cost is None:
        return need_scores(probs)
    x = (probs[:, -1] - probs[:, 0]) * np.exp(-np.clip(log_cost, -COST_CLIP, COST_CLIP))
    return 1.0 / (1.0 + np.exp(-4.0 * np.clip(x, -50, 50)))


def need_scores(probs: np.ndarray) -> np.ndarray:
    """The router score from head probabilities (cheapest first): (1 + p_strong - p_weak) / 2."""
    return np.clip(0.5 * (1.0 + probs[:, -1] - probs[:, 0]), 0.0, 1.0)


def folds(n: int, k: int) -> list[np.ndarray]:
    """k interleaved folds of row indices (row i goes to fold i mod k): deterministic, and spreads every
    source of a file sorted by source over all folds."""
    return [np.arange(j, n, k) for j in range(k)]


def cross_val_probs(x: Matrix, y: np.ndarray, k: int = 5, opts: TrainOptions | None = None,
                    progress: Progress | None = None) -> np.ndarray:
    """Out-of-fold head probabilities: each row scored by a model trained on the other k-1 folds."""
    out = np.empty(y.shape)
    heads = [str(j) for j in range(y.shape[1])]
    for i, test in enumerate(folds(x.n, k)):
        train_idx = np.setdiff1d(np.arange(x.n), test)
        m = train(x.take(train_idx), y[train_idx], heads, opts)
        out[test] = predict_matrix(m, x.take(test))
        if progress is not None:
            progress("folds", i + 1, k)
    return out


# -- `agent-router train`: weights from routing-eval rows and/or a ledger ----------------------------------
# Files whose licence does not allow shipping weights trained on them (evaluation only).
NOT_SHIPPABLE = ("alpacaeval", "routerbench")


def task_priors(task_types: list[str], q: np.ndarray, scores: np.ndarray, high: float) -> dict[str, Any]:
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


def prepare_partial(rows: list[dict[str, Any]], models: list[str], where: str
                    ) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Rows with a quality for at least one model (ledger rows know one side); NaN where a row has none."""
    from ..errors import InputError

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
    from ..errors import InputError

    labelled = ~np.isnan(q)
    for j, m in enumerate(models):
        for f in range(k):
            train_part = np.ones(len(q), bool)
            train_part[f::k] = False
            if not labelled[train_part, j].any():
                raise InputError(
                    f"{where}: too few verdicts for {m} ({int(labelled[:, j].sum())}) to train its head with "
                    f"{k} folds; judge more calls on that side, or add eval rows (ROWS) beside --ledger")


@dataclass
class TrainReport:
    """What `train_weights` built: the model (not yet saved) and the figures it printed."""

    model: QualityModel
    rows: int
    lines: list[str]


def train_weights(rows: list[dict[str, Any]], models: list[str], name: str, digest: str, *,
                  partial: bool = False, folds_k: int = 5, target: float = 0.95, opts: TrainOptions | None = None,
                  cost_weight: float = 0.75, embeddings: str | None = None, embed_cache: str | None = None,
                  progress: Progress | None = None) -> TrainReport:
    """Weights from routing-eval `rows` (per-model quality, cheapest model first in `models`), deterministically.

    Besides the weights it stores, from k-fold out-of-fold predictions on the same rows: the default calibration
    (cut point for `target` of premium-only quality), each task type's success rates of the calls routed to each
    side (the adaptive estimator's priors), and with recorded costs a cost head and its calibration. `partial`:
    rows may know one side only (ledger rows); each head learns from the rows that have its verdict, and
    calibration fills the unknown side with its out-of-fold prediction. `embeddings`: "static" or "contextual"
    to add sentence-embedding weights. `name` and `digest` identify the training data in the weights."""
    from .calibrate import calibrate
    from .evaluation import evaluate_pair, prepare
    from .model import id_hash

    opts = opts or TrainOptions()
    if partial:
        kept, q, c = prepare_partial(rows, models, name)
        check_heads(q, models, folds_k, name)
    else:
        kept, qual, cost = prepare(rows, models, name)
        q, c = np.asarray(qual), np.asarray(cost)
    feats = features_of(kept, embeddings or False, progress, cache=embed_cache)
    x = to_matrix(feats)
    y = labels(kept, models)
    oof = cross_val_probs(x, y, folds_k, opts, progress=progress)
    scores = need_scores(oof)
    # A side a row has no verdict for (ledger rows) is scored by its out-of-fold prediction.
    q = np.where(np.isnan(q), oof, q)
    cal = calibrate(scores, q, c, target=target, models=models)
    cal.source = f"{name} ({folds_k}-fold out-of-fold)"
    pair = evaluate_pair(list(scores), q[:, 0], q[:, -1], c[:, 0], c[:, -1])
    priors = task_priors([f.task_type for f in feats], q, scores, cal.high)
    lines: list[str] = []
    # The cost head: log(cost) of the strongest model, for the "cost" objective (gain per predicted dollar).
    lc = log_costs(kept, models[-1])
    cost_meta: dict[str, Any] = {}
    cost_w = None
    if np.isfinite(lc).sum() >= 10:
        oof_cost = cross_val_log_cost(x, np.where(np.isfinite(lc), lc, np.nanmean(lc)), folds_k)
        cscores = objective_scores(oof, cost_weight * oof_cost)
        ccal = calibrate(cscores, q, c, target=target, models=models)
        ccal.source = cal.source
        cpair = evaluate_pair(list(cscores), q[:, 0], q[:, -1], c[:, 0], c[:, -1])
        cost_w = fit_cost(x.dense, lc)
        cost_meta = {"calibration_cost": ccal.model_dump(exclude_none=True), "cost_weight": cost_weight,
                     "cost_ref": float(np.mean(x.dense @ cost_w)),
                     "cv_cost": {"apgr": round(cpair.apgr, 4), "save95": round(cpair.save95, 4)}}
        lines.append(f"cost objective: {folds_k}-fold out-of-fold APGR {cpair.apgr:.3f}, save95 {cpair.save95:.1%}; "
                     f"cut point {ccal.high:.4f} (premium share {ccal.premium_share:.1%}, "
                     f"cost {ccal.cost_share:.1%})")
    meta = {
        "models": models,
        "trained_on": {"file": name, "sha256": digest, "rows": len(kept)},
        "calibration": cal.model_dump(exclude_none=True),
        "task_priors": priors,
        "cv": {"folds": folds_k, "apgr": round(pair.apgr, 4), "save95": round(pair.save95, 4)},
        **cost_meta,
        **({"embedding_kind": embeddings} if embeddings else {}),
    }
    model = train(x, y, models, opts, meta)
    model.cost_dense = None if cost_w is None else cost_w.astype(np.float32)
    hashes = np.array([id_hash(str(r["id"])) for r in kept], dtype=np.uint32)
    model.train_ids, first, counts = np.unique(hashes, return_index=True, return_counts=True)
    model.oof = oof[first].astype(np.float32)
    model.oof[counts > 1] = np.nan  # two rows share an id hash: which one a caller means is unknown
    lines.append(f"{len(kept)} rows, {folds_k}-fold out-of-fold APGR {pair.apgr:.3f}, save95 {pair.save95:.1%}; "
                 f"calibration low {cal.low:.4f} high {cal.high:.4f} (premium share {cal.premium_share:.1%}, "
                 f"quality {cal.quality:.1%}, cost {cal.cost_share:.1%})")
    return TrainReport(model, len(kept), lines)
