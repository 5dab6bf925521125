"""Cost-quality curves of routing that may check the cheap answer first, on rows with answers.

Policies, each a family of thresholds swept from "nothing to the strong model" to "everything":
- request-only: a router score; the top share goes straight to STRONG, the rest to CHEAP (no cheap call first);
- escalation: every row is asked of CHEAP first (paid); the top share by escalation score is re-asked of STRONG
  (paid on top);
- hybrid: the request-only router's top h share goes straight to STRONG; the rest is cheap-then-check
  (h swept on a 5% grid, every escalation share for each h);
- random and oracle: request-only with random scores (mean of seeds) and with the true gain.

Summary per policy (quality and spend summed over the rows):
- area: area under PGR over normalised spend u = (spend - cheap-only) / (strong-only - cheap-only) in [0, 1],
  PGR at each u being the best any threshold reaches at that spend or less (what a calibration would pick);
- save95: the largest saving against strong-only spend with quality >= 95% of strong-only quality;
- share95: the share of rows sent to (or re-asked of) STRONG at that point.
Ties in scores are averaged (agent_router.learned.evaluation's rule), so a constant score is exactly random.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..learned.evaluation import _prefix, _tie_averaged, oracle_scores, random_scores

GRID = 201


def _curve(scores: Sequence[float], qw: np.ndarray, qs: np.ndarray, a: np.ndarray, b: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Quality and spend after sending the top k rows (k = 0..n) to the strong option (quality qs, cost b) and
    the rest to the weak one (qw, a)."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: -scores[i])
    s = list(scores)
    ps = np.asarray(_prefix(_tie_averaged(s, list(qs), order)))
    pw = np.asarray(_prefix(_tie_averaged(s, list(qw), order)))
    pb = np.asarray(_prefix(_tie_averaged(s, list(b), order)))
    pa = np.asarray(_prefix(_tie_averaged(s, list(a), order)))
    return ps + (pw[-1] - pw), pb + (pa[-1] - pa)


def summarize(q: np.ndarray, c: np.ndarray, share: np.ndarray, totals: tuple[float, float, float, float]
              ) -> dict[str, Any]:
    """Area under PGR over normalised spend, save95 and share95 from curve points (quality, spend, share)."""
    qw, qs, cw, cs = totals
    gap = qs - qw
    pgr = (q - qw) / gap if gap else np.zeros_like(q)
    span = cs - cw
    u = (c - cw) / span if span > 0 else np.where(c <= cw, 0.0, 1.0)
    order = np.argsort(u, kind="stable")
    u_sorted, best = u[order], np.maximum.accumulate(pgr[order])
    grid = np.linspace(0.0, 1.0, GRID)
    idx = np.searchsorted(u_sorted, grid + 1e-12, side="right") - 1
    env = np.where(idx >= 0, best[np.clip(idx, 0, None)], 0.0)
    area = float(np.trapz(env, grid)) if hasattr(np, "trapz") else float(np.trapezoid(env, grid))
    ok = q >= 0.95 * qs - 1e-12
    save95, share95 = 0.0, None
    if ok.any() and cs > 0:
        saves = np.where(ok, 1.0 - c / cs, -np.inf)
        i = int(np.argmax(saves))
        save95, share95 = max(0.0, float(saves[i])), float(share[i])
    return {"area": area, "save95": save95, "share95": share95}


def request_only(scores: Sequence[float], qual: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, ...]:
    n = len(scores)
    q, c = _curve(scores, qual[:, 0], qual[:, 1], cost[:, 0], cost[:, 1])
    return q, c, np.arange(n + 1) / n


def escalation(scores: Sequence[float], qual: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, ...]:
    n = len(scores)
    q, c = _curve(scores, qual[:, 0], qual[:, 1], cost[:, 0], cost[:, 0] + cost[:, 1])
    return q, c, np.arange(n + 1) / n


def hybrid(request_scores: Sequence[float], esc_scores: Sequence[float], qual: np.ndarray, cost: np.ndarray,
           step: float = 0.05, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Points of every (straight share h on a `step` grid, escalation share) pair; share = h + escalated."""
    n = len(request_scores)
    rng = np.random.default_rng(seed)
    # Ties in the request score are broken at random (fixed seed), like a router would break them.
    order = np.lexsort((rng.random(n), -np.asarray(request_scores, dtype=np.float64)))
    qs_, cs_, sh_ = [], [], []
    esc = np.asarray(esc_scores, dtype=np.float64)
    for h in sorted({int(round(i * step * n)) for i in range(int(round(1 / step)) + 1)}):
        top, rest = order[:h], order[h:]
        q0 = qual[top, 1].sum()
        c0 = cost[top, 1].sum()
        if len(rest):
            q, c = _curve(list(esc[rest]), qual[rest, 0], qual[rest, 1], cost[rest, 0],
                          cost[rest, 0] + cost[rest, 1])
        else:
            q, c = np.zeros(1), np.zeros(1)
        qs_.append(q + q0)
        cs_.append(c + c0)
        sh_.append((h + np.arange(len(q))) / n)
    return np.concatenate(qs_), np.concatenate(cs_), np.concatenate(sh_)


def compare(qual: np.ndarray, cost: np.ndarray, request: dict[str, Sequence[float]],
            esc: dict[str, Sequence[float]], hybrid_of: str | None = None, seeds: int = 10) -> dict[str, Any]:
    """Summaries of each request-only router, each escalation scorer, hybrid (router `hybrid_of` x each
    escalation scorer), random and oracle on the same rows: qual / cost are (n, 2) [cheap, strong]."""
    n = qual.shape[0]
    totals = (float(qual[:, 0].sum()), float(qual[:, 1].sum()), float(cost[:, 0].sum()), float(cost[:, 1].sum()))
    out: dict[str, Any] = {}
    for name, s in request.items():
        out[f"request-only ({name})"] = summarize(*request_only(s, qual, cost), totals)
    for name, s in esc.items():
        out[name] = summarize(*escalation(s, qual, cost), totals)
    if hybrid_of is not None:
        for name, s in esc.items():
            label = "hybrid" + name[len("escalation"):] if name.startswith("escalation") else f"hybrid {name}"
            out[label] = summarize(*hybrid(request[hybrid_of], s, qual, cost), totals)
    rand = [summarize(*request_only(random_scores(n, seed), qual, cost), totals) for seed in range(seeds)]
    out["random"] = {"area": float(np.mean([r["area"] for r in rand])),
                     "save95": float(np.mean([r["save95"] for r in rand])),
                     "share95": float(np.mean([r["share95"] or 0.0 for r in rand]))}
    out["oracle"] = summarize(*request_only(oracle_scores(qual.tolist()), qual, cost), totals)
    return out


def format_table(report: dict[str, Any], title: str = "") -> str:
    lines = [f"{title} ({report['rows']} rows; {report['models'][0]} -> {report['models'][-1]}; "
             "cheap call counted for escalation and hybrid)" if title else ""]
    lines.append(f"| {'policy':<34} | {'area':>6} | {'save95':>7} | {'share95':>7} |")
    lines.append(f"|{'-' * 36}|{'-' * 8}|{'-' * 9}|{'-' * 9}|")
    for name, r in report["results"].items():
        share = "n/a" if r["share95"] is None else f"{100 * r['share95']:.1f}%"
        lines.append(f"| {name:<34} | {r['area']:>6.3f} | {100 * r['save95']:>6.1f}% | {share:>7} |")
    return "\n".join(x for x in lines if x)


def evaluate_rows(rows: list[dict[str, Any]], models: Sequence[str], request: dict[str, Any], seeds: int = 10,
                  where: str = "rows") -> dict[str, Any]:
    """The comparison on answer rows: `request` maps router names to functions (rows, models) -> scores (as
    `agent-router eval --router`); escalation scores are out-of-fold (5 folds grouped by prompt), with and
    without the length features. Hybrid uses the `learned` router if given, else the first."""
    from ..learned.evaluation import prepare
    from .scorer import scores_for_rows

    pair = [models[0], models[-1]]
    kept, qual, cost = prepare(rows, pair, where)
    q, c = np.asarray(qual, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    req = {name: [float(v) for v in fn(kept, pair)] for name, fn in request.items()}
    esc = {"escalation": list(scores_for_rows(kept, pair, length=True, where=where)),
           "escalation (no length features)": list(scores_for_rows(kept, pair, length=False, where=where))}
    hybrid_of = "learned" if "learned" in req else (next(iter(req)) if req else None)
    results = compare(q, c, req, esc, hybrid_of=hybrid_of, seeds=seeds)
    return {"rows": len(kept), "models": pair, "hybrid_of": hybrid_of, "results": results}
