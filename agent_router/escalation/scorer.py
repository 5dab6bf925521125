"""The escalation scorer: predicted quality gain of the next tier over a cheap answer already in hand.

Features are the request's dense features (agent_router.learned.features) plus the answer features below (one
indicator per check of agent_router.escalation.checks, and a few continuous ones). One logistic head, trained
with agent_router.learned.train.fit_head on soft labels (1 + q_strong - q_cheap) / 2, so its output is the
expected gain mapped to 0..1: higher = escalate sooner. The escalation threshold is calibrated to a quality
target with agent_router.learned.router.calibrate, counting the cheap call's cost on every row.

`length=False` drops the features that measure the answer's length (LENGTH_KEYS), for judges that prefer long
answers (AlpacaEval's): what is left must find failures by what the answer says, not how long it is.

No feature reads a benchmark's answer format (GSM8K's "#### N", bare multiple-choice letters).
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AgentRouterError, InputError
from ..learned.features import DENSE_KEYS, extract
from ..learned.train import Matrix, TrainOptions, fit_head
from ..messages import last_user_index, text_of
from .checks import CHECKS, MAX_SCAN, Finding, arithmetic, repetition_share, run_checks

FORMAT = "agent_router.escalation/1"
WEIGHTS = "data/escalation_weights.json"
FOLDS = 5

LENGTH_KEYS: tuple[str, ...] = ("answer_log_chars", "answer_ratio", "answer_lines")
ANSWER_KEYS: tuple[str, ...] = tuple(f"check_{c}" for c in CHECKS) + (
    "any_check", "arith_checked", "arith_wrong", "repetition_share", "answer_code", "answer_question",
    "request_overlap", "apology", "hedge", "self_correction", "numbers_used", "structure", "caveats",
) + LENGTH_KEYS

_WORD = re.compile(r"[a-z]{3,30}")
_APOLOGY = re.compile(r"(?i)\b(?:sorry|apologi[sz]e|unfortunately|i'm not sure|i am not sure|i don't know|"
                      r"i do not know|not possible to (?:determine|know))\b")


_NUMBER = re.compile(r"\d{1,15}(?:\.\d{1,8})?")
_STRUCT = re.compile(r"(?m)^[ \t]{0,8}(?:[-*+•] |\d{1,3}[.)] |#{1,6} )")
_CAVEAT = re.compile(r"(?i)\b(?:i must (?:point out|inform|clarify|emphasi[sz]e)|i would like to (?:point out|clarify)|"
                     r"(?:not|in)appropriate|harmful|offensive|unethical|respectful|(?:socially )?responsible|"
                     r"it is (?:important|essential) to (?:note|remember)|please (?:note|keep in mind)|"
                     r"safe and (?:positive|respectful)|i cannot (?:provide|recommend|encourage))")
_HEDGE = re.compile(r"(?i)\b(?:assum(?:e|es|ing|ption)|approximately|roughly|unclear|not (?:specified|given|mentioned|"
                    r"enough information)|(?:doesn't|does not|didn't|did not) (?:say|specify|mention)|"
                    r"(?:can't|cannot|can not) be determined|probably|likely)\b")
_CORRECTION = re.compile(r"(?i)\b(?:wait|actually|mistake|correction|let me (?:re|try again)|re-?evaluat|"
                         r"re-?calculat|made an error|oops|on second thought)\w{0,10}")


class EscalationWeightsError(AgentRouterError):
    """An escalation weights file is missing, unreadable or of another format."""


def answer_features(messages: list[dict[str, Any]], answer: str | None,
                    findings: Sequence[Finding]) -> dict[str, float]:
    """The answer's features (ANSWER_KEYS) given the checks' findings on it."""
    answer = answer if isinstance(answer, str) else ""
    try:
        request = text_of(messages[last_user_index(messages)])
    except (ValueError, IndexError, KeyError, TypeError):
        request = ""
    fired = {f.check for f in findings}
    out = {f"check_{c}": 1.0 if c in fired else 0.0 for c in CHECKS}
    out["any_check"] = 1.0 if fired else 0.0
    checked, wrong = arithmetic(answer)
    out["arith_checked"] = min(checked, 10) / 10
    out["arith_wrong"] = min(len(wrong), 3) / 3
    out["repetition_share"] = repetition_share(answer)
    out["answer_code"] = 1.0 if "```" in answer[:MAX_SCAN] else 0.0
    out["answer_question"] = 1.0 if answer.rstrip().endswith("?") else 0.0
    rw = set(_WORD.findall(request[:20_000].lower()))
    aw = set(_WORD.findall(answer[:20_000].lower()))
    out["request_overlap"] = len(rw & aw) / len(rw) if rw else 0.0
    out["apology"] = 1.0 if _APOLOGY.search(answer[:1000]) else 0.0
    head = answer[:20_000]
    out["hedge"] = min(len(_HEDGE.findall(head)), 3) / 3
    out["self_correction"] = min(len(_CORRECTION.findall(head)), 3) / 3
    out["caveats"] = min(len(_CAVEAT.findall(head)), 4) / 4
    rn = set(_NUMBER.findall(request[:20_000])[:200])
    out["numbers_used"] = len(rn & set(_NUMBER.findall(head))) / len(rn) if rn else 0.0
    lines = head.count("\n") + 1
    out["structure"] = min(1.0, len(_STRUCT.findall(head)) / lines)
    out["answer_log_chars"] = math.log1p(len(answer)) / 10
    out["answer_ratio"] = max(-3.0, min(3.0, math.log((len(answer) + 1) / (len(request) + 1)))) / 3
    out["answer_lines"] = math.log1p(answer.count("\n", 0, MAX_SCAN)) / 5
    return out


def feature_keys(length: bool = True) -> tuple[str, ...]:
    answer = ANSWER_KEYS if length else tuple(k for k in ANSWER_KEYS if k not in LENGTH_KEYS)
    request = DENSE_KEYS if length else tuple(k for k in DENSE_KEYS if k not in ("length", "log_chars",
                                                                                   "log_chars_full", "lines"))
    return tuple(f"req_{k}" for k in request) + answer


def features(messages: list[dict[str, Any]], answer: str | None, finish_reason: str | None = None,
             tool_calls: Sequence[Any] | None = None, keys: Sequence[str] | None = None
             ) -> tuple[np.ndarray, list[Finding]]:
    """The scorer's feature vector (in `keys` order, default all) and the checks' findings."""
    findings = run_checks(messages, answer, finish_reason, tool_calls)
    req = extract(messages)
    vals = {f"req_{k}": v for k, v in zip(DENSE_KEYS, req.dense, strict=True)}
    vals.update(answer_features(messages, answer, findings))
    return np.asarray([vals[k] for k in (keys or feature_keys())], dtype=np.float64), findings


@dataclass
class EscalationScorer:
    """Weights over named features; `threshold` (calibrated) is where a score means "escalate"."""

    keys: list[str]
    weights: np.ndarray
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)
    # CRC32 of the ids of the rows trained on, so evaluation can tell seen rows from unseen ones.
    train_ids: frozenset[int] = frozenset()

    def score(self, messages: list[dict[str, Any]], answer: str | None, finish_reason: str | None = None,
              tool_calls: Sequence[Any] | None = None) -> tuple[float, list[Finding]]:
        """Predicted quality gain of the next tier in 0..1 (0.5 = none) and the checks' findings."""
        x, findings = features(messages, answer, finish_reason, tool_calls, self.keys)
        return float(_sigmoid(np.asarray([x @ self.weights]))[0]), findings

    def should_escalate(self, messages: list[dict[str, Any]], answer: str | None, finish_reason: str | None = None,
                        tool_calls: Sequence[Any] | None = None) -> tuple[bool, float, list[Finding]]:
        s, findings = self.score(messages, answer, finish_reason, tool_calls)
        return s >= self.threshold, s, findings

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(x @ self.weights)

    def seen(self, row_id: str) -> bool:
        return zlib.crc32(row_id.encode("utf-8")) in self.train_ids

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "keys": self.keys, "weights": [round(float(w), 6) for w in self.weights],
                "threshold": self.threshold, "meta": self.meta, "train_ids": sorted(self.train_ids)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")


def load_scorer(path: str | None = None) -> EscalationScorer:
    """Weights from `path`, or the packaged ones (trained on GSM8K answers only, see docs/escalation.md)."""
    where = path or f"agent_router/{WEIGHTS}"
    try:
        text = Path(path).read_text(encoding="utf-8") if path else \
            resources.files("agent_router").joinpath(WEIGHTS).read_text(encoding="utf-8")
        d = json.loads(text)
    except (OSError, UnicodeDecodeError) as e:
        raise EscalationWeightsError(f"{where}: cannot read escalation weights ({e})") from None
    except json.JSONDecodeError as e:
        raise EscalationWeightsError(f"{where}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise EscalationWeightsError(f"{where}: not escalation weights (expected format {FORMAT!r})")
    keys, w = d.get("keys"), d.get("weights")
    known = set(feature_keys())
    if not isinstance(keys, list) or not isinstance(w, list) or len(keys) != len(w) or \
            any(k not in known for k in keys):
        raise EscalationWeightsError(f"{where}: keys and weights do not match this version's features")
    return EscalationScorer(keys=list(keys), weights=np.asarray(w, dtype=np.float64),
                            threshold=float(d.get("threshold", 0.5)), meta=dict(d.get("meta") or {}),
                            train_ids=frozenset(int(i) for i in d.get("train_ids") or []))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


# -- training on rows with answers ---------------------------------------------------------------------------
def row_answer(row: dict[str, Any], model: str, where: str = "rows") -> str:
    ans = (row.get("answers") or {}).get(model)
    if not isinstance(ans, str):
        raise InputError(f"{where}: row {row.get('id')!r} has no answer text from {model} (field answers.{model})")
    return ans


def row_matrix(rows: Sequence[dict[str, Any]], cheap: str, keys: Sequence[str], where: str = "rows") -> np.ndarray:
    """(n, len(keys)) features of each row's request and its cheap model's answer."""
    out = np.empty((len(rows), len(keys)))
    for i, r in enumerate(rows):
        out[i], _ = features(r["messages"], row_answer(r, cheap, where), keys=keys)
    return out


def gain_labels(quality: np.ndarray) -> np.ndarray:
    """Soft labels from (n, 2) qualities [cheap, strong]: (1 + gain) / 2."""
    return np.clip((1.0 + quality[:, -1] - quality[:, 0]) / 2.0, 0.0, 1.0)


def fit(x: np.ndarray, y: np.ndarray, keys: Sequence[str], opts: TrainOptions | None = None) -> np.ndarray:
    """Logistic weights over `keys` (learned_train.fit_head; dense features only, no hashed n-grams)."""
    opts = opts or TrainOptions(l2_dense=1e-3, hashed=False, iterations=800, learning_rate=0.05)
    # fit_head finds its bias column by DENSE_KEYS' "bias": put ours there.
    bias = DENSE_KEYS.index("bias")
    src = list(keys).index("req_bias")
    order = list(range(x.shape[1]))
    order[bias], order[src] = order[src], order[bias]
    xm = x[:, order]
    empty = np.zeros(0, dtype=np.int64)
    m = Matrix(xm, np.zeros(x.shape[0] + 1, dtype=np.int64), empty, np.zeros(0))
    wd, _wh, _we = fit_head(m, y, opts)
    w = np.empty_like(wd)
    w[order] = wd
    return w


def grouped_folds(rows: Sequence[dict[str, Any]], k: int = FOLDS) -> np.ndarray:
    """Fold of each row: rows with the same request text share a fold (the i-th distinct request goes to fold
    i mod k), so no prompt is both trained and scored on."""
    seen: dict[str, int] = {}
    out = np.empty(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        key = text_of(r["messages"][last_user_index(r["messages"])])
        out[i] = seen.setdefault(key, len(seen) % k)
    return out


def train(x: np.ndarray, quality: np.ndarray, keys: Sequence[str], ids: Sequence[str] = (),
          meta: dict[str, Any] | None = None) -> EscalationScorer:
    w = fit(x, gain_labels(quality), keys)
    return EscalationScorer(keys=list(keys), weights=w, meta=dict(meta or {}),
                            train_ids=frozenset(zlib.crc32(str(i).encode("utf-8")) for i in ids))


def cross_val_scores(x: np.ndarray, quality: np.ndarray, keys: Sequence[str], fold: np.ndarray) -> np.ndarray:
    """Out-of-fold scores: each row scored by a scorer trained on the other folds."""
    out = np.empty(x.shape[0])
    for j in np.unique(fold):
        test = fold == j
        if (~test).sum() == 0:
            out[test] = 0.5
            continue
        w = fit(x[~test], gain_labels(quality[~test]), keys)
        out[test] = _sigmoid(x[test] @ w)
    return out


def calibrate_threshold(scores: np.ndarray, quality: np.ndarray, cost: np.ndarray, target: float = 0.95) -> dict:
    """The escalation threshold meeting `target` x strong-only quality at the least spend, the cheap call paid on
    every row (agent_router.learned.router.calibrate on costs [cheap, cheap + strong])."""
    from ..learned.router import calibrate

    c = np.stack([cost[:, 0], cost[:, 0] + cost[:, -1]], axis=1)
    cal = calibrate(scores, quality[:, [0, -1]], c, target=target)
    strong_only = float(cost[:, -1].sum())
    spend = float(cal.cost_share or 0.0) * float(c[:, 1].sum())
    return {"threshold": cal.high, "quality": cal.quality, "escalation_rate": cal.premium_share,
            "cost_share": round(spend / strong_only, 4) if strong_only else None, "rows": cal.rows}


def labelled(rows: Sequence[dict[str, Any]], models: Sequence[str]) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The rows with a quality for the cheap and the strong model, and those qualities (n, 2)."""
    cheap, strong = models[0], models[-1]
    keep, q = [], []
    for r in rows:
        qq = r.get("quality") or {}
        if qq.get(cheap) is not None and qq.get(strong) is not None:
            keep.append(r)
            q.append([float(qq[cheap]), float(qq[strong])])
    return keep, np.asarray(q, dtype=np.float64).reshape(len(q), 2)


def scores_for_rows(rows: list[dict[str, Any]], models: Sequence[str], length: bool = True,
                    train_rows: list[dict[str, Any]] | None = None, scorer: EscalationScorer | None = None,
                    where: str = "rows") -> np.ndarray:
    """Escalation scores of rows with cheap answers (higher = escalate sooner).

    A scorer is trained on `train_rows` (default: the rows themselves) that carry a quality for both models;
    rows among them (by id) are scored out-of-fold (5 folds grouped by prompt), the others by the scorer trained
    on all of them. With fewer than 50 such rows, `scorer` (default: the packaged weights) scores every row."""
    cheap = models[0]
    pool, q = labelled(rows if train_rows is None else train_rows, models)
    if len(pool) < 10 * FOLDS:
        scorer = scorer or load_scorer()
        if not rows:
            return np.zeros(0)
        return scorer.score_matrix(np.stack([features(r["messages"], row_answer(r, cheap, where),
                                                      keys=scorer.keys)[0] for r in rows]))
    keys = feature_keys(length)
    xp = row_matrix(pool, cheap, keys, where)
    oof = cross_val_scores(xp, q, keys, grouped_folds(pool))
    if train_rows is None:  # the pool is the labelled rows themselves: match by position (ids may repeat)
        pos = {id(r): i for i, r in enumerate(pool)}
        hit = [pos.get(id(r)) for r in rows]
    else:
        first: dict[str, int] = {}
        for i, r in enumerate(pool):
            first.setdefault(str(r.get("id")), i)
        hit = [first.get(str(r.get("id"))) for r in rows]
    out = np.array([oof[h] if h is not None else 0.0 for h in hit])
    rest = [i for i, h in enumerate(hit) if h is None]
    if rest:
        w = fit(xp, gain_labels(q), keys)
        out[rest] = _sigmoid(row_matrix([rows[i] for i in rest], cheap, keys, where) @ w)
    return out
