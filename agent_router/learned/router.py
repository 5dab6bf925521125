"""The learned router: predicted per-model quality -> need for premium, calibrated to a quality target.

`LearnedRouter.analyze(messages)` returns an `Analysis` whose score is the predicted need for the premium
model, rescaled so the calibrated thresholds land on the router's own tier thresholds (`routing.thresholds`):
a request goes to the cheapest tier whose predicted quality is good enough for the target. `calibrate()`
derives those thresholds from rows with per-model outcomes, for a quality target ("keep >= 95% of premium
quality") or a cost cap, and reports the expected premium share, quality and cost.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ..analyzer import Analysis
from ..errors import AgentRouterError, InputError
from ..settings import LearnedCalibration, LearnedSettings, Settings
from .adaptive import AdaptiveEstimator
from .features import DENSE_KEYS
from .model import QualityModel, objective_score

__all__ = ["LearnedRouter", "LearnedSettings", "calibrate", "for_settings", "record_outcome", "reset",
           "sync_ledger"]

log = logging.getLogger("agent_router.learned")

_LABELS = {
    "length": "long request", "reasoning": "asks for reasoning", "multistep": "multi-step", "code_presence":
    "contains code", "code_ask": "asks for code", "math": "math", "numbers": "numbers", "constraints":
    "constraints", "conversation_depth": "deep conversation", "context_length": "long context", "choices":
    "multiple choice", "log_chars": "long question", "shots": "few-shot examples", "n_options": "options",
    "two_options": "two options", "blank": "fill in the blank", "digit_share": "digits", "lines": "many lines",
    "code_fence": "code block", "turns": "several turns", "answer_cue": "short answer expected",
}


@lru_cache(maxsize=8)
def load_model(path: str | None, embeddings: bool = False) -> QualityModel:
    """Weights by path (None: packaged; `embeddings`: the packaged weights with embedding heads), loaded once
    per process."""
    return QualityModel.load(path, embeddings)


def rescale(raw: float, cal: LearnedCalibration, low: float, high: float) -> float:
    """Map a raw need score so the calibrated cut points land on the router's thresholds `low` / `high`."""
    def lin(x: float, x0: float, x1: float, y0: float, y1: float) -> float:
        return y0 if x1 <= x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)

    if raw < cal.low:
        return lin(raw, 0.0, cal.low, 0.0, low)
    if raw < cal.high:
        return lin(raw, cal.low, cal.high, low, high)
    return min(1.0, lin(raw, cal.high, 1.0, high, 1.0)) if cal.high < 1.0 else 1.0


class LearnedRouter:
    """Scores requests with the learned quality model, the calibration and (optionally) adaptive outcomes."""

    def __init__(self, settings: LearnedSettings | None = None, model: QualityModel | None = None,
                 estimator: AdaptiveEstimator | None = None, feed: LedgerFeed | None = None):
        self.settings = settings or LearnedSettings()
        self.feed = feed
        self.model = model or load_model(self.settings.weights, self.settings.embeddings)
        if self.model.w_emb is not None:
            from .embeddings.minilm import embedder, model_dir

            model_dir()  # fail now, naming the install command, rather than on the first request
            if self.model.embedding_kind == "static":
                embedder("static")  # likewise naming `agent-router embeddings build`; loads in ~50 ms
        self.objective = self.settings.objective if self.model.cost_dense is not None else "quality"
        self.calibration = self.settings.calibration or default_calibration(self.model, self.objective)
        self._cost_head = _cost_head(self.calibration)
        priors = self.model.meta.get("task_priors") or {}
        self.estimator = estimator or estimator_for(self.settings, priors)
        self._lock = threading.Lock()

    def predict(self, messages: list[dict[str, Any]]) -> tuple[Any, dict[str, float], float, float]:
        """Features, head probabilities, raw need before and after adaptive outcomes (the latter on the same
        side of the cut point as the adaptive decision, so the router's thresholds follow it)."""
        f, probs, raw, need, _sketch, _held = self._predict(messages)
        return f, probs, raw, need

    def _predict(self, messages: list[dict[str, Any]]
                 ) -> tuple[Any, dict[str, float], float, float, str | None, bool]:
        """As `predict`, plus the request's sketch for the ledger and whether the spend keeper moved the
        decision across the cut point."""
        if self.settings.adaptive and self.feed is not None:
            self.feed.sync(self.estimator)
        f = self.model.features(messages)
        probs = self.model.predict(f)
        p_w, p_s = probs[self.model.heads[0]], probs[self.model.heads[-1]]
        lc = self.model.log_cost(f, self._cost_head) if self.objective == "cost" else None
        raw = objective_score(p_w, p_s, lc)
        if not self.settings.adaptive:
            return f, probs, raw, raw, None, False
        key = self.estimator.new_key()
        need, strong, _raw, _static = self.estimator.decide(
            f.task_type, p_w, p_s, self.calibration.high, dense=f.dense, hashed=f.hashed, log_cost=lc, key=key)
        # The spend keeper may send a request across the cut point its need alone would not cross (or hold
        # one back): the need reported to the router lands on the decided side.
        cut = self.calibration.high
        held = strong != (need >= cut)
        if held:
            need = cut if strong else max(0.0, cut - 1e-6)
        from .adaptive import sketch

        return f, probs, raw, need, sketch(f.dense, p_w, p_s, key), held

    def analyze(self, messages: list[dict[str, Any]], low: float = 0.3, high: float = 0.7) -> Analysis:
        f, probs, raw, need, sk, held = self._predict(messages)
        cal = self.calibration
        score = rescale(need, cal, low, high)
        heads = self.model.heads
        reasons = [f"task: {f.task_type}",
                   f"learned: P(good) {heads[0]} {probs[heads[0]]:.2f}, {heads[-1]} {probs[heads[-1]]:.2f}"
                   f" -> {'gain per $' if self.objective == 'cost' else 'need'} {need:.2f}"
                   f" (cut points {cal.low:.3f}/{cal.high:.3f})"]
        if abs(need - raw) >= 0.005:
            reasons.append(f"adaptive: outcomes for {f.task_type} moved need {raw:.2f} -> {need:.2f}"
                           + (" (premium spend held at the static router's)" if held else ""))
        gain_w = self.model.w_dense[-1] - self.model.w_dense[0]
        contrib = sorted(((float(gain_w[i]) * v, k) for i, (k, v) in enumerate(zip(DENSE_KEYS, f.dense, strict=True))
                          if v and k in _LABELS), reverse=True)
        reasons += [f"{_LABELS[k]} (+{c:.2f})" for c, k in contrib[:3] if c >= 0.05]
        if f.shots:
            reasons.append(f"few-shot prompt: judged on the real question after {f.shots} examples")
        feats = dict(f.analyzer)
        feats.update({"p_" + h: p for h, p in probs.items()})
        feats.update({"need_raw": raw, "need": need, "shots": float(f.shots)})
        return Analysis(score=score, task_type=f.task_type, reasons=reasons, features=feats,
                        needs_vision=f.analyzer.get("images", 0.0) > 0, source="learned", sketch=sk)


def _cost_head(cal: LearnedCalibration) -> tuple[np.ndarray, float] | None:
    """The calibration's refit cost head as a vector over DENSE_KEYS, or None to use the weights' own."""
    if not cal.cost_head:
        return None
    unknown = sorted(set(cal.cost_head) - set(DENSE_KEYS))
    if unknown:
        raise InputError(f"learned.calibration.cost_head: unknown feature {unknown[0]!r} (known: "
                         f"{', '.join(DENSE_KEYS)}); rerun `agent-router calibrate`")
    w = np.array([float(cal.cost_head.get(k, 0.0)) for k in DENSE_KEYS])
    return w, float(cal.cost_ref or 0.0)


def default_calibration(model: QualityModel, objective: str = "quality") -> LearnedCalibration:
    """The calibration stored with the weights for `objective` (out-of-fold on their training rows), else an
    even split."""
    cal = model.meta.get("calibration_cost" if objective == "cost" else "calibration")
    if cal:
        return LearnedCalibration.model_validate(cal)
    return LearnedCalibration(low=0.0, high=0.5)


# -- calibration -----------------------------------------------------------------------------------------
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


def for_settings(settings: Settings) -> LearnedRouter | None:
    """The process-wide LearnedRouter for these settings, or None when learned routing is off."""
    ls = settings.learned
    if not ls.enabled:
        return None
    key = ls.model_dump_json()
    with _routers_lock:
        r = _routers.get(key)
        if r is None:
            r = LearnedRouter(ls, estimator=_shared_estimator(ls), feed=_shared_feed(settings))
            _routers[key] = r
        return r


_routers: dict[str, LearnedRouter] = {}
_routers_lock = threading.Lock()
_estimators: dict[tuple[Any, ...], AdaptiveEstimator] = {}


def estimator_for(ls: LearnedSettings, priors: dict[str, Any]) -> AdaptiveEstimator:
    """A fresh adaptive estimator configured by the learned settings (seeded: the same outcomes in the same
    order give the same decisions)."""
    return AdaptiveEstimator(priors, ls.adaptive_prior_strength, per_request=ls.adaptive_per_request,
                             precision=ls.adaptive_precision, explore=ls.adaptive_explore,
                             keep_spend=ls.adaptive_keep_spend, per_dollar=ls.adaptive_per_dollar)


def _shared_estimator(ls: LearnedSettings) -> AdaptiveEstimator:
    """One estimator per weights file and adaptive configuration, shared by routers of changing settings."""
    key = (ls.weights, ls.embeddings, ls.adaptive_prior_strength, ls.adaptive_per_request, ls.adaptive_precision,
           ls.adaptive_explore, ls.adaptive_keep_spend, ls.adaptive_per_dollar)
    est = _estimators.get(key)
    if est is None:
        priors = load_model(ls.weights, ls.embeddings).meta.get("task_priors") or {}
        est = estimator_for(ls, priors)
        _estimators[key] = est
    return est


SYNC_EVERY_S = 30.0


class LedgerFeed:
    """Reads new outcomes (feedback joined with calls) from the ledger into an estimator, at most every
    `every_s` seconds, and never creates a ledger that does not exist. A broken ledger is logged, not raised:
    routing goes on with what was learned so far."""

    def __init__(self, settings: Settings, every_s: float = SYNC_EVERY_S):
        from ..ledger import default_path

        self.settings = settings
        self.path = default_path(settings)
        self.every_s = every_s
        self.last_time: str | None = None
        self._seen: set[tuple[Any, ...]] = set()
        self._next = 0.0
        self._lock = threading.Lock()

    def sync(self, estimator: AdaptiveEstimator, force: bool = False) -> int:
        """Feed outcomes recorded since the last sync; returns how many."""
        now = time.monotonic()
        with self._lock:
            if not force and now < self._next:
                return 0
            self._next = now + self.every_s
            if not self.path.exists():
                return 0
            from ..ledger import Ledger

            n = 0
            try:
                with Ledger(self.path, self.settings) as led:
                    for o in led.outcomes(since=self.last_time):
                        key = (o.get("call_id"), o.get("time"), o.get("signal"), o.get("good"))
                        if key in self._seen:  # `since` is inclusive: the boundary row comes again
                            continue
                        self._seen.add(key)
                        estimator.update(o)
                        n += 1
                        t = o.get("time")
                        if t and (self.last_time is None or t > self.last_time):
                            self.last_time = t
            except (AgentRouterError, sqlite3.Error, OSError) as e:
                log.warning("learned routing: cannot read outcomes from %s: %s", self.path, e)
            return n


_feeds: dict[str, LedgerFeed] = {}


def _shared_feed(settings: Settings) -> LedgerFeed:
    from ..ledger import default_path

    key = str(default_path(settings))
    feed = _feeds.get(key)
    if feed is None:
        feed = _feeds[key] = LedgerFeed(settings)
    return feed


def sync_ledger(settings: Settings) -> int:
    """Read new ledger outcomes into the learned router of `settings` now; returns how many were read."""
    r = for_settings(settings)
    if r is None or r.feed is None or not settings.learned.adaptive:
        return 0
    return r.feed.sync(r.estimator, force=True)


def record_outcome(settings: Settings, task_type: str | None, tier: str, good: bool, source: str = "explicit",
                   messages: list[dict[str, Any]] | None = None) -> None:
    """Python API: feed one outcome straight to the learned router's adaptive estimator for `settings`.

    With the request's `messages` the outcome teaches the per-request layer about requests like this one;
    without, it counts for every request of `task_type`. (For a call in the ledger, prefer
    `Ledger.add_feedback(call_id, ...)` then `sync_ledger(settings)`: the call's own features are used.)
    """
    est = _shared_estimator(settings.learned)
    outcome: dict[str, Any] = {"task_type": task_type, "tier": tier, "good": good, "source": source}
    if messages is not None:
        from .adaptive import sketch

        model = load_model(settings.learned.weights, settings.learned.embeddings)
        f = model.features(messages)
        probs = model.predict(f)
        key = est.new_key()
        est.remember(key, f.dense, f.hashed, probs[model.heads[0]], probs[model.heads[-1]])
        outcome.update(task_type=task_type or f.task_type, key=key,
                       sketch=sketch(f.dense, probs[model.heads[0]], probs[model.heads[-1]]))
    est.update(outcome)


def reset() -> None:
    """Forget every cached router and every outcome fed to the adaptive estimators (e.g. after retraining)."""
    with _routers_lock:
        _routers.clear()
        _estimators.clear()
        _feeds.clear()
    load_model.cache_clear()
