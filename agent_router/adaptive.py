"""Online success estimates from recorded outcomes, and the shift they make to the learned router's predictions.

Each (task type, tier group) keeps a Beta posterior of "the answer was good". The tier group is `weak` for
every tier below premium and `strong` for premium, matching the learned model's cheapest and strongest heads.
The posterior is compared with what the learned model expected for the same calls: the router reports each
prediction it acts on (`expect`), so the comparison is made on the calls actually routed to that side (the easy
ones go to the cheap tier, and their success says little about the hard ones). Before any prediction is
reported (e.g. outcomes read from an old ledger) the expectation is the weights' per-task-type prior. The prior
weighs `strength` pseudo-outcomes, so with no outcomes nothing changes; as outcomes arrive, the logit gap
between posterior and expectation is added to that head's prediction. Bad outcomes for the cheap tier on a task
type raise the need for premium on that task type; bad outcomes for premium lower it.

Outcomes are dicts as `Ledger.outcomes()` yields them: {call_id, task_type, model, tier, good, source, signal}.
Implicit signals (an escalation with switch_model, a retry of the same request, a tool error after the
answer) weigh less than explicit feedback, since they are noisier.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError

PREMIUM_TIERS = frozenset({"premium", "strong"})
SOURCE_WEIGHT = {"explicit": 1.0, "implicit": 0.5}
DEFAULT_PRIOR = {"weak": 0.75, "strong": 0.85}
MIN_PREDICTIONS = 5


def _logit(p: float) -> float:
    p = min(1 - 1e-6, max(1e-6, p))
    return math.log(p / (1 - p))


@dataclass
class Posterior:
    base: float  # the weights' prior for this task type and group
    strength: float
    good: float = 0.0
    bad: float = 0.0
    expected: float = 0.0  # sum of the predictions the router acted on
    predictions: int = 0

    @property
    def prior_mean(self) -> float:
        """What the model expected of the calls routed here (the weights' prior until enough are seen)."""
        if self.predictions >= MIN_PREDICTIONS:
            return min(0.999, max(0.001, self.expected / self.predictions))
        return self.base

    @property
    def mean(self) -> float:
        a = self.prior_mean * self.strength + self.good
        b = (1 - self.prior_mean) * self.strength + self.bad
        return a / (a + b)

    @property
    def n(self) -> float:
        return self.good + self.bad


def group_of(tier: str | None) -> str:
    """`strong` for the premium tier, `weak` for every cheaper one."""
    return "strong" if (tier or "") in PREMIUM_TIERS else "weak"


class AdaptiveEstimator:
    """Per task type and tier group success posteriors; thread-safe."""

    def __init__(self, priors: Mapping[str, Mapping[str, float]] | None = None, strength: float = 20.0):
        # priors: task_type -> {"weak": rate, "strong": rate}; "*" is used for task types not listed.
        self.priors = {k: dict(v) for k, v in (priors or {}).items()}
        self.strength = strength
        self._post: dict[tuple[str, str], Posterior] = {}
        self._lock = threading.Lock()
        self.seen = 0

    def _prior(self, task_type: str, group: str) -> float:
        for key in (task_type, "*"):
            v = self.priors.get(key, {}).get(group)
            if v is not None:
                return min(0.99, max(0.01, float(v)))
        return DEFAULT_PRIOR[group]

    def posterior(self, task_type: str, group: str) -> Posterior:
        key = (task_type, group)
        p = self._post.get(key)
        if p is None:
            p = Posterior(self._prior(task_type, group), self.strength)
            self._post[key] = p
        return p

    def expect(self, task_type: str, group: str, p: float) -> None:
        """The router acted on prediction `p` (P(good) of the `group` head) for a call of this task type."""
        with self._lock:
            post = self.posterior(task_type, group)
            post.expected += p
            post.predictions += 1

    def update(self, outcome: Mapping[str, Any]) -> None:
        """Add one outcome {task_type, tier, good[, source]}; an InputError names a missing or bad field."""
        try:
            task_type = str(outcome["task_type"] or "chat")
            good = outcome["good"]
        except KeyError as e:
            raise InputError(f"outcome {dict(outcome)!r}: missing {e.args[0]!r}") from None
        if good is None:
            return
        if not isinstance(good, bool | int | float):
            raise InputError(f"outcome {dict(outcome)!r}: 'good' must be true/false or 0..1, got {good!r}")
        w = SOURCE_WEIGHT.get(str(outcome.get("source") or "explicit"), 0.5)
        g = float(good)
        with self._lock:
            p = self.posterior(task_type, group_of(outcome.get("tier")))
            p.good += w * g
            p.bad += w * (1 - g)
            self.seen += 1

    def consume(self, outcomes: Iterable[Mapping[str, Any]]) -> int:
        """Add every outcome of an iterable (e.g. `Ledger.outcomes()`); returns how many were read."""
        n = 0
        for o in outcomes:
            self.update(o)
            n += 1
        return n

    def offset(self, task_type: str, group: str) -> float:
        """Logit shift for a head: posterior mean against prior mean (0 with no outcomes)."""
        with self._lock:
            p = self._post.get((task_type, group))
            if p is None or p.n == 0:
                return 0.0
            return _logit(p.mean) - _logit(p.prior_mean)

    def adjust(self, task_type: str, p_weak: float, p_strong: float) -> tuple[float, float]:
        """The learned model's head probabilities shifted by what outcomes showed for this task type."""
        def shift(p: float, d: float) -> float:
            return 1.0 / (1.0 + math.exp(-(_logit(p) + d))) if d else p

        return shift(p_weak, self.offset(task_type, "weak")), shift(p_strong, self.offset(task_type, "strong"))

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """task_type -> group -> {prior, mean, n}, for reports."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        with self._lock:
            for (tt, g), p in sorted(self._post.items()):
                out.setdefault(tt, {})[g] = {"expected": round(p.prior_mean, 4), "mean": round(p.mean, 4),
                                             "outcomes": round(p.n, 2), "predictions": p.predictions}
        return out


# -- implicit signals ------------------------------------------------------------------------------------
Feedback = Callable[[int, bool, str, str], Any]  # (call_id, good, source, signal), e.g. Ledger.add_feedback


class SignalTracker:
    """Turns what an agent does next into implicit verdicts on its previous call, per conversation.

    A host adapter calls `on_call` after recording each call, `on_switch_model` when the agent escalates with the
    switch_model tool, `on_tool_error` when a tool run on the answer fails. A retry (the same request sent again
    in the same conversation) marks the earlier call bad. Each verdict goes to `feedback` (e.g.
    `Ledger.add_feedback`) with source "implicit"; each call gets at most one.
    """

    def __init__(self, feedback: Feedback, max_conversations: int = 10_000):
        self.feedback = feedback
        # conversation -> (call_id, request fingerprint, request key)
        self._last: dict[str, tuple[int, int, Any]] = {}
        self._flagged: set[int] = set()
        self._max = max_conversations
        self._lock = threading.Lock()

    def adopt(self, other: SignalTracker) -> None:
        """Take over another tracker's conversations and verdicts (a runtime rebuilt after a settings reload)."""
        with other._lock:
            last, flagged = dict(other._last), set(other._flagged)
        with self._lock:
            self._last.update(last)
            self._flagged |= flagged

    def _flag(self, call_id: int, signal: str) -> int | None:
        with self._lock:
            if call_id in self._flagged:
                return None
            self._flagged.add(call_id)
        self.feedback(call_id, False, "implicit", signal)
        return call_id

    def on_call(
        self, conversation_id: str, messages: list[dict[str, Any]], call_id: int, request_key: Any = None
    ) -> int | None:
        """Remember this call; if it repeats the previous request of the conversation, flag that one (retry).

        `request_key` tells one sending of a request from another (e.g. the position of the user's message in
        the history): the calls of one turn share it, so an agent working through its tools on one request is
        not taken for a retry. Without it every call is taken as a new sending.
        """
        fp = _fingerprint(messages)
        with self._lock:
            prev = self._last.get(conversation_id)
            if len(self._last) >= self._max and conversation_id not in self._last:
                self._last.pop(next(iter(self._last)))
            self._last[conversation_id] = (call_id, fp, request_key)
        if prev is None or prev[0] == call_id or prev[1] != fp:
            return None
        if request_key is not None and prev[2] == request_key:
            return None  # the same sending, a later step of its turn
        return self._flag(prev[0], "retry")

    def on_switch_model(self, conversation_id: str) -> int | None:
        """The agent asked for a stronger model: the last answer in this conversation was not good enough."""
        prev = self._last.get(conversation_id)
        return self._flag(prev[0], "switch_model") if prev else None

    def on_tool_error(self, conversation_id: str) -> int | None:
        """A tool run on the last answer failed."""
        prev = self._last.get(conversation_id)
        return self._flag(prev[0], "tool_error") if prev else None


def _fingerprint(messages: list[dict[str, Any]]) -> int:
    from .messages import last_user_index, text_of

    text = " ".join(text_of(messages[last_user_index(messages)]).split()).lower()
    return zlib.crc32(text.encode("utf-8"))
