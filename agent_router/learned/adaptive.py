"""Online learning from recorded outcomes, and the shift it makes to the learned router's decisions.

Per request (the default, `learned.adaptive_per_request`): `OnlineResidual` corrects each head's logit by a
Bayesian logistic model over the request's features (dense structure features and task type; for calls this
process routed, also its folded n-grams), updated by each outcome for the side that answered; a Thompson draw
from its uncertainty explores, so the side not chosen also gets outcomes. `SpendKeeper` holds the premium share
at the static router's on the same traffic, so outcomes re-rank requests instead of buying quality with spend,
and `CostModel` learns each request's premium cost so the ranking is by predicted gain per dollar. An outcome
finds its call's features in this process's memory (by key) or in the ledger's `route_sketch` (`sketch`),
else falls back to the task type alone.

Per task type (the coarse layer, `adaptive_per_request` off): each (task type, tier group) keeps a Beta posterior
of "the answer was good". The tier group is `weak` for every tier below premium and `strong` for premium,
matching the learned model's cheapest and strongest heads. The posterior is compared with what the learned
model expected for the same calls: the router reports each prediction it acts on (`expect`), so the comparison
is made on the calls actually routed to that side. Before any prediction is reported (e.g. outcomes read from an
old ledger) the expectation is the weights' per-task-type prior. The prior weighs `strength` pseudo-outcomes, so
with no outcomes nothing changes; as outcomes arrive, the logit gap between posterior and expectation is added to
that head's prediction.

Outcomes are dicts as `Ledger.outcomes()` yields them: {call_id, task_type, model, tier, good, source, signal,
sketch, cost_usd}, optionally with `key`. Implicit signals (an escalation with switch_model, a retry of the same
request, a tool error after the answer) weigh less than explicit feedback, since they are noisier.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import threading
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..messages import last_user_index, text_of

PREMIUM_TIERS = frozenset({"premium", "strong"})
SOURCE_WEIGHT = {"explicit": 1.0, "implicit": 0.5}
DEFAULT_PRIOR = {"weak": 0.75, "strong": 0.85}
MIN_PREDICTIONS = 5
# Hashed n-grams: a mapping bucket -> value, or the same as two arrays in its order (RequestFeatures.buckets,
# RequestFeatures.values).
HashedNgrams = Mapping[int, float] | tuple[np.ndarray, np.ndarray]


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
    n_seen: float = 0.0  # outcomes read (weighted), whichever layer they went to

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

    def __init__(self, priors: Mapping[str, Mapping[str, float]] | None = None, strength: float = 20.0, *,
                 per_request: bool = True, precision: float = 8.0, explore: float = 0.5, keep_spend: int = 400,
                 per_dollar: bool = True, seed: int = 0, memory: int = 4096):
        # priors: task_type -> {"weak": rate, "strong": rate}; "*" is used for task types not listed.
        self.priors = {k: dict(v) for k, v in (priors or {}).items()}
        self.strength = strength
        self._post: dict[tuple[str, str], Posterior] = {}
        self._lock = threading.Lock()
        self.seen = 0
        # Per-request layer (None: per task type only): corrections over the request's features.
        from .features import DENSE_KEYS

        self.dense_keys = DENSE_KEYS
        self.residual = OnlineResidual(len(DENSE_KEYS) + HASH_FOLD, precision, explore, seed) if per_request else None
        self.keeper = SpendKeeper(keep_spend)
        self.cost = CostModel(len(DENSE_KEYS)) if per_dollar and per_request else None
        # Full features (with n-grams) of this process's recent decisions, by key, for outcomes that come back.
        self._memory: OrderedDict[str, tuple[np.ndarray, float, float]] = OrderedDict()
        self._memory_max = memory
        self._last_kept: tuple[np.ndarray, np.ndarray] | None = None  # (vector, its float32 copy) kept last
        self._spent: OrderedDict[str, float] = OrderedDict()  # key -> predicted cost the keeper counted
        self._nonce = uuid.uuid4().hex[:12]
        self._seq = itertools.count(1)  # next() on it is atomic: keys need no lock
        # Imported with the estimator, not per decision (nor with this module: the runtime imports it for the
        # SignalTracker without the learned model).
        from .model import objective_score

        self._objective = objective_score

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
            self._expect(task_type, group, p)

    def _expect(self, task_type: str, group: str, p: float) -> None:
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
        group = group_of(outcome.get("tier"))
        with self._lock:
            p = self.posterior(task_type, group)
            if self.residual is not None:
                x, p_static = self._features_of(outcome, task_type, group, p)
                self.residual.update(int(group == "strong"), x, p_static, g, w)
                cost = outcome.get("cost_usd")
                if self.cost is not None and cost is not None and len(x) >= len(self.dense_keys):
                    self.cost.update(x, group == "strong", float(cost))
                    spent = self._spent.pop(str(outcome.get("key")), None)
                    if spent is not None and group == "strong":
                        # The keeper counted this premium call at its predicted cost; it cost this much. (The
                        # requests picked for premium are those predicted cheap, so predictions alone run low.)
                        self.keeper.adaptive_usd += float(cost) - spent
            else:
                p.good += w * g
                p.bad += w * (1 - g)
            p.n_seen += w
            self.seen += 1

    def _features_of(self, outcome: Mapping[str, Any], task_type: str, group: str,
                     post: Posterior) -> tuple[np.ndarray, float]:
        """The features the outcome's call was routed on and that side's static P(good): from this process's
        memory (with n-grams), else the ledger's sketch (dense only), else the task type alone."""
        gi = int(group == "strong")
        key = outcome.get("key")
        sk = parse_sketch(outcome.get("sketch"), len(self.dense_keys))
        if key is None and sk is not None:
            key = sk[3]
        if key is not None and key in self._memory:
            x, pw, ps = self._memory[key]
            return x.astype(np.float64), (pw, ps)[gi]
        if sk is not None:
            return sk[0], (sk[1], sk[2])[gi]
        return self.coarse(task_type), post.prior_mean

    def new_key(self) -> str:
        """A key for one decision's features in this process's memory (unique across processes)."""
        return f"{self._nonce}:{next(self._seq)}"

    def remember(self, key: str, dense: Sequence[float], hashed: HashedNgrams | None, p_weak: float,
                 p_strong: float, vector: np.ndarray | None = None) -> None:
        """Keep a request's full features under `key` (bounded: the oldest are forgotten first). `vector`:
        `request_vector(dense, hashed)` when the caller has it."""
        x = vector if vector is not None else request_vector(dense, hashed)
        with self._lock:
            self._remember(key, x, p_weak, p_strong)

    def _remember(self, key: str, x: np.ndarray, p_weak: float, p_strong: float) -> None:
        # ~1 KB a call; a request asked again (an agent's tool loop, LearnedRouter's cached vector) shares the
        # copy it made last, read-only (`_features_of` reads a copy of it).
        last = self._last_kept
        if last is not None and last[0] is x:
            kept = last[1]
        else:
            kept = x.astype(np.float32)
            kept.flags.writeable = False
            self._last_kept = (x, kept)
        self._memory[key] = (kept, p_weak, p_strong)
        while len(self._memory) > self._memory_max:
            self._memory.popitem(last=False)

    def coarse(self, task_type: str) -> np.ndarray:
        """The dense vector of a request known only by its task type: the bias and its task one-hot."""
        x = np.zeros(len(self.dense_keys))
        for k in ("bias", f"task_{task_type}"):
            if k in self.dense_keys:
                x[self.dense_keys.index(k)] = 1.0
        return x

    def decide(self, task_type: str, p_weak: float, p_strong: float, cut: float, dense: Sequence[float] | None = None,
               hashed: HashedNgrams | None = None, log_cost: float | None = None,
               key: str | None = None, vector: np.ndarray | None = None) -> tuple[float, bool, float, bool]:
        """Route one request: (need after outcomes, premium?, static need, static premium?).

        The need comes from the head probabilities corrected per task type (no per-request layer) or per
        request (its features, with a Thompson draw for exploration), compared with the cut point the spend
        keeper holds at the static router's premium share. The call's features are remembered under `key`,
        for its outcome. `vector`: `request_vector(dense, hashed)` when the caller has it.
        """
        objective_score = self._objective
        raw = objective_score(p_weak, p_strong, log_cost)
        static_strong = raw >= cut
        pw, ps = p_weak, p_strong
        if self.residual is None:
            pw, ps = self.adjust(task_type, p_weak, p_strong)
        with self._lock:  # one hold for the whole decision (taken once, not three times)
            if self.residual is not None:
                x = vector if vector is not None else request_vector(
                    self.coarse(task_type) if dense is None else dense, hashed)
                pw, ps = self.residual.adjust(x, p_weak, p_strong, sample=True)
                if key is not None:
                    self._remember(key, x, p_weak, p_strong)
            need = objective_score(pw, ps, log_cost)
            score, cost = need, 1.0
            if self.cost is not None and dense is not None and self.cost.n:
                lc = self.cost.predict(np.asarray(dense, dtype=np.float64))
                if lc is not None:
                    cost = math.exp(max(-20.0, min(20.0, lc)))
                    score = (ps - pw) / cost
            strong = self.keeper.strong(score, need, cut, cost)
            self.keeper.routed(score, strong, static_strong, cost)
            if strong and key is not None and self.cost is not None and self.cost.n:
                self._spent[key] = cost
                while len(self._spent) > self._memory_max:
                    self._spent.popitem(last=False)
            self._expect(task_type, "strong" if strong else "weak", p_strong if strong else p_weak)
        return need, strong, raw, static_strong

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
                                             "outcomes": round(p.n_seen, 2), "predictions": p.predictions}
        return out


# -- per-request learning ------------------------------------------------------------------------------
SKETCH_VERSION = 1
HASH_FOLD = 256  # hashed n-grams folded into this many buckets, for in-process outcomes only


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def sketch(dense: Sequence[float], p_weak: float, p_strong: float, key: str | None = None) -> str:
    """What the ledger keeps of a routed request so an outcome read back later (another process, `agent-router
    feedback`) can still update the per-request model: the dense structure features (lengths, shares of
    digits and capitals, option counts, analyzer cues, the task type) rounded to 3 decimals, and the two head
    probabilities the call was routed on. Unlike hashed word buckets (a dictionary attack recovers many
    words), these numbers do not let anyone read the prompt back. `key` finds the full features (with
    n-grams) in the routing process's own memory."""
    return sketch_with_key(sketch_head(dense, p_weak, p_strong), key)


def sketch_head(dense: Sequence[float], p_weak: float, p_strong: float) -> str:
    """`sketch()` up to its key: what the request's features and head probabilities alone decide."""
    # Written as json.dumps({"v": .., "x": [round(float(v), 3) ..], "p": [..], "k": key}, separators=(",", ":"))
    # writes it, each feature value's text remembered (they repeat: counts, flags, shares of short texts).
    nums = _SKETCH_NUMS
    parts = []
    for v in dense:
        t = nums.get(v)
        if t is None or t == "0.0" and math.copysign(1.0, v) < 0:  # 0.0 and -0.0 are one key, two texts
            t = _sketch_num(v)
        parts.append(t)
    pw, ps = _json_float(round(float(p_weak), 4)), _json_float(round(float(p_strong), 4))
    return f'{{"v":{SKETCH_VERSION},"x":[{",".join(parts)}],"p":[{pw},{ps}]'


def sketch_with_key(head: str, key: str | None) -> str:
    """A sketch from its `sketch_head` and the key of the request's features in this process's memory."""
    k = "" if key is None else ',"k":' + (_json_str(key) if isinstance(key, str) else json.dumps(key))
    return head + k + "}"


_json_str = json.encoder.encode_basestring_ascii  # json.dumps of a str


def _json_float(x: float) -> str:
    """json.dumps(x) for a float."""
    return float.__repr__(x) if math.isfinite(x) else json.dumps(x)


_SKETCH_NUMS: dict[float, str] = {}


def _sketch_num(v: float) -> str:
    t = _json_float(round(float(v), 3))
    if v or t == "0.0":  # -0.0 is not kept: it would answer for 0.0
        if len(_SKETCH_NUMS) >= 4096:
            _SKETCH_NUMS.clear()
        _SKETCH_NUMS[v] = t
    return t


def parse_sketch(text: str | None, dim: int) -> tuple[np.ndarray, float, float, str | None] | None:
    """(dense features, p_weak, p_strong, key) from `sketch()` text; None when absent or of another shape."""
    if not text:
        return None
    try:
        d = json.loads(text)
        x = np.asarray(d["x"], dtype=np.float64)
        pw, ps = (float(v) for v in d["p"])
    except (ValueError, KeyError, TypeError):
        return None
    if d.get("v") != SKETCH_VERSION or x.shape != (dim,):
        return None  # written by another version of the features: fall back to the task type
    return x, pw, ps, d.get("k")


def request_vector(dense: Sequence[float], hashed: HashedNgrams | None) -> np.ndarray:
    """What the per-request layer sees of a request: its dense features, then its folded n-grams if known."""
    x = np.asarray(dense, dtype=np.float64)
    if hashed is None or not len(hashed[0] if isinstance(hashed, tuple) else hashed):
        return x
    return np.concatenate([x, fold_hashed(hashed)])


def fold_hashed(hashed: HashedNgrams) -> np.ndarray:
    """Hashed n-gram values summed into HASH_FOLD buckets (kept in memory only, never written): each bucket
    the sum of its values in `hashed`'s order, as `out[k % HASH_FOLD] += v` would add them."""
    if isinstance(hashed, tuple):
        keys, vals = hashed
    else:
        n = len(hashed)
        keys = np.fromiter(hashed.keys(), dtype=np.int64, count=n)
        vals = np.fromiter(hashed.values(), dtype=np.float64, count=n)
    return np.bincount(keys % HASH_FOLD, weights=vals, minlength=HASH_FOLD)


class OnlineResidual:
    """Per-request corrections to the learned model's weak and strong heads, learned from outcomes.

    For each head, a Bayesian logistic model whose offset is the head's own logit: P(good) = sigmoid(static
    logit + w . x), x the request's dense features (task type one-hot, structure, a bias) and, for outcomes of
    requests routed by this process, its folded n-grams. Each outcome updates only the head of the side that
    answered, by an online Newton (extended Kalman) step with the full covariance, so features that always
    come together (the bias, the task type) do not soak up what only one kind of request showed. The
    covariance also gives each correction's uncertainty, so `adjust(sample=True)` draws a Thompson sample:
    a request whose correction is still uncertain sometimes goes to the other side, which then gets outcomes
    too.
    """

    def __init__(self, dim: int, prior_precision: float = 8.0, explore: float = 0.5, seed: int = 0):
        self.dim = dim
        self.prior_precision = prior_precision
        self.explore = explore
        self.w = np.zeros((2, dim))
        self.cov = np.stack([np.eye(dim) / prior_precision] * 2)
        self.seed = seed
        self._rng: np.random.Generator | None = None
        self.updates = [0.0, 0.0]

    @property
    def rng(self) -> np.random.Generator:
        """The seeded generator of Thompson draws, made on the first draw (numpy.random is not imported for
        a process that never explores: `agent-router route` start-up)."""
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        return self._rng

    def _pad(self, x: np.ndarray) -> np.ndarray:
        return x if len(x) == self.dim else np.concatenate([x, np.zeros(self.dim - len(x))])

    def spread(self, group: int, x: np.ndarray) -> float:
        n = len(x)
        return math.sqrt(max(0.0, float(x @ self.cov[group, :n, :n] @ x)))

    def adjust(self, x: np.ndarray, p_weak: float, p_strong: float, sample: bool = False) -> tuple[float, float]:
        out = []
        for g, p in enumerate((p_weak, p_strong)):
            z = _logit(p)
            if self.updates[g]:  # else no outcome for this head yet: its weights are still all zero
                z += float(self.w[g, : len(x)] @ x)
            if sample and self.explore > 0 and self.updates[g] > 0:  # no outcome yet: the calibrated router
                z += self.explore * self.spread(g, x) * float(self.rng.standard_normal())
            out.append(_sigmoid(z))
        return out[0], out[1]

    def update(self, group: int, x: np.ndarray, p_static: float, good: float, weight: float = 1.0) -> None:
        x = self._pad(np.asarray(x, dtype=np.float64))
        cov = self.cov[group]
        p = _sigmoid(_logit(p_static) + float(self.w[group] @ x))
        r = weight * max(p * (1 - p), 0.02)
        cx = cov @ x
        cov -= np.outer(cx, cx) * (r / (1.0 + r * float(x @ cx)))
        self.w[group] -= weight * (p - good) * (cov @ x)
        self.updates[group] += weight


class CostModel:
    """Online ridge regression (recursive least squares) of log(cost in USD) of a call over the request's
    dense features and its side, learned from the costs of the calls that answered. Ranking requests by
    predicted quality gain per predicted premium dollar is what spends a given budget best: a long-output
    request costs several short ones on premium."""

    def __init__(self, dim: int, ridge: float = 1.0):
        self.dim = dim + 1  # + the side (1 for premium)
        self.P = np.eye(self.dim) / ridge
        self.w = np.zeros(self.dim)
        self.n = 0

    def _x(self, dense: np.ndarray, strong: bool) -> np.ndarray:
        return np.concatenate([dense[: self.dim - 1], [1.0 if strong else 0.0]])

    def predict(self, dense: np.ndarray, strong: bool = True) -> float | None:
        return float(self.w @ self._x(dense, strong)) if self.n else None

    def update(self, dense: np.ndarray, strong: bool, cost_usd: float) -> None:
        if not cost_usd or cost_usd <= 0 or not math.isfinite(cost_usd):
            return
        x = self._x(dense, strong)
        px = self.P @ x
        k = px / (1.0 + float(x @ px))
        self.w += k * (math.log(cost_usd) - float(self.w @ x))
        self.P -= np.outer(k, px)
        self.n += 1


class SpendKeeper:
    """Keeps the adaptive router's premium spend at the static router's on the same traffic.

    A request goes to premium when its score is in the top share of the last `window` scores, the share
    being the static router's so far, corrected by how far the adaptive router's premium spend is over or under
    it (in predicted premium dollars, or calls while no cost is learned); a request never goes to premium while
    the adaptive router is more than 2 calls + 2% over. So outcomes re-rank requests; they do not buy quality
    with spend. Until `window // 10` scores are seen, the cut point is the calibrated one. `window` 0 keeps the
    calibrated cut point (spend may move).
    """

    def __init__(self, window: int = 400):
        self.window = window
        self.scores: list[float] = []  # the last `window` scores, in arrival order
        self._sorted: list[float] = []  # the same, sorted: a rank is one bisect, not a pass over the window
        self.static_calls = 0
        self.calls = 0
        self.static_usd = 0.0
        self.adaptive_usd = 0.0
        self.usd = 0.0  # predicted premium cost of every call seen

    def strong(self, score: float, need: float, cut: float, cost: float = 1.0) -> bool:
        """Premium? `score` ranks (gain per dollar, or need); `need` against `cut` decides until warmed up;
        `cost` is the request's predicted premium cost."""
        if not self.window:
            return need >= cut
        unit = self.usd / self.calls if self.calls else cost
        if self.adaptive_usd + cost > self.static_usd + cost + (2 + 0.02 * self.calls) * unit:
            return False  # already over the static router's premium spend: no more for now
        if len(self.scores) < max(10, self.window // 10):
            return need >= cut
        share = self.static_calls / max(1, self.calls)
        share += (self.static_usd - self.adaptive_usd) / (unit * max(20.0, self.window / 4)) if unit else 0.0
        share = min(1.0, max(0.0, share))
        if share <= 0.0:
            return False
        below = bisect.bisect_left(self._sorted, score)
        return below >= (1.0 - share) * len(self.scores)

    def routed(self, score: float, strong: bool, static_strong: bool, cost: float = 1.0) -> None:
        if not self.window:
            return
        self.scores.append(score)
        bisect.insort(self._sorted, score)
        if len(self.scores) > self.window:
            del self._sorted[bisect.bisect_left(self._sorted, self.scores.pop(0))]
        self.calls += 1
        self.usd += cost
        self.static_calls += int(static_strong)
        self.static_usd += cost * static_strong
        self.adaptive_usd += cost * strong


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

    def on_check_failed(self, call_id: int, signal: str = "answer_check") -> int | None:
        """The answer checks failed this call's answer (agent_router.escalation): a verdict, at most one per call."""
        return self._flag(call_id, signal)

    def on_switch_model(self, conversation_id: str) -> int | None:
        """The agent asked for a stronger model: the last answer in this conversation was not good enough."""
        prev = self._last.get(conversation_id)
        return self._flag(prev[0], "switch_model") if prev else None

    def on_tool_error(self, conversation_id: str) -> int | None:
        """A tool run on the last answer failed."""
        prev = self._last.get(conversation_id)
        return self._flag(prev[0], "tool_error") if prev else None


def _fingerprint(messages: list[dict[str, Any]]) -> int:
    text = " ".join(text_of(messages[last_user_index(messages)]).split()).lower()
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))
