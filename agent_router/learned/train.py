"""Training the learned quality model with numpy: L2-regularised logistic regression per head, full-batch Adam.

Deterministic: same rows and options give the same weights, bit for bit (fixed iteration count, no random
initialisation, no shuffling). Used by bench/train_router.py (shipped weights), by `agent-router eval
--router learned` for k-fold cross-validation, and by users retraining on their own rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .features import DENSE_KEYS, HASH_DIM, RequestFeatures, extract
from .model import COST_CLIP, QualityModel


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


def featurize(rows: Sequence[dict[str, Any]], embeddings: bool | str = False) -> Matrix:
    """Features of routing-eval rows (their `messages`); with `embeddings` (True: "contextual", or an embedding
    kind), also the sentence embedding of each real question (cached in $AGENT_ROUTER_EMBED_CACHE when set)."""
    feats = [extract(r["messages"]) for r in rows]
    if embeddings:
        from .embeddings.minilm import encode_cached

        kind = embeddings if isinstance(embeddings, str) else "contextual"
        vecs = encode_cached([f.focus for f in feats], os.environ.get(EMBED_CACHE_ENV) or None, kind=kind)
        for f, v in zip(feats, vecs, strict=True):
            f.emb = v
    return to_matrix(feats)


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
    """Logistic regression (soft labels allowed) for one head; rows with NaN labels are left out."""
    keep = ~np.isnan(y)
    if not keep.all():
        x = x.take(np.flatnonzero(keep))
        y = y[keep]
    n, d = x.dense.shape
    row_of = np.repeat(np.arange(n), np.diff(x.indptr))
    # Hashed weights no row touches get a zero gradient (their L2 term is 0 at 0) and stay 0: learn only the
    # columns that occur, renumbered 0..k-1, and scatter them back at the end (same weights, far less work).
    used, cols = np.unique(x.indices, return_inverse=True)
    k = used.size
    wd = np.zeros(d)
    wh = np.zeros(k)
    # Start at the base rate so the regularised weights only model deviations from it.
    bias_col = DENSE_KEYS.index("bias")
    base = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    wd[bias_col] = np.log(base / (1 - base))
    md, vd = np.zeros(d), np.zeros(d)
    mh, vh = np.zeros(k), np.zeros(k)
    e = x.emb
    we = np.zeros(e.shape[1]) if e is not None else None
    me, ve = (np.zeros(e.shape[1]), np.zeros(e.shape[1])) if e is not None else (None, None)
    b1, b2, eps = 0.9, 0.999, 1e-8
    reg_d = np.full(d, opts.l2_dense)
    reg_d[bias_col] = 0.0
    hashed = opts.hashed and k > 0
    for t in range(1, opts.iterations + 1):
        z = x.dense @ wd
        if hashed:
            z = z + np.bincount(row_of, weights=x.data * wh[cols], minlength=n)
        if e is not None:
            z = z + e @ we
        r = (_sigmoid(z) - y) / n
        gd = x.dense.T @ r + reg_d * wd
        md = b1 * md + (1 - b1) * gd
        vd = b2 * vd + (1 - b2) * gd * gd
        c1, c2 = 1 - b1**t, 1 - b2**t
        wd -= opts.learning_rate * (md / c1) / (np.sqrt(vd / c2) + eps)
        if hashed:
            gh = np.bincount(cols, weights=x.data * r[row_of], minlength=k) + opts.l2_hash * wh
            mh = b1 * mh + (1 - b1) * gh
            vh = b2 * vh + (1 - b2) * gh * gh
            wh -= opts.learning_rate * (mh / c1) / (np.sqrt(vh / c2) + eps)
        if e is not None:
            ge = e.T @ r + opts.l2_emb * we
            me = b1 * me + (1 - b1) * ge
            ve = b2 * ve + (1 - b2) * ge * ge
            we -= opts.learning_rate * (me / c1) / (np.sqrt(ve / c2) + eps)
    w_hash = np.zeros(HASH_DIM)
    w_hash[used] = wh
    return wd, w_hash, we


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


def cross_val_probs(x: Matrix, y: np.ndarray, k: int = 5, opts: TrainOptions | None = None) -> np.ndarray:
    """Out-of-fold head probabilities: each row scored by a model trained on the other k-1 folds."""
    out = np.empty(y.shape)
    heads = [str(j) for j in range(y.shape[1])]
    for test in folds(x.n, k):
        train_idx = np.setdiff1d(np.arange(x.n), test)
        m = train(x.take(train_idx), y[train_idx], heads, opts)
        out[test] = predict_matrix(m, x.take(test))
    return out
