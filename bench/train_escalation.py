"""Rebuild the escalation scorer's weights from rows with cheap answers, deterministically.

    python bench/train_escalation.py ROWS.jsonl --models CHEAP,STRONG --out agent_router/data/escalation_weights.json

The shipped weights are rebuilt with (paths relative to the repository)
    python bench/train_escalation.py ../shared/bench/answers/gsm8k_dev_answers.jsonl \
        --models mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview \
        --out agent_router/data/escalation_weights.json
GSM8K answers from lm-sys/RouteLLM (Apache-2.0) are the only dev answer rows whose licence allows shipping
weights trained on them: AlpacaEval's (CC BY-NC 4.0) and RouterBench's (no licence) rows are refused unless
--allow-unlicensed is given for a private file. The threshold is calibrated on the out-of-fold scores (5 folds
grouped by prompt) to --target of strong-only quality, the cheap call paid on every row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_router.escalation import scorer as S  # noqa: E402
from agent_router.learned.evaluation import (
    iter_rows,  # noqa: E402
    prepare,  # noqa: E402
)

UNLICENSED = ("alpacaeval", "routerbench")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rows")
    ap.add_argument("--models", required=True, help="CHEAP,STRONG")
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--no-length", action="store_true", help="Leave out the length features.")
    ap.add_argument("--allow-unlicensed", action="store_true")
    a = ap.parse_args()
    if any(u in Path(a.rows).name.lower() for u in UNLICENSED) and not a.allow_unlicensed:
        print(f"{a.rows}: rows whose licence does not allow shipping weights; pass --allow-unlicensed for a "
              "private file", file=sys.stderr)
        return 2
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    rows, qual, cost = prepare(list(iter_rows(a.rows)), [models[0], models[-1]], a.rows)
    import numpy as np

    q, c = np.asarray(qual), np.asarray(cost)
    keys = S.feature_keys(not a.no_length)
    x = S.row_matrix(rows, models[0], keys, a.rows)
    oof = S.cross_val_scores(x, q, keys, S.grouped_folds(rows))
    cal = S.calibrate_threshold(oof, q, c, a.target)
    sc = S.train(x, q, keys, ids=[str(r["id"]) for r in rows],
                 meta={"source": Path(a.rows).name, "models": [models[0], models[-1]], "rows": len(rows),
                       "target": a.target, "calibration": cal, "length_features": not a.no_length})
    sc.threshold = cal["threshold"]
    sc.save(a.out)
    print(f"{a.out}: {len(keys)} weights; threshold {cal['threshold']:.4f} (out-of-fold: quality "
          f"{cal['quality']:.3f} of strong-only, escalation rate {cal['escalation_rate']:.3f}, spend "
          f"{cal['cost_share']:.3f} of strong-only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
