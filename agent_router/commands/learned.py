"""`agent-router calibrate`, and the learned router's scorers for `agent-router eval`.

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
  default the packaged embedding weights; needs the embedding model, see agent_router.learned.embeddings.minilm). Set
  AGENT_ROUTER_EMBED_CACHE to a directory to cache the rows' embeddings between runs.
- ``learned_emb_cost``: the embedding weights with the "cost" objective, cost head refit as for ``learned_cost``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..errors import InputError
from ..hookspecs import hookimpl
from ..learned.evaluation import prepare
from ..learned.features import DENSE_KEYS
from ..learned.model import QualityModel
from ..learned.router import calibrate, load_model
from ..learned.train import (
    Matrix,
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
)
from ..settings import Settings, default_home, parse, resolve_path
from . import evaluate
from ._common import get_settings, iter_rows, settings_option

FOLDS = 5


def _options(model: QualityModel | None) -> TrainOptions:
    opts = (model.meta.get("options") if model else None) or {}
    return TrainOptions(**{k: v for k, v in opts.items() if k in TrainOptions.__dataclass_fields__})


def learned_probs(rows: list[dict[str, Any]], models: list[str], model: QualityModel,
                  folds: int = FOLDS) -> np.ndarray:
    """(n, 2) probabilities [cheapest good, strongest good]: the weights on rows they never saw, k-fold
    out-of-fold predictions (retrained on those rows) on rows they were trained on."""
    seen = np.array([model.seen(str(r.get("id"))) for r in rows], dtype=bool)
    out = np.zeros((len(rows), 2))
    if (~seen).any():
        unseen = [r for r, s in zip(rows, seen, strict=True) if not s]
        p = predict_matrix(model, featurize(unseen, embeddings=_emb_kind(model)))
        out[~seen] = p[:, [0, -1]]
    if seen.any():
        idx = np.flatnonzero(seen)
        sub = [rows[i] for i in idx]
        p = _cv_probs(sub, models, folds, _options(model), embeddings=_emb_kind(model))
        out[idx] = p[:, [0, -1]]
    return out


def _emb_kind(model: QualityModel) -> str | bool:
    return model.embedding_kind if model.w_emb is not None else False


_cv_cache: dict[tuple, np.ndarray] = {}


def _cv_probs(rows: list[dict[str, Any]], models: list[str], folds: int, opts: TrainOptions,
              embeddings: bool | str = False) -> np.ndarray:
    """Out-of-fold probabilities, remembered for the process: `learned` and `learned_cv` on the weights' own
    training file compute the same folds, so one `eval` run trains them once."""
    key = (tuple(str(r.get("id")) for r in rows), tuple(models), folds, tuple(sorted(vars(opts).items())),
           embeddings)
    if key not in _cv_cache:
        _cv_cache.clear()
        _cv_cache[key] = cross_val_probs(featurize(rows, embeddings), labels(rows, models), folds, opts)
    return _cv_cache[key]


def learned_log_costs(rows: list[dict[str, Any]], models: list[str], model: QualityModel,
                      folds: int = FOLDS, refit: bool = False, x: Matrix | None = None) -> np.ndarray:
    """Predicted log cost of the strongest model (centred, times the weights' cost_weight): the weights' cost
    head, or on rows the weights were trained on a k-fold out-of-fold ridge on the rows' own costs. With `refit`,
    every row's cost comes from that k-fold fit (when the rows record the strongest model's cost): what
    `agent-router calibrate` does with a deployment's recorded costs. Only costs are refit; the quality heads
    never see these rows' outcomes. `x`: the rows' features, if already computed."""
    if model.cost_dense is None:
        raise InputError("these weights have no cost head; retrain with bench/train_router.py (rows with cost_usd)")
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
                   x: Matrix | None = None) -> list[float]:
    """Raw router scores for `objective` ("quality": need; "cost": gain discounted by predicted cost); `x`: the
    rows' features (without embeddings), if already computed."""
    probs = learned_probs(rows, models, model, folds)
    lc = learned_log_costs(rows, models, model, folds, refit_costs, x) if objective == "cost" else None
    return [float(v) for v in objective_scores(probs, lc)]


def _learned(settings_path: str | None) -> evaluate.Scorer:
    model = load_model(get_settings(settings_path).learned.weights)
    return lambda rows, models: learned_scores(rows, models, model)


def _learned_cv(settings_path: str | None) -> evaluate.Scorer:
    model = load_model(get_settings(settings_path).learned.weights)

    def score(rows: list[dict[str, Any]], models: list[str]) -> list[float]:
        return [float(v) for v in need_scores(_cv_probs(rows, models, FOLDS, _options(model)))]

    return score


def _learned_cost(settings_path: str | None) -> evaluate.Scorer:
    model = load_model(get_settings(settings_path).learned.weights)
    return lambda rows, models: learned_scores(rows, models, model, objective="cost", refit_costs=True)


def _learned_emb(settings_path: str | None) -> evaluate.Scorer:
    ls = get_settings(settings_path).learned
    model = load_model(ls.weights, True)
    return lambda rows, models: learned_scores(rows, models, model)


def _learned_emb_cost(settings_path: str | None) -> evaluate.Scorer:
    model = load_model(get_settings(settings_path).learned.weights, True)
    return lambda rows, models: learned_scores(rows, models, model, objective="cost", refit_costs=True)


evaluate.SCORERS["learned"] = _learned
evaluate.SCORERS["learned_emb_cost"] = _learned_emb_cost
evaluate.SCORERS["learned_emb"] = _learned_emb
evaluate.SCORERS["learned_cost"] = _learned_cost
evaluate.SCORERS["learned_cv"] = _learned_cv


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(calibrate_cmd)


def _settings_file(settings_path: str | None) -> Path:
    return resolve_path(settings_path) or default_home() / "settings.json"


def write_learned(path: Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge `updates` into the file's `learned` section, validate the whole file, write it atomically."""
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: cannot update settings ({e}); fix or remove the file first") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: settings must be a JSON object")
    section = data.get("learned") or {}
    section.update(updates)
    data["learned"] = section
    parse(data, str(path))  # never write a file that would not load
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    return section


def _refit_cost_head(rows: list[dict[str, Any]], model: str, x: Matrix) -> tuple[dict[str, float], float] | None:
    """Ridge of log cost on the rows' dense features `x` over rows recording `model`'s cost; None if too few do."""
    lc = log_costs(rows, model)
    if np.isfinite(lc).sum() < 10 * FOLDS:
        return None
    w = fit_cost(x.dense, lc)
    return {k: round(float(v), 6) for k, v in zip(DENSE_KEYS, w, strict=True) if v}, float(np.mean(x.dense @ w))


@click.command("calibrate")
@click.argument("rows", type=click.Path(dir_okay=False))
@click.option("--models", default=None,
              help="Comma-separated models of ROWS, cheapest first (2 or 3); default: the weights' own models.")
@click.option("--target", type=float, default=None,
              help="Keep at least this share of premium-only quality (default: learned.quality_target, 0.95).")
@click.option("--cost-cap", type=float, default=None,
              help="Instead of a quality target: spend at most this share of premium-only cost.")
@click.option("--tiers", default=None, help="Router tier of each model (default chat,premium or utility,chat,premium).")
@click.option("--enable", is_flag=True, help="Also turn learned routing on (learned.enabled = true).")
@click.option("--dry-run", is_flag=True, help="Print the calibration without writing settings.")
@settings_option
def calibrate_cmd(rows: str, models: str | None, target: float | None, cost_cap: float | None, tiers: str | None,
                  enable: bool, dry_run: bool, settings_path: str | None) -> None:
    """Derive the learned router's thresholds from ROWS (per-model outcomes) and write them into settings."""
    if target is not None and not 0 < target <= 1:
        raise InputError(f"--target: must be in (0, 1], got {target}")
    if cost_cap is not None and not 0 < cost_cap <= 1:
        raise InputError(f"--cost-cap: must be in (0, 1], got {cost_cap}")
    path = _settings_file(settings_path)
    # A settings file named but not there yet is created with the calibration (defaults otherwise).
    settings = get_settings(str(path)) if path.exists() else Settings()
    ls = settings.learned
    model = load_model(ls.weights, ls.embeddings)
    model_list = [m.strip() for m in models.split(",") if m.strip()] if models else list(model.meta.get("models") or [])
    tier_list = [t.strip() for t in tiers.split(",")] if tiers else []
    if tier_list and len(tier_list) != len(model_list):
        raise InputError(f"--tiers: give one tier per model ({len(model_list)}), got {len(tier_list)}")
    tgt = target if target is not None else ls.quality_target
    cap = cost_cap if cost_cap is not None else (ls.cost_cap if target is None else None)
    kept, qual, cost = prepare(list(iter_rows(rows)), model_list, rows)
    objective = ls.objective if model.cost_dense is not None else "quality"
    # The cost objective's cost head is refit on these rows' recorded costs (their own requests and output
    # lengths), scored out-of-fold for the cut points, then fit on all of them for routing.
    x = featurize(kept) if objective == "cost" else None
    head = _refit_cost_head(kept, model_list[-1], x) if x is not None else None
    scores = learned_scores(kept, model_list, model, objective=objective, refit_costs=head is not None, x=x)
    cal = calibrate(scores, np.asarray(qual), np.asarray(cost), target=tgt, cost_cap=cap, models=model_list,
                    tiers=tier_list)
    cal.source = Path(rows).name
    if head is not None:
        cal.cost_head, cal.cost_ref = head
    goal = f"cost <= {cap:.0%} of premium-only" if cap is not None else f"quality >= {tgt:.0%} of premium-only"
    mid = f", mid tier {cal.mid_share:.1%}" if cal.mid_share is not None else ""
    click.echo(f"{cal.rows} rows, {goal}, objective {objective}: cut points low {cal.low:.4f} high {cal.high:.4f}")
    click.echo(f"  expected: premium share {cal.premium_share:.1%}{mid}, quality {cal.quality:.1%} of premium-only, "
               f"cost {cal.cost_share:.1%} of premium-only")
    if head is not None:
        click.echo(f"  cost head refit on the {model_list[-1]} costs recorded in {Path(rows).name}")
    if dry_run:
        return
    updates: dict[str, Any] = {"calibration": cal.model_dump(exclude_none=True)}
    if cap is not None:
        updates["cost_cap"] = cap
    else:
        updates["quality_target"] = tgt
    if enable:
        updates["enabled"] = True
    write_learned(path, updates)
    click.echo(f"  written to {path} (learned.calibration{', learned.enabled' if enable else ''})")
