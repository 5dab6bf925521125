"""Routing evaluation on per-prompt, per-model outcome rows (RouteLLM's metrics, arXiv 2406.18665).

A router gives each row a score (higher = needs the stronger model). Sweeping the share of rows sent to the
strong model from 0 to 100% (highest scores first) traces quality and cost:

- PGR(x) = (q(x) - q_weak) / (q_strong - q_weak); APGR = area under PGR over x (0.5 = random on average);
- CPT(p) = the smallest strong share at which PGR reaches p;
- save95 = the largest $ saving against strong-only at which quality is still >= 95% of strong-only quality.

With three tiers, two shares are swept (premium share, mid share) on a 5% grid and save95 is read off the
cost-quality frontier. Ties in scores are resolved in expectation (every metric is the mean over random
tie-breaking), so a router that gives every row the same score scores exactly like random.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import json_input
from .. import messages as msgs
from ..errors import InputError
from ..messages import last_user_index, text_of


@dataclass
class PairResult:
    apgr: float
    cpt50: float | None
    cpt80: float | None
    save95: float
    pgr_curve: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"apgr": self.apgr, "cpt50": self.cpt50, "cpt80": self.cpt80, "save95": self.save95}


def _tie_averaged(scores: Sequence[float], values: Sequence[float], order: list[int]) -> list[float]:
    """Values in `order` (descending score), each replaced by the mean over its group of equal scores."""
    out: list[float] = []
    i, n = 0, len(order)
    while i < n:
        j = i
        s = scores[order[i]]
        while j < n and scores[order[j]] == s:
            j += 1
        group = [values[order[k]] for k in range(i, j)]
        mean = sum(group) / len(group)
        out.extend([mean] * (j - i))
        i = j
    return out


def _prefix(xs: list[float]) -> list[float]:
    p = [0.0]
    for x in xs:
        p.append(p[-1] + x)
    return p


def evaluate_pair(
    scores: Sequence[float],
    q_weak: Sequence[float],
    q_strong: Sequence[float],
    c_weak: Sequence[float],
    c_strong: Sequence[float],
) -> PairResult:
    """APGR, CPT(50%), CPT(80%) and save95 for one score list against a weak/strong pair."""
    n = len(scores)
    if n == 0:
        raise InputError("no rows to evaluate")
    order = sorted(range(n), key=lambda i: -scores[i])
    qs = _prefix(_tie_averaged(scores, q_strong, order))
    qw = _prefix(_tie_averaged(scores, q_weak, order))
    cs = _prefix(_tie_averaged(scores, c_strong, order))
    cw = _prefix(_tie_averaged(scores, c_weak, order))
    total_w, total_s = qw[n], qs[n]
    cost_strong = cs[n]
    gap = total_s - total_w
    pgr = []
    best_save = 0.0
    for k in range(n + 1):
        q = qs[k] + (total_w - qw[k])
        pgr.append((q - total_w) / gap if gap else 0.0)
        cost = cs[k] + (cw[n] - cw[k])
        if q >= 0.95 * total_s and cost_strong > 0:
            best_save = max(best_save, 1 - cost / cost_strong)
    # Trapezoid over x = k/n.
    apgr = sum((pgr[k] + pgr[k + 1]) / 2 for k in range(n)) / n

    def cpt(p: float) -> float | None:
        for k, v in enumerate(pgr):
            if v >= p - 1e-12:
                return k / n
        return None

    return PairResult(apgr=apgr, cpt50=cpt(0.5), cpt80=cpt(0.8), save95=best_save, pgr_curve=pgr)


def evaluate_tiers(
    scores: Sequence[float],
    quality: Sequence[Sequence[float]],
    cost: Sequence[Sequence[float]],
    step: float = 0.05,
) -> dict[str, Any]:
    """Three (or more) tiers cheapest first. Sweep premium and mid shares; return save95 and the frontier."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: -scores[i])
    qp = [_prefix(_tie_averaged(scores, q, order)) for q in quality]
    cp = [_prefix(_tie_averaged(scores, c, order)) for c in cost]
    top = len(quality) - 1
    q_top = qp[top][n]
    c_top = cp[top][n]
    grid = [round(i * step, 10) for i in range(int(round(1 / step)) + 1)]
    points = []
    best = {"save95": 0.0, "premium_share": 1.0, "mid_share": 0.0, "quality": 1.0}
    for p in grid:
        for m in grid:
            if p + m > 1 + 1e-9:
                continue
            kp = int(round(p * n))
            km = min(n, kp + int(round(m * n)))
            # Top kp rows to the top tier, the next (km - kp) to the middle tier, the rest to the cheapest.
            q = qp[top][kp] + (qp[1][km] - qp[1][kp]) + (qp[0][n] - qp[0][km])
            c = cp[top][kp] + (cp[1][km] - cp[1][kp]) + (cp[0][n] - cp[0][km])
            rel_q = q / q_top if q_top else 0.0
            save = 1 - c / c_top if c_top else 0.0
            points.append((save, rel_q, p, m))
            if rel_q >= 0.95 and save > best["save95"]:
                best = {"save95": save, "premium_share": p, "mid_share": m, "quality": rel_q}
    return best


def request_length(row: dict[str, Any]) -> float:
    """The prompt-length baseline's score: characters of the whole prompt."""
    return float(sum(len(text_of(m)) for m in row["messages"]))


def oracle_scores(row_q: Sequence[Sequence[float]]) -> list[float]:
    """Strong only where it wins: the quality gain of the top model over the cheapest."""
    return [qs[-1] - qs[0] for qs in row_q]


def random_scores(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.random() for _ in range(n)]


def prepare(rows: list[dict[str, Any]], models: list[str], where: str = "rows") -> tuple[list[dict], list, list]:
    """Rows with a quality for every model (others are skipped), their qualities and costs per model."""
    if len(models) < 2:
        raise InputError("--models: give at least two models, cheapest first (weak,strong or a,b,c)")
    if rows:
        known = set(rows[0]["quality"])
        missing = [m for m in models if m not in known]
        if missing:
            raise InputError(
                f"--models: {', '.join(missing)} not in {where} (models there: {', '.join(sorted(known))})"
            )
    kept, qual, cost = [], [], []
    for r in rows:
        q = r.get("quality") or {}
        c = r.get("cost_usd") or {}
        if any(q.get(m) is None for m in models):
            continue
        kept.append(r)
        qual.append([float(q[m]) for m in models])
        cost.append([float(c.get(m, 0.0)) for m in models])
    if not kept:
        raise InputError(f"{where}: no row has a quality for all of {', '.join(models)}")
    return kept, qual, cost


def evaluate(
    rows: list[dict[str, Any]],
    models: list[str],
    routers: dict[str, Callable[[list[dict[str, Any]], list[str]], list[float]]],
    seeds: int = 10,
    extra_scores: dict[str, dict[str, float]] | None = None,
    where: str = "rows",
) -> dict[str, Any]:
    """Evaluate each router (name -> function of rows giving scores) beside random, length and oracle."""
    kept, qual, cost = prepare(rows, models, where)
    n = len(kept)
    table: dict[str, list[float]] = {}
    for name, fn in routers.items():
        table[name] = list(fn(kept, models))
    for name, by_id in (extra_scores or {}).items():
        missing = [r["id"] for r in kept if r["id"] not in by_id]
        if missing:
            raise InputError(f"peer scores {name!r}: no score for {len(missing)} rows (first: {missing[0]})")
        table[name] = [float(by_id[r["id"]]) for r in kept]
    table["length"] = [request_length(r) for r in kept]
    table["oracle"] = oracle_scores(qual)

    def score_one(scores: list[float]) -> dict[str, Any]:
        if len(models) == 2:
            pr = evaluate_pair(scores, [q[0] for q in qual], [q[1] for q in qual],
                               [c[0] for c in cost], [c[1] for c in cost])
            return pr.to_dict()
        pair = evaluate_pair(scores, [q[0] for q in qual], [q[-1] for q in qual],
                             [c[0] for c in cost], [c[-1] for c in cost])
        tiers = evaluate_tiers(scores, [[q[i] for q in qual] for i in range(len(models))],
                               [[c[i] for c in cost] for i in range(len(models))])
        return {**pair.to_dict(), "save95": tiers["save95"], "tiers": tiers}

    results = {name: score_one(s) for name, s in table.items()}
    rand = [score_one(random_scores(n, seed)) for seed in range(seeds)]
    results["random"] = {
        k: (sum(r[k] for r in rand if r[k] is not None) / max(1, sum(1 for r in rand if r[k] is not None)))
        for k in ("apgr", "cpt50", "cpt80", "save95")
    }
    return {"rows": n, "models": models, "results": results}


def request_of(row: dict[str, Any]) -> str:
    """The row's request: its last user message."""
    return text_of(row["messages"][last_user_index(row["messages"])])


def iter_rows(path: str) -> Iterator[dict[str, Any]]:
    """Rows of a routing-eval JSONL file; bad lines are InputErrors naming file and line."""
    p = Path(path)
    try:
        fh = p.open("rb")
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror})") from None
    with fh:
        n = 0
        while raw := fh.readline(msgs.MAX_INPUT_BYTES + 1):  # bounded: a 2 GB line is refused, not read whole
            n += 1
            where = f"{path}:{n}"
            if len(raw) > msgs.MAX_INPUT_BYTES:
                raise InputError(f"{where}: line longer than {msgs.MAX_INPUT_BYTES:,} bytes")
            if not raw.strip():
                continue
            row = json_input.loads(msgs.decode(raw, where), where)
            if not isinstance(row, dict) or "messages" not in row:
                raise InputError(f"{where}: expected an object with 'messages'")
            row["messages"] = msgs.validate(row["messages"], f"{where} messages")
            yield row
