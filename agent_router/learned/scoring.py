"""The learned router's scores for offline evaluation and calibration, and its scorers for `agent-router eval`.

Rows the weights were trained on are scored by the out-of-fold probabilities stored with the weights at training
(weights trained before they were stored: k folds retrained on the rows, see below).

Scorers (``--router``):
- ``learned``: the configured weights (default: packaged) on rows they never saw; rows they were trained on
  (recognised by id) are scored out-of-fold instead: k-fold cross-validation (k=5, row i in fold i mod 5)
  retraining on that file with the weights' own options.
- ``learned_cost``: as ``learned`` with the "cost" objective (`learned.objective = "cost"`): predicted quality gain
  discounted by predicted cost (gain x cost^-w, w the weights' cost_weight). The cost head is refit k-fold on the
  evaluated rows' recorded costs (the same split), as `agent-router calibrate` refits it on a deployment's own
  rows: a cost is recorded for every call, unlike a verdict. The quality heads are the weights' own.
- ``learned_cv``: k-fold cross-validation on the evaluated file itself (same split), one head per --models
  model: what retraining on your own rows would give.
- ``learned_emb``: as ``learned`` with the weights that also use sentence embeddings (`learned.embeddings`;
  default the packaged embedding weights; needs the embedding model, see agent_router.learned.embeddings.minilm).
  Set AGENT_ROUTER_EMBED_CACHE to a directory to cache the rows' embeddings between runs.
- ``learned_emb_cost``: the embedding weights with the "cost" objective, cost head refit as for ``learned_cost``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError
from .features import DENSE_KEYS
from .model import QualityModel, load_model
from .train import (
    Matrix,
    Progress,
    TrainOptions,
    cross_val_log_cost,
    cross_val_probs,
    featurize,
    fit_cost,
    labels,
    log_costs,
    need_scores,
    objective_scores,
    predict_matrix,
    to_matrix,
)

FOLDS = 5

Scorer = Callable[[list[dict[str, Any]], list[str]], list[float]]


def weights_options(model: QualityModel | None) -> TrainOptions:
    """The training options recorded with the weights (defaults for what they do not record)."""
    opts = (model.meta.get("options") if model else None) or {}
    return TrainOptions(**{k: v for k, v in opts.items() if k in TrainOptions.__dataclass_fields__})


def embedding_kind(model: QualityModel) -> str | bool:
    """The embedding kind the weights need for their features (False: none)."""
    return model.embedding_kind if model.w_emb is not None else False


class CrossVal:
    """Out-of-fold probabilities of the last rows asked for: `learned` and `learned_cv` on the weights' own
    training file compute the same folds, so scorers sharing one CrossVal train them once. Held by the caller
    (one per `eval` run), never by the module."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._probs: np.ndarray | None = None

    def probs(self, rows: list[dict[str, Any]], models: list[str], folds: int, opts: TrainOptions,
              embeddings: bool | str = False, progress: Progress | None = None) -> np.ndarray:
        key = (tuple(str(r.get("id")) for r in rows), tuple(models), folds, tuple(sorted(vars(opts).items())),
               embeddings)
        if key != self._key or self._probs is None:
            x = featurize(rows, embeddings, progress=progress)
            self._probs = cross_val_probs(x, labels(rows, models), folds, opts, progress=progress)
            self._key = key
        return self._probs


def learned_probs(rows: list[dict[str, Any]], models: list[str], model: QualityModel, folds: int = FOLDS,
                  cv: CrossVal | None = None, progress: Progress | None = None) -> np.ndarray:
    """(n, 2) probabilities [cheapest good, strongest good]: the weights on rows they never saw, k-fold
    out-of-fold predictions (retrained on those rows) on rows they were trained on."""
    seen = np.array([model.seen(str(r.get("id"))) for r in rows], dtype=bool)
    out = np.zeros((len(rows), 2))
    if (~seen).any():
        unseen = [r for r, s in zip(rows, seen, strict=True) if not s]
        p = predict_matrix(model, featurize(unseen, embeddings=embedding_kind(model), progress=progress))
        out[~seen] = p[:, [0, -1]]
    if seen.any():
        idx = np.flatnonzero(seen)
        sub = [rows[i] for i in idx]
        # Stored at training (same folds as the weights' own training); else k folds retrained on these rows.
        p = model.oof_probs([str(r.get("id")) for r in sub])
        if p is None or p.shape[1] != len(model.heads):
            p = (cv or CrossVal()).probs(sub, models, folds, weights_options(model), embedding_kind(model), progress)
        out[idx] = p[:, [0, -1]]
    return out


def learned_log_costs(rows: list[dict[str, Any]], models: list[str], model: QualityModel,
                      folds: int = FOLDS, refit: bool = False, x: Matrix | None = None) -> np.ndarray:
    """Predicted log cost of the strongest model (centred, times the weights' cost_weight): the weights' cost
    head, or on rows the weights were trained on a k-fold out-of-fold ridge on the rows' own costs. With `refit`,
    every row's cost comes from that k-fold fit (when the rows record the strongest model's cost): what
    `agent-router calibrate` does with a deployment's recorded costs. Only costs are refit; the quality heads
    never see these rows' outcomes. `x`: the rows' features, if already computed."""
    if model.cost_dense is None:
        raise InputError("these weights have no cost head; retrain with `agent-router train` (rows with cost_usd)")
    x = featurize(rows) if x is None else x
    out = x.dense @ model.cost_dense.astype(np.float64) - float(model.meta.get("cost_ref", 0.0))
    lc = log_costs(rows, models[-1])
    redo = np.ones(len(rows), bool) if refit and np.isfinite(lc).sum() >= 10 * folds else \
        np.array([model.seen(str(r.get("id"))) for r in rows], dtype=bool)
    if redo.any():
        idx = np.flatnonzero(redo)
        sub = lc[idx]
        sub = np.where(np.isfinite(sub), sub, np.nanmean(sub) if np.isfinite(sub).any() else 0.0)
        out[idx] = cross_val_log_cost(x.take(idx), sub, folds)
    return model.cost_weight * out


def learned_scores(rows: list[dict[str, Any]], models: list[str], model: QualityModel,
                   folds: int = FOLDS, objective: str = "quality", refit_costs: bool = False,
                   x: Matrix | None = None, cv: CrossVal | None = None,
                   progress: Progress | None = None) -> list[float]:
    """Raw router scores for `objective` ("quality": need; "cost": gain discounted by predicted cost); `x`: the
    rows' features (without embeddings), if already computed."""
    probs = learned_probs(rows, models, model, folds, cv, progress)
    lc = learned_log_costs(rows, models, model, folds, refit_costs, x) if objective == "cost" else None
    return [float(v) for v in objective_scores(probs, lc)]


def refit_cost_head(rows: list[dict[str, Any]], model: str, x: Matrix) -> tuple[dict[str, float], float] | None:
    """Ridge of log cost on the rows' dense features `x` over rows recording `model`'s cost; None if too few do."""
    lc = log_costs(rows, model)
    if np.isfinite(lc).sum() < 10 * FOLDS:
        return None
    w = fit_cost(x.dense, lc)
    return {k: round(float(v), 6) for k, v in zip(DENSE_KEYS, w, strict=True) if v}, float(np.mean(x.dense @ w))


def register_learned_scorers(register: Callable[..., None], weights_for: Callable[[str | None], str | None]) -> None:
    """Register the learned scorers with `register(name, factory, help)`; `weights_for(settings_path)` gives the
    `learned.weights` of those settings. The scorers of one registration share one CrossVal."""
    cv = CrossVal()

    def plain(embeddings: bool, objective: str) -> Callable[[str | None], Scorer]:
        def factory(settings_path: str | None) -> Scorer:
            model = load_model(weights_for(settings_path), embeddings)
            refit = objective == "cost"
            return lambda rows, models: learned_scores(rows, models, model, objective=objective,
                                                       refit_costs=refit, cv=cv)
        return factory

    def cross_validated(settings_path: str | None) -> Scorer:
        model = load_model(weights_for(settings_path))

        def score(rows: list[dict[str, Any]], models: list[str]) -> list[float]:
            return [float(v) for v in need_scores(cv.probs(rows, models, FOLDS, weights_options(model)))]

        return score

    register("learned", plain(False, "quality"), "the learned router (out-of-fold on its own training rows)")
    register("learned_emb_cost", plain(True, "cost"), "embedding weights, cost objective (cost head refit)")
    register("learned_emb", plain(True, "quality"), "the learned router with sentence-embedding weights")
    register("learned_cost", plain(False, "cost"), "the learned router, cost objective (cost head refit)")
    register("learned_cv", cross_validated, "k-fold retraining on the evaluated file itself")


def router_scores(rows: list[dict[str, Any]], models: list[str], router: Any, low: float, high: float,
                  progress: Progress | None = None) -> list[float]:
    """The scores a `LearnedRouter` gives `rows` when it routes them (its calibration's rescaling onto the tier
    thresholds `low`/`high`, plain chat the heuristic finds simple sent below `low`), with the quality heads
    and cost head of its weights; rows those weights were trained on are scored out-of-fold, as by `learned`.
    No outcomes (static routing): what the router does before any verdict is recorded."""
    from .features import extract
    from .router import rescale

    model = router.model
    probs = learned_probs(rows, models, model, progress=progress)
    feats = [extract(r["messages"]) for r in rows]
    lc = None
    if router.objective == "cost":
        # The cost head the router routes with: its calibration's refit head, else the weights' own.
        lc = learned_log_costs(rows, models, model, x=to_matrix(feats)) if router._cost_head is None else \
            np.array([model.log_cost(f, router._cost_head) for f in feats])
    raw = objective_scores(probs, lc)
    out = []
    for r, f, p, s in zip(rows, feats, probs, raw, strict=True):
        simple = router.simple_chat(f, float(p[0]), float(p[-1]), float(s), float(s), r["messages"], low)
        out.append(simple if simple is not None else rescale(float(s), router.calibration, low, high))
    return out
