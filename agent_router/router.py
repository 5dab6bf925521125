"""Routing: messages + context -> Decision(tier, model, analysis, reasons, estimated cost, fallbacks).

Constraints filter candidates before a strategy ranks them: required capabilities, context fit, budget
remaining, health, and manual or agent overrides. Every decision explains itself in `reasons`.

Context keys (all optional): ``call_kind`` ("chat" | "utility"), ``override`` ({"tier": t} or {"model": a}),
``budget_remaining_usd`` (float), ``on_exceed`` ("downgrade" | "block", default from settings),
``unhealthy`` (aliases to skip), ``require`` (capabilities such as "tools", "json"), ``output_tokens``
(expected output, else estimated), ``conversation_id``, ``max_tier`` (a ceiling no candidate may exceed).

Ceilings are hard: a utility call never goes above ``routing.utility_max_tier``, and a call routed on the agent's
own override (switch_model, ``override["by"] == "agent"``) never above ``tool_policy.max_tier``. The fallback
chain (``Decision.fallbacks``) passes the same filter as the first choice: admissible, under the ceiling, and
estimated within the remaining budget.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from . import messages as msgs
from .analyzer import Analysis
from .catalog import TIER_RANK, Catalog, ModelInfo
from .errors import AgentRouterError
from .settings import TIERS, Settings, challenger_settings
from .tokens import TokenCounter


class NoModelFits(AgentRouterError):
    """No configured model satisfies the request's constraints; the message says which constraint."""


class BudgetBlocked(AgentRouterError):
    """The call would exceed a budget and settings say to block rather than downgrade."""


@dataclass
class Decision:
    """The router's choice for one call, with everything needed to explain and record it."""

    tier: str
    model: str  # alias
    model_name: str
    provider: str
    analysis: Analysis
    reasons: list[str]
    estimated_input_tokens: int
    estimated_output_tokens: int
    estimated_cost_usd: float
    token_source: str
    fallbacks: list[str] = field(default_factory=list)
    strategy: str = "balanced"
    arm: str | None = None  # routing experiment arm (<experiment>:live | :control | :challenger)
    shadow: dict[str, Any] | None = None  # a shadow challenger's choice: experiment, tier, model, estimated cost

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "model": self.model,
            "model_name": self.model_name,
            "provider": self.provider,
            "strategy": self.strategy,
            "estimated_input_tokens": self.estimated_input_tokens,
            "estimated_output_tokens": self.estimated_output_tokens,
            "estimated_cost_usd": round(self.estimated_cost_usd, 8),
            "token_source": self.token_source,
            "fallbacks": self.fallbacks,
            "reasons": self.reasons,
            "analysis": self.analysis.to_dict(),
            **({"arm": self.arm} if self.arm else {}),
            **({"shadow": self.shadow} if self.shadow else {}),
        }


def ab_bucket(experiment: str, conversation_id: str) -> float:
    """A stable number in [0, 1) for a conversation in an experiment (the same in every process and run)."""
    h = hashlib.blake2b(f"{experiment}\x00{conversation_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


# Per wanted tier, every tier by distance from it (up before down: a smaller tier rarely fixes a capability or
# size constraint).
_TIER_ORDER = {
    w: sorted(TIERS, key=lambda t, w=w: (abs(TIER_RANK[t] - TIER_RANK[w]), -TIER_RANK[t])) for w in TIERS  # type: ignore[misc]
}


def tier_for_score(score: float, settings: Settings) -> str:
    t = settings.routing.thresholds
    if score < t.low:
        return "utility"
    if score < t.high:
        return "chat"
    return "premium"


def estimate_output_tokens(a: Analysis) -> int:
    """A rough output size from the request's shape, used for cost estimates and context fit."""
    f = a.features
    est = 350.0
    est += 1200 * f.get("long_output", 0) + 700 * f.get("code_ask", 0) + 400 * f.get("reasoning", 0)
    est *= 1 - 0.8 * f.get("short_output", 0)
    return int(max(16, est))


class Router:
    """Holds settings, catalog and token counter; `route()` is thread-safe."""

    def __init__(self, settings: Settings | None = None, counter: TokenCounter | None = None, pm: Any = None):
        """`pm`: the plugin manager whose hooks analyze and select; None (default) loads the installed plugins
        (built-ins included, so `learned.enabled` is honoured), False routes on the heuristic analyzer alone."""
        from .plugins import manager

        self.settings = settings or Settings()
        self._pm = manager(pm)
        self.catalog = Catalog(self.settings, pm=self._pm or False)
        self.counter = counter or TokenCounter(self.settings.tokens.cache_dir)
        self._rr: dict[str, itertools.count[int]] = {t: itertools.count() for t in TIERS}
        self._lock = threading.Lock()
        self._challengers: dict[str, Router] = {}
        self._learned: Any = None
        self.ledger: Any = None  # the Ledger learned routing reads verdicts from (None: the one settings name)
        # Per wanted tier, every model of every tier by distance from it (`_TIER_ORDER`), each once: the routed
        # candidates before a wanted model goes first. Made once (the catalog does not change under a router).
        self._candidates: dict[str, tuple[ModelInfo, ...]] = {}
        for w in TIERS:
            order: dict[str, ModelInfo] = {}
            for t in _TIER_ORDER[w]:
                for m in self.catalog.tier_models(t):
                    order.setdefault(m.alias, m)  # aliases are unique in a catalog: one alias, one model
            self._candidates[w] = tuple(order.values())
        self._encoding: dict[str, str] = {}  # alias -> the encoding its prompt is counted with (the counter's)
        t = self.settings.routing.thresholds
        self._thresholds = f"(thresholds {t.low}/{t.high})"  # as each routed decision's reason writes them

    @property
    def learned(self) -> Any:
        """This router's LearnedRouter (created on first use from `settings.learned`, with its own adaptive
        state), or None when learned routing is off."""
        if self._learned is None and self.settings.learned.enabled:
            with self._lock:
                if self._learned is None:
                    from .learned.router import LearnedRouter

                    self._learned = LearnedRouter.from_settings(self.settings, self.ledger)
        return self._learned

    # -- analysis ------------------------------------------------------------------------------------------
    def analyze(self, messages: list[dict[str, Any]], context: dict[str, Any] | None = None) -> Analysis:
        if self._pm is not None:
            # Plugins see the router's settings (e.g. the learned router's calibration) beside the context.
            result = self._pm.hook.analyze(messages=messages,
                                           context={**(context or {}), "settings": self.settings, "router": self})
            if result is not None:
                return result
        from .analyzer import analyze

        return analyze(messages)

    # -- routing -------------------------------------------------------------------------------------------
    def route(self, messages: list[dict[str, Any]], context: dict[str, Any] | None = None) -> Decision:
        """The decision for one call. With a routing experiment (routing.experiments) the challenger policy
        routes it too: in shadow its choice rides along in `Decision.shadow`; in an A/B test a stable hash of
        the conversation id picks the arm whose decision is returned (`Decision.arm` says which)."""
        if not self.settings.routing.experiments:
            return self._route(messages, context)
        ex = self.settings.routing.experiments[0]
        ctx = context or {}
        if ex.mode == "ab":
            conv = ctx.get("conversation_id")
            on = conv is not None and ab_bucket(ex.name, str(conv)) < ex.share
            d = (self._challenger(ex).route if on else self._route)(messages, context)
            d.arm = f"{ex.name}:{'challenger' if on else 'control'}"
            return d
        d = self._route(messages, context)
        d.arm = f"{ex.name}:live"
        try:
            c = self._challenger(ex).route(messages, context)
            d.shadow = {"experiment": ex.name, "tier": c.tier, "model": c.model,
                        "estimated_cost_usd": c.estimated_cost_usd}
        except AgentRouterError as e:  # the challenger's own limits refused it: recorded, never raised
            d.shadow = {"experiment": ex.name, "error": str(e)[:200]}
        return d

    def _challenger(self, ex: Any) -> Router:
        with self._lock:
            r = self._challengers.get(ex.name)
            if r is None:
                r = self._challengers[ex.name] = Router(
                    challenger_settings(self.settings, ex), counter=self.counter, pm=self._pm
                )
            return r

    def _route(self, messages: list[dict[str, Any]], context: dict[str, Any] | None = None) -> Decision:
        ctx = context or {}
        messages = msgs.validate(messages)
        analysis = self.analyze(messages, ctx)
        s = self.settings
        reasons: list[str] = []
        strategy = s.routing.strategy
        out_tokens = int(ctx.get("output_tokens") or estimate_output_tokens(analysis))
        kind = ctx.get("call_kind", "chat")

        # 1. The tier (or model) wanted before constraints.
        wanted_model: str | None = None
        override = ctx.get("override") or {}
        if override.get("model"):
            wanted_model = self.catalog.get(override["model"]).alias
            tier = self.catalog.get(wanted_model).tier or "chat"
            reasons.append(f"override: model {wanted_model} ({override.get('reason') or 'requested'})")
        elif override.get("tier"):
            tier = override["tier"]
            if tier not in TIERS:
                raise AgentRouterError(f"override tier {tier!r} is not one of {', '.join(TIERS)}")
            reasons.append(f"override: tier {tier} ({override.get('reason') or 'requested'})")
        elif not s.routing.enabled:
            tier = "chat"
            reasons.append("routing disabled: chat tier")
        elif strategy == "manual":
            wanted_model = s.routing.manual_model
            tier = self.catalog.get(wanted_model or "").tier or "chat"
            reasons.append(f"manual strategy: {wanted_model}")
        else:
            tier = tier_for_score(analysis.score, s)
            reasons.append(f"complexity {analysis.score:.2f} -> {tier} {self._thresholds}")
            pref = s.routing.task_preferences.get(analysis.task_type)  # type: ignore[call-overload]
            if pref:
                if pref in TIERS:
                    tier = pref
                else:
                    wanted_model = pref
                    tier = self.catalog.get(pref).tier or tier
                reasons.append(f"task preference: {analysis.task_type} -> {pref}")
            if strategy == "quality_first" and tier != "premium" and wanted_model is None:
                tier = TIERS[TIER_RANK[tier] + 1]
                reasons.append(f"quality_first: one tier up -> {tier}")
            esc = s.escalation
            if esc.active and esc.mode == "hybrid" and tier != "premium" and analysis.score >= esc.hybrid_threshold:
                tier = "premium"
                reasons.append(f"hybrid: score {analysis.score:.2f} >= {esc.hybrid_threshold} -> premium, no cheap try")
        ceiling = self._ceiling(ctx, kind)
        if ceiling is not None and TIER_RANK[tier] > TIER_RANK[ceiling]:
            tier = ceiling
            reasons.append(f"{'utility call' if kind == 'utility' else 'agent override'}: capped at {tier}")

        # 2. Constraints.
        need_vision = analysis.needs_vision
        require = set(r) if (r := ctx.get("require")) else ()
        unhealthy = set(u) if (u := ctx.get("unhealthy")) else ()
        prompt_counts: dict[str, tuple[int, str]] = {}
        model_counts: dict[str, tuple[int, str]] = {}
        encoding = self._encoding

        def prompt_tokens(m: ModelInfo) -> tuple[int, str]:
            # Models sharing an encoding share one count: a long history is walked once per encoding.
            # The count's own source: "estimated" also when a very long text was counted on samples.
            got = model_counts.get(m.alias)
            if got is None:
                enc = encoding.get(m.alias)
                if enc is None:  # fixed for the counter's life: asked once per model, not per call
                    enc = encoding[m.alias] = self.counter.encoding_of(m.provider, m.name)[0]
                got = prompt_counts.get(enc)
                if got is None:
                    c = self.counter.count_messages(messages, m.provider, m.name)
                    got = prompt_counts[enc] = (c.tokens, c.source)
                model_counts[m.alias] = got
            return got

        costs: dict[str, float] = {}

        def est_cost(m: ModelInfo) -> float:  # the model's estimated cost of this call, once per model
            c = costs.get(m.alias)
            if c is None:
                c = costs[m.alias] = m.estimate_cost(prompt_tokens(m)[0], out_tokens)
            return c

        rejected: dict[str, str] = {}

        def admissible(m: ModelInfo) -> bool:
            if ceiling is not None and TIER_RANK.get(m.tier or "", -1) > TIER_RANK[ceiling]:
                rejected[m.alias] = f"{m.tier} tier above the {ceiling} ceiling"
                return False
            if m.alias in unhealthy:
                rejected[m.alias] = "unhealthy or cooling down"
                return False
            if need_vision and not m.capabilities.vision:
                rejected[m.alias] = "no vision"
                return False
            for cap in require:
                if not getattr(m.capabilities, "json_mode" if cap == "json" else cap, False):
                    rejected[m.alias] = f"no {cap}"
                    return False
            n, _ = prompt_tokens(m)
            if n + min(out_tokens, m.max_output_tokens) > m.context_window:
                rejected[m.alias] = f"prompt {n:,} + output does not fit window {m.context_window:,}"
                return False
            return True

        # Candidates: the wanted tier first, then the others ordered by distance (up before down when the
        # constraint is capability or size, since a smaller tier rarely fixes those).
        candidates = self._candidates[tier]
        if wanted_model:
            wm = self.catalog.get(wanted_model)
            candidates = (wm, *(m for m in candidates if m.alias != wm.alias))
        ok = [m for m in candidates if admissible(m)]
        if not ok:
            detail = "; ".join(f"{a}: {why}" for a, why in rejected.items())
            raise NoModelFits(f"no configured model can take this request ({detail})")

        # 3. Strategy ranks the admissible models of the best available tier.
        first_tier = ok[0].tier if not wanted_model or ok[0].alias != wanted_model else None
        if wanted_model and ok[0].alias == wanted_model:
            chosen = ok[0]
        else:
            same = [m for m in ok if m.tier == first_tier]
            chosen = self._pick(same, analysis, ctx, strategy, prompt_tokens, out_tokens)
        if chosen.tier != tier and not wanted_model:
            why = rejected.get(self.catalog.tier_models(tier)[0].alias, "constraints") if self.catalog.tier_models(
                tier) else "no models"
            reasons.append(f"{tier} tier unavailable ({why}) -> {chosen.tier}")

        # 4. Budget: downgrade (cheaper admissible model) or block.
        n_in, source = prompt_tokens(chosen)
        cost = est_cost(chosen)
        remaining = ctx.get("budget_remaining_usd")
        per_request = s.budgets.per_request_usd
        limit = float("inf")
        if remaining is not None:
            limit = remaining
        if per_request is not None and per_request < limit:
            limit = per_request
        if cost > limit:
            on_exceed = ctx.get("on_exceed") or s.budgets.on_exceed
            cheaper = sorted((m for m in ok if est_cost(m) <= limit),
                             key=lambda m: (-TIER_RANK.get(m.tier or "chat", 1), est_cost(m)))
            if on_exceed == "block" or not cheaper:
                raise BudgetBlocked(
                    f"estimated ${cost:.4f} on {chosen.alias} exceeds the remaining budget ${limit:.4f}"
                    + ("" if cheaper else " and no cheaper model fits")
                )
            reasons.append(f"budget: ${cost:.4f} on {chosen.alias} exceeds ${limit:.4f} -> downgraded")
            chosen = cheaper[0]
            n_in, source = prompt_tokens(chosen)
            cost = est_cost(chosen)

        # 5. The fallback chain: only models that passed the same filter and fit the same budget limit.
        affordable = [m for m in ok if est_cost(m) <= limit]
        reasons.append(f"model {chosen.alias} ({chosen.provider}/{chosen.name}), est. ${cost:.5f}")
        decision = Decision(
            tier=chosen.tier or tier,
            model=chosen.alias,
            model_name=chosen.name,
            provider=chosen.provider,
            analysis=analysis,
            reasons=[*analysis.reasons[:1], *reasons],
            estimated_input_tokens=n_in,
            estimated_output_tokens=out_tokens,
            estimated_cost_usd=cost,
            token_source=source,
            fallbacks=self.fallbacks_for(chosen.alias, affordable),
            strategy=strategy,
        )
        return decision

    def _pick(self, same, analysis, ctx, strategy, prompt_tokens, out_tokens) -> ModelInfo:
        if self._pm is not None and self._pm.hook.select_model.get_hookimpls():  # none built in: skip the call
            alias = self._pm.hook.select_model(analysis=analysis, candidates=same, context=ctx)
            if alias is not None:
                return self.catalog.get(alias)
        if strategy == "cost_optimized":
            return min(same, key=lambda m: m.estimate_cost(prompt_tokens(m)[0], out_tokens))
        if strategy == "latency":
            return min(same, key=lambda m: m.latency_ms)
        if strategy == "round_robin":
            with self._lock:
                i = next(self._rr[same[0].tier or "chat"])
            return same[i % len(same)]
        return same[0]

    def _ceiling(self, ctx: dict[str, Any], kind: str) -> str | None:
        """The highest tier this call may use: the tightest of ctx["max_tier"], routing.utility_max_tier
        (utility calls) and tool_policy.max_tier (calls on the agent's own override)."""
        s = self.settings
        agent = (ctx.get("override") or {}).get("by") == "agent"
        caps = [c for c in (ctx.get("max_tier"), s.routing.utility_max_tier if kind == "utility" else None,
                            s.tool_policy.max_tier if agent else None) if c is not None]
        if not caps:  # no ceiling applies (the usual routed chat call)
            return None
        for c in caps:
            if c not in TIERS:
                raise AgentRouterError(f"max_tier {c!r} is not one of {', '.join(TIERS)}")
        return min(caps, key=lambda t: TIER_RANK[t])

    def fallbacks_for(self, alias: str, admissible: list[ModelInfo] | None = None) -> list[str]:
        """The configured chain for `alias`, else other admissible models, nearest tier first. When
        `admissible` is given (route() passes the models that passed its filter and budget), a configured
        chain keeps only those: a fallback never escapes the limits the first choice obeyed."""
        chain = list(self.settings.routing.fallbacks.get(alias, []))
        if chain:
            allowed = None if admissible is None else {m.alias for m in admissible}
            return [
                a for a in chain if a != alias and (allowed is None or self.catalog.get(a).alias in allowed)
            ]
        pool = admissible if admissible is not None else list(self.catalog)
        me = self.catalog.get(alias)
        rank = TIER_RANK.get(me.tier or "chat", 1)
        rest = [m for m in pool if m.alias != alias]
        rest.sort(key=lambda m: (abs((r := TIER_RANK.get(m.tier or "chat", 1)) - rank), -r))
        return [m.alias for m in rest][:3]


def route(
    messages: list[dict[str, Any]] | str,
    context: dict[str, Any] | None = None,
    settings: Settings | None = None,
    pm: Any = None,
) -> Decision:
    """Route one request with a fresh Router (use a Router instance to keep caches between calls); plugins
    load as for `Router` (`pm=False`: none)."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return Router(settings, pm=pm).route(messages, context)
