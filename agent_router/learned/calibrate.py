"""Calibration of the learned router: cut points on the router score for a quality target or a cost cap, from
rows with per-model outcomes (`calibrate`), and the whole `agent-router calibrate` run on a file of such rows
(`calibrate_rows`, `write_learned`)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..settings import LearnedCalibration, LearnedSettings, parse


def _cut(sorted_scores: np.ndarray, k: int) -> float:
    """A threshold sending exactly the top k (of scores sorted descending) at or above it."""
    n = len(sorted_scores)
    if k <= 0:
        return 1.0
    if k >= n:
        return 0.0
    return float((sorted_scores[k - 1] + sorted_scores[k]) / 2)


def calibrate(scores: Sequence[float], quality: np.ndarray, cost: np.ndarray, target: float = 0.95,
              cost_cap: float | None = None, grid: int = 200, models: Sequence[str] = (),
              tiers: Sequence[str] = ()) -> LearnedCalibration:
    """Thresholds on `scores` (raw need) from per-row quality and cost of 2 or 3 models (cheapest first).

    With a quality target: the cheapest split whose quality is >= target x premium-only quality. With a cost
    cap: the best quality whose cost is <= cost_cap x premium-only cost. `tiers` names the router tier of
    each model (default chat, premium for two models; utility, chat, premium for three).
    """
    s = np.asarray(scores, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    n, k = q.shape
    if n == 0:
        raise InputError("calibrate: no rows with outcomes for every model")
    if k not in (2, 3):
        raise InputError(f"calibrate: give 2 or 3 models, got {k}")
    tiers = list(tiers) or (["chat", "premium"] if k == 2 else ["utility", "chat", "premium"])
    order = np.argsort(-s, kind="stable")
    s_sorted, q, c = s[order], q[order], c[order]
    qp = np.vstack([np.zeros((1, k)), np.cumsum(q, axis=0)])
    cp = np.vstack([np.zeros((1, k)), np.cumsum(c, axis=0)])
    q_top, c_top = qp[n, -1], cp[n, -1]
    steps = sorted({int(round(i * n / grid)) for i in range(grid + 1)})
    best: tuple[float, float, int, int] | None = None  # (objective, -secondary, kp, km)
    for kp in steps:
        mids = [kk - kp for kk in steps if kk >= kp] if k == 3 else [0]
        for km in mids:
            e = kp + km
            qq = qp[kp, -1] + (qp[e, 1] - qp[kp, 1] if k == 3 else 0.0) + (qp[n, 0] - qp[e, 0])
            cc = cp[kp, -1] + (cp[e, 1] - cp[kp, 1] if k == 3 else 0.0) + (cp[n, 0] - cp[e, 0])
            rel_q = qq / q_top if q_top else 1.0
            rel_c = cc / c_top if c_top else 0.0
            if cost_cap is not None:
                if rel_c > cost_cap + 1e-12:
                    continue
                cand = (rel_q, -rel_c, kp, km)
            else:
                if rel_q < target - 1e-12:
                    continue
                cand = (-rel_c, rel_q, kp, km)
            if best is None or cand[:2] > best[:2]:
                best = cand
    if best is None:
        what = f"cost cap {cost_cap}" if cost_cap is not None else f"quality target {target}"
        raise InputError(f"calibrate: no split meets the {what} on these rows")
    _, _, kp, km = best
    e = kp + km
    high = _cut(s_sorted, kp)
    low = _cut(s_sorted, e)
    if k == 2 and tiers[0] == "chat":
        low = 0.0  # two models: the cheaper one is the chat tier; nothing is routed below it
    qq = qp[kp, -1] + (qp[e, 1] - qp[kp, 1] if k == 3 else 0.0) + (qp[n, 0] - qp[e, 0])
    cc = cp[kp, -1] + (cp[e, 1] - cp[kp, 1] if k == 3 else 0.0) + (cp[n, 0] - cp[e, 0])
    return LearnedCalibration(
        low=min(low, high), high=high, quality=round(qq / q_top if q_top else 1.0, 4),
        premium_share=round(kp / n, 4), mid_share=round(km / n, 4) if k == 3 else None,
        cost_share=round(cc / c_top if c_top else 0.0, 4), rows=n, models=list(models),
    )


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


@dataclass
class CalibrationRun:
    """What `calibrate_rows` found: the calibration, the goal it met and the models and objective it used."""

    calibration: LearnedCalibration
    models: list[str]
    objective: str
    target: float
    cost_cap: float | None
    cost_head_refit: bool


def calibrate_rows(rows: list[dict[str, Any]], ls: LearnedSettings, models: Sequence[str] = (),
                   target: float | None = None, cost_cap: float | None = None, tiers: Sequence[str] = (),
                   where: str = "rows", progress: Callable[[str, int, int], None] | None = None) -> CalibrationRun:
    """Cut points for the learned router of `ls` from routing-eval `rows` (per-model outcomes): the rows are
    scored (out-of-fold for rows the weights were trained on), then `calibrate` picks the thresholds. With the
    cost objective the cost head is refit on the rows' recorded costs. `progress(stage, done, total)` is called
    as the work advances."""
    from .evaluation import prepare
    from .model import load_model
    from .scoring import learned_scores, refit_cost_head
    from .train import featurize

    if target is not None and not 0 < target <= 1:
        raise InputError(f"--target: must be in (0, 1], got {target}")
    if cost_cap is not None and not 0 < cost_cap <= 1:
        raise InputError(f"--cost-cap: must be in (0, 1], got {cost_cap}")
    model = load_model(ls.weights, ls.embeddings)
    model_list = list(models) or list(model.meta.get("models") or [])
    if tiers and len(tiers) != len(model_list):
        raise InputError(f"--tiers: give one tier per model ({len(model_list)}), got {len(tiers)}")
    tgt = target if target is not None else ls.quality_target
    cap = cost_cap if cost_cap is not None else (ls.cost_cap if target is None else None)
    kept, qual, cost = prepare(rows, model_list, where)
    objective = ls.objective if model.cost_dense is not None else "quality"
    # The cost objective's cost head is refit on these rows' recorded costs (their own requests and output
    # lengths), scored out-of-fold for the cut points, then fit on all of them for routing.
    x = featurize(kept, progress=progress) if objective == "cost" else None
    head = refit_cost_head(kept, model_list[-1], x) if x is not None else None
    scores = learned_scores(kept, model_list, model, objective=objective, refit_costs=head is not None, x=x,
                            progress=progress)
    cal = calibrate(scores, np.asarray(qual), np.asarray(cost), target=tgt, cost_cap=cap, models=model_list,
                    tiers=list(tiers))
    cal.source = Path(where).name
    if head is not None:
        cal.cost_head, cal.cost_ref = head
    return CalibrationRun(cal, model_list, objective, tgt, cap, head is not None)
