"""The learned router: predicted per-model quality -> need for premium, calibrated to a quality target.

`LearnedRouter.analyze(messages)` returns an `Analysis` whose score is the predicted need for the premium
model, rescaled so the calibrated thresholds land on the router's own tier thresholds (`routing.thresholds`):
a request goes to the cheapest tier whose predicted quality is good enough for the target. `calibrate()`
derives those thresholds from rows with per-model outcomes (agent_router.learned.calibrate).

State lives in objects the caller holds: a `Router` creates its `LearnedRouter` on first use (`Router.learned`)
and hands it to the `analyze` hook; the learned router owns its adaptive estimator and its `LedgerFeed`, which
reads verdicts through a `Ledger` (SQLite or PostgreSQL). Only the immutable weights are shared between
routers, cached by file identity (path, size, modification time), so a retrained file is loaded afresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analyzer import Analysis, score_of
from ..analyzer import analyze as heuristic_analyze
from ..errors import AgentRouterError, InputError
from ..home import ledger_path
from ..messages import has_image, last_user_index, text_of
from ..settings import LearnedCalibration, LearnedSettings, Settings
from .adaptive import AdaptiveEstimator, request_vector, sketch_head, sketch_with_key
from .calibrate import calibrate
from .features import DENSE_KEYS, RequestFeatures, features_key, read_messages
from .model import QualityModel, load_model, objective_score

if TYPE_CHECKING:
    from ..ledger import Ledger

__all__ = ["LearnedRouter", "LearnedSettings", "LedgerFeed", "calibrate", "load_model", "record_outcome",
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


# Task types a two-model calibration may hand to the utility tier when the heuristic finds them simple: plain chat
# and short creative asks ("Tell me a joke"), which the weights' rows (MMLU, GSM8K) say nothing about.
UTILITY_TASKS = frozenset({"chat", "creative"})
# Question structure of the rows the weights learned from: a request with any of it keeps its learned score.
_STRUCTURE = tuple(DENSE_KEYS.index(k) for k in ("choices", "n_options", "shots", "blank", "answer_cue"))


def _lin(x: float, x0: float, x1: float, y0: float, y1: float) -> float:
    """The line through (x0, y0) and (x1, y1) at x (y0 when the segment is empty)."""
    return y0 if x1 <= x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def rescale(raw: float, cal: LearnedCalibration, low: float, high: float) -> float:
    """Map a raw need score so the calibrated cut points land on the router's thresholds `low` / `high`."""
    if raw < cal.low:
        return _lin(raw, 0.0, cal.low, 0.0, low)
    if raw < cal.high:
        return _lin(raw, cal.low, cal.high, low, high)
    return min(1.0, _lin(raw, cal.high, 1.0, high, 1.0)) if cal.high < 1.0 else 1.0


class Scored:
    """What a request's text alone decides, made once per distinct request and kept (`LearnedRouter.scored`):
    its features, the heads' probabilities, the predicted log cost, the static need, and (made on first use)
    the per-request layer's vector, the sketch's head, the reasons naming the features that raised the need and
    the analysis's reasons and features of the text alone. Nothing here changes with outcomes."""

    __slots__ = ("f", "probs", "p_w", "p_s", "lc", "raw", "_vector", "_sketch", "_contrib", "_said")

    def __init__(self, f: RequestFeatures, probs: dict[str, float], p_w: float, p_s: float, lc: float | None,
                 raw: float):
        self.f, self.probs, self.p_w, self.p_s, self.lc, self.raw = f, probs, p_w, p_s, lc, raw
        self._vector: np.ndarray | None = None
        self._sketch: str | None = None
        self._contrib: list[str] | None = None
        self._said: tuple[str, str, dict[str, float]] | None = None

    def vector(self) -> np.ndarray:
        if self._vector is None:
            self._vector = request_vector(self.f.dense, (self.f.buckets, self.f.values))
        return self._vector

    def sketch(self, key: str | None) -> str:
        if self._sketch is None:
            self._sketch = sketch_head(self.f.dense, self.p_w, self.p_s)
        return sketch_with_key(self._sketch, key)

    def said(self, heads: list[str]) -> tuple[str, str, dict[str, float]]:
        """What the analysis says of the text alone: its task reason, the heads' part of the learned reason and
        the features (the analyzer's and each head's probability) before the need is added."""
        if self._said is None:
            f, probs = self.f, self.probs
            feats = dict(f.analyzer)
            feats.update({"p_" + h: p for h, p in probs.items()})
            self._said = (f"task: {f.task_type}",
                          f"learned: P(good) {heads[0]} {probs[heads[0]]:.2f}, {heads[-1]} {probs[heads[-1]]:.2f}",
                          feats)
        return self._said

    def contrib(self, gain: list[tuple[int, str, float]]) -> list[str]:
        if self._contrib is None:
            dense = self.f.dense
            ranked = sorted([(g * dense[i], k) for i, k, g in gain if dense[i]], reverse=True)
            self._contrib = [f"{_LABELS[k]} (+{c:.2f})" for c, k in ranked[:3] if c >= 0.05]
        return self._contrib


class LearnedRouter:
    """Scores requests with the learned quality model, the calibration and (optionally) adaptive outcomes.

    What a request's text alone decides (`scored`) is kept for the last SCORED_MAX distinct requests: an agent's
    tool loop sends the same question again with each tool result after it (`features_key` does not read what
    follows the question), and a retried request is the same request."""

    SCORED_MAX = 256  # at most ~6 MB (features_key keeps requests up to KEY_MAX_CHARS); ~1.3 MB of short ones

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
        # Parts of the learned reason that are the same for every request this router scores.
        self._need_word = "gain per $" if self.objective == "cost" else "need"
        self._cut_points = f" (cut points {self.calibration.low:.3f}/{self.calibration.high:.3f})"
        # The premium cut on the quality gain alone (the weights' own), for plain chat under the cost objective.
        self._quality_cut = default_calibration(self.model, "quality").high
        # Each labelled dense feature's weight in the predicted gain (strongest head minus cheapest), for reasons.
        gain = (self.model.w_dense[-1] - self.model.w_dense[0]).tolist()
        self._gain = [(i, k, gain[i]) for i, k in enumerate(DENSE_KEYS) if k in _LABELS]
        priors = self.model.meta.get("task_priors") or {}
        self.estimator = estimator or estimator_for(self.settings, priors)
        self._lock = threading.Lock()
        self._scored: dict[tuple[Any, ...], Scored] = {}

    def scored(self, messages: list[dict[str, Any]]) -> Scored:
        """The request's features, head probabilities and static need (kept for requests seen again)."""
        read = read_messages(messages)
        key = features_key(messages, read)
        if key is not None:
            got = self._scored.get(key)
            if got is not None:
                return got
        f = self.model.features(messages, read)
        probs = self.model.predict(f)
        p_w, p_s = probs[self.model.heads[0]], probs[self.model.heads[-1]]
        lc = self.model.log_cost(f, self._cost_head) if self.objective == "cost" else None
        sc = Scored(f, probs, p_w, p_s, lc, objective_score(p_w, p_s, lc))
        if key is not None:
            with self._lock:
                self._scored[key] = sc
                while len(self._scored) > self.SCORED_MAX:
                    del self._scored[next(iter(self._scored))]
        return sc

    @classmethod
    def from_settings(cls, settings: Settings, ledger: Ledger | None = None) -> LearnedRouter | None:
        """The learned router of `settings` (None when learned routing is off). With adaptive routing its feed
        reads verdicts from `ledger`, or else from the ledger the settings name, opened for each sync."""
        ls = settings.learned
        if not ls.enabled:
            return None
        feed = None
        if ls.adaptive:
            feed = LedgerFeed(ledger if ledger is not None else settings_ledger(settings))
        return cls(ls, feed=feed)

    def sync(self, force: bool = True) -> int:
        """Read the verdicts recorded since the last sync into the adaptive estimator now; returns how many."""
        if self.feed is None or not self.settings.adaptive:
            return 0
        return self.feed.sync(self.estimator, force=force)

    def record_outcome(self, task_type: str | None, tier: str, good: bool, source: str = "explicit",
                       messages: list[dict[str, Any]] | None = None) -> None:
        """Feed one outcome straight to the adaptive estimator.

        With the request's `messages` the outcome teaches the per-request layer about requests like this one;
        without, it counts for every request of `task_type`. (For a call in the ledger, prefer
        `Ledger.add_feedback(call_id, ...)` then `sync()`: the call's own features are used.)
        """
        est = self.estimator
        outcome: dict[str, Any] = {"task_type": task_type, "tier": tier, "good": good, "source": source}
        if messages is not None:
            sc = self.scored(messages)
            key = est.new_key()
            est.remember(key, sc.f.dense, (sc.f.buckets, sc.f.values), sc.p_w, sc.p_s, vector=sc.vector())
            outcome.update(task_type=task_type or sc.f.task_type, key=key, sketch=sc.sketch(None))
        est.update(outcome)

    def predict(self, messages: list[dict[str, Any]]) -> tuple[Any, dict[str, float], float, float]:
        """Features, head probabilities, raw need before and after adaptive outcomes (the latter on the same
        side of the cut point as the adaptive decision, so the router's thresholds follow it)."""
        sc, need, _sketch, _held = self._predict(messages)
        return sc.f, dict(sc.probs), sc.raw, need

    def _predict(self, messages: list[dict[str, Any]]) -> tuple[Scored, float, str | None, bool]:
        """What the text decides, the need after adaptive outcomes, the request's sketch for the ledger and
        whether the spend keeper moved the decision across the cut point."""
        if self.settings.adaptive and self.feed is not None:
            self.feed.sync(self.estimator)
        sc = self.scored(messages)
        f, raw = sc.f, sc.raw
        if not self.settings.adaptive:
            return sc, raw, None, False
        key = self.estimator.new_key()
        need, strong, _raw, _static = self.estimator.decide(
            f.task_type, sc.p_w, sc.p_s, self.calibration.high, dense=f.dense, hashed=(f.buckets, f.values),
            log_cost=sc.lc, key=key, vector=sc.vector())
        # The spend keeper may send a request across the cut point its need alone would not cross (or hold
        # one back): the need reported to the router lands on the decided side.
        cut = self.calibration.high
        held = strong != (need >= cut)
        if held:
            need = cut if strong else max(0.0, cut - 1e-6)
        return sc, need, sc.sketch(key), held

    def simple_chat(self, f: RequestFeatures, p_weak: float, p_strong: float, need: float, raw: float,
                    messages: list[dict[str, Any]], low: float) -> float | None:
        """The heuristic score sending this request to utility, or None to keep the learned score.

        Calibrated on two models (chat and premium), the low cut sits at 0: the rows say nothing about the
        utility tier, and every request would go to chat or above. Below the premium cut, plain chat and
        creative asks the heuristic finds simple (greetings, thanks, small talk, a joke) go to utility, as without
        learned routing;
        anything asking for code, math or reasoning stays on the calibrated tiers. With the cost objective the
        premium cut is judged on the quality gain alone (a greeting's premium call costs little, and the gain per
        dollar would send "hi" there), and a question shaped like the rows the weights learned from (options to
        choose from, worked examples, a blank, an "Answer:" cue), which the heuristic underrates, keeps its
        learned score, as does a request whose need recorded outcomes raised (`need` above the static `raw`).
        """
        cal = self.calibration
        if cal.low > 0.0 or f.task_type not in UTILITY_TASKS:
            return None
        if self.objective == "cost":
            if any(f.dense[i] for i in _STRUCTURE) or need >= raw + 0.005:
                return None
            if objective_score(p_weak, p_strong) >= self._quality_cut:
                return None
        elif need >= cal.high:
            return None
        h = heuristic_score(messages, f)
        return h if h < low else None

    def analyze(self, messages: list[dict[str, Any]], low: float = 0.3, high: float = 0.7) -> Analysis:
        sc, need, sk, held = self._predict(messages)
        f, probs, raw = sc.f, sc.probs, sc.raw
        cal = self.calibration
        score = rescale(need, cal, low, high)
        heads = self.model.heads
        task, learned, base = sc.said(heads)
        reasons = [task, f"{learned} -> {self._need_word} {need:.2f}{self._cut_points}"]
        simple = self.simple_chat(f, probs[heads[0]], probs[heads[-1]], need, raw, messages, low)
        if simple is not None:
            score = simple
            reasons.append(f"below the premium cut, simple {f.task_type} (heuristic {simple:.2f}) -> utility")
        if abs(need - raw) >= 0.005:
            reasons.append(f"adaptive: outcomes for {f.task_type} moved need {raw:.2f} -> {need:.2f}"
                           + (" (premium spend held at the static router's)" if held else ""))
        reasons += sc.contrib(self._gain)
        if f.shots:
            reasons.append(f"few-shot prompt: judged on the real question after {f.shots} examples")
        feats = {**base, "need_raw": raw, "need": need, "shots": float(f.shots)}
        return Analysis(score=score, task_type=f.task_type, reasons=reasons, features=feats,
                        needs_vision=f.analyzer.get("images", 0.0) > 0, source="learned", sketch=sk)


def heuristic_score(messages: list[dict[str, Any]], f: RequestFeatures) -> float:
    """The heuristic analyzer's score of `messages` (analyzer.analyze(messages).score). Its features are those
    `f` holds (`f.analyzer`, of the focus as a message of its own) when the request had no worked examples, was
    read whole (no longer than scan_window keeps) and no image follows it; otherwise they are computed anew."""
    i = last_user_index(messages)
    if f.shots == 0 and len(f.focus) == len(text_of(messages[i])) and not any(
            has_image(m) for m in messages[i + 1:]):
        return score_of(f.analyzer)
    return heuristic_analyze(messages).score


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


def estimator_for(ls: LearnedSettings, priors: dict[str, Any]) -> AdaptiveEstimator:
    """A fresh adaptive estimator configured by the learned settings (seeded: the same outcomes in the same
    order give the same decisions)."""
    return AdaptiveEstimator(priors, ls.adaptive_prior_strength, per_request=ls.adaptive_per_request,
                             precision=ls.adaptive_precision, explore=ls.adaptive_explore,
                             keep_spend=ls.adaptive_keep_spend, per_dollar=ls.adaptive_per_dollar)


SYNC_EVERY_S = 30.0


class LedgerFeed:
    """Reads new outcomes (feedback joined with calls) from a ledger into an estimator, at most every
    `every_s` seconds. `ledger` is a `Ledger` the caller holds (any backend), or a function opening one for each
    sync (returning None when there is none yet; the feed closes what it opened). A broken ledger is logged, not
    raised: routing goes on with what was learned so far."""

    def __init__(self, ledger: Ledger | Callable[[], Ledger | None], every_s: float = SYNC_EVERY_S):
        self.ledger = ledger
        self.every_s = every_s
        self.last_time: str | None = None
        self._seen: set[tuple[Any, ...]] = set()
        self._next = 0.0
        self._lock = threading.Lock()

    def sync(self, estimator: AdaptiveEstimator, force: bool = False) -> int:
        """Feed outcomes recorded since the last sync; returns how many."""
        now = time.monotonic()
        if not force and now < self._next:  # between syncs (nearly every request): no lock to take
            return 0
        with self._lock:
            if not force and now < self._next:
                return 0
            self._next = now + self.every_s
            opened = None
            n = 0
            try:
                led = self.ledger
                if callable(led):
                    led = opened = led()
                    if led is None:
                        return 0
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
            except (AgentRouterError, OSError) as e:
                log.warning("learned routing: cannot read outcomes from the ledger: %s", e)
            finally:
                if opened is not None:
                    try:
                        opened.close()
                    except (AgentRouterError, OSError) as e:
                        log.warning("learned routing: closing the ledger: %s", e)
            return n


def settings_ledger(settings: Settings) -> Callable[[], Ledger | None]:
    """Opens the ledger `settings` name (SQLite or PostgreSQL) for one read; None while a SQLite ledger does not
    exist yet (reading never creates one)."""

    def open_ledger() -> Ledger | None:
        if settings.ledger.backend != "postgresql" and not ledger_path(settings).exists():
            return None  # asked without importing the ledger's stores
        from ..ledger import Ledger

        return Ledger.from_settings(settings)

    return open_ledger


def _learned_of(router: Any) -> LearnedRouter | None:
    if isinstance(router, LearnedRouter):
        return router
    if isinstance(router, Settings):
        raise TypeError("pass the Router (or its LearnedRouter, `router.learned`), not settings: learned state "
                        "lives in the router that routes")
    return getattr(router, "learned", None)


def sync_ledger(router: Any) -> int:
    """Read new ledger outcomes into `router`'s learned router (a `Router` or a `LearnedRouter`) now; returns
    how many were read (0 when learned or adaptive routing is off)."""
    lr = _learned_of(router)
    return 0 if lr is None else lr.sync(force=True)


def record_outcome(router: Any, task_type: str | None, tier: str, good: bool, source: str = "explicit",
                   messages: list[dict[str, Any]] | None = None) -> None:
    """Python API: feed one outcome straight to the adaptive estimator of `router` (a `Router` with learned
    routing on, or a `LearnedRouter`); see `LearnedRouter.record_outcome`."""
    lr = _learned_of(router)
    if lr is None:
        raise InputError("record_outcome: learned routing is off in this router's settings (learned.enabled)")
    lr.record_outcome(task_type, tier, good, source, messages)
