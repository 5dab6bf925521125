"""Keep a cheaper tier's answer, or re-ask the same call one tier up: the one decision every caller shares.

The reference loop and the built-in host-loop hooks (agent_router.builtins.host_loop), `agent-router ask` and
the gateway all call `decide()` after a call that was not on the top tier returned:

    esc = decide(router, decision, messages, answer, finish_reason=..., tool_calls=..., context=ctx,
                 latency_ms=...)
    if esc.escalate:   # esc.decision: the same call one tier up, within every limit the first one obeyed
        ...call esc.decision, record it with escalated_from=<the first call's row id>, reasons=esc.decision.reasons

The answer fails when one of the settings' checks (`escalation.checks`) fires, or, with `escalation.scorer`
on, when the learned scorer's predicted gain reaches its threshold. The call one tier up is routed by the same
router with an override to that tier, so the ceilings (the context's `max_tier`, `routing.utility_max_tier`
for utility calls, `tool_policy.max_tier` for calls on the agent's own override) and the remaining budget bound
it like any other choice; `escalation.latency_budget_ms` bounds the two calls' time together. When a limit
stops it, `Escalation.blocked` says which, and the failed answer stands.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..catalog import TIER_RANK
from ..errors import AgentRouterError
from ..router import Decision, Router
from ..settings import TIERS, EscalationSettings
from .checks import MAX_PARSE, Finding, run_checks
from .scorer import EscalationScorer, load_scorer

SIGNAL = "answer_check"  # the implicit verdict's signal on an answer the checks failed


@dataclass
class Escalation:
    """What `decide` found: whether to re-ask, why, and the decision one tier up."""

    escalate: bool
    findings: list[Finding] = field(default_factory=list)
    score: float | None = None
    decision: Decision | None = None  # the call one tier up (only when escalate)
    blocked: str | None = None  # the answer failed but a limit kept it (top tier, ceiling, budget, latency)

    @property
    def failed(self) -> bool:
        return bool(self.findings) or self.blocked is not None or self.escalate

    @property
    def reasons(self) -> list[str]:
        """The checks' reasons, as the ledger row and the user read them."""
        out = [f"{f.check}: {f.reason}" for f in self.findings]
        if self.score is not None and not self.findings:
            out.append(f"escalation score {self.score:.2f} at or above the threshold")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "escalate": self.escalate,
            "reasons": self.reasons,
            "score": None if self.score is None else round(self.score, 4),
            "tier": self.decision.tier if self.decision else None,
            "model": self.decision.model if self.decision else None,
            "blocked": self.blocked,
        }


@functools.lru_cache(maxsize=4)
def _scorer(path: str | None) -> EscalationScorer:
    return load_scorer(path)


def scorer_threshold(settings: EscalationSettings) -> tuple[EscalationScorer, float]:
    """The scorer the settings name and the threshold to use: `score_threshold`, else the weights' own, which
    must be calibrated to `quality_target`."""
    sc = _scorer(settings.scorer_weights)
    if settings.score_threshold is not None:
        return sc, settings.score_threshold
    target = sc.meta.get("target")
    if target is not None and abs(float(target) - settings.quality_target) > 1e-9:
        raise AgentRouterError(
            f"escalation.quality_target {settings.quality_target} does not match the escalation weights' "
            f"calibrated target {target} ({settings.scorer_weights or 'packaged weights'}); calibrate weights at "
            "that target or set escalation.score_threshold"
        )
    return sc, sc.threshold


def review(
    settings: EscalationSettings,
    messages: list[dict[str, Any]],
    answer: str | None,
    finish_reason: str | None = None,
    tool_calls: Sequence[Any] | None = None,
) -> tuple[list[Finding], float | None, bool]:
    """(findings of the enabled checks, scorer score or None, failed?) for one answer."""
    score = None
    if settings.scorer:
        sc, threshold = scorer_threshold(settings)
        score, found = sc.score(messages, answer, finish_reason, tool_calls)
        findings = [f for f in found if f.check in settings.checks]
        return findings, score, bool(findings) or score >= threshold
    findings = run_checks(messages, answer, finish_reason, tool_calls, checks=settings.checks)
    return findings, None, bool(findings)


def protocol_tool_calls(text: str) -> list[dict[str, Any]] | None:
    """A reply in Agent Zero's protocol (one JSON object `{"tool_name": ..., "tool_args": ...}` as text) as the
    tool call it stands for, so the tool-call checks read it; None when the reply is not JSON-shaped."""
    s = text.strip() if isinstance(text, str) else ""
    if not s.startswith("{") or len(s) > MAX_PARSE:
        return None
    # The first object counts, as the host's parser reads it; text after it is the host's business. Broken
    # JSON stays as it is: the checks report why.
    with contextlib.suppress(ValueError, RecursionError):
        obj, _ = json.JSONDecoder().raw_decode(s)
        s = json.dumps(obj)
    return [{"type": "function", "function": {"name": "reply", "arguments": s}}]


def route_up(
    router: Router,
    decision: Decision,
    messages: list[dict[str, Any]],
    context: dict[str, Any] | None = None,
    why: str = "",
) -> tuple[Decision | None, str | None]:
    """The same call routed one tier above `decision.tier`, within the context's limits: (decision, None), or
    (None, why not) when the tier is the top one or a ceiling, the budget or the catalog keeps it there."""
    rank = TIER_RANK.get(decision.tier, 1)
    if rank >= len(TIERS) - 1:
        return None, f"{decision.tier} is the top tier"
    up = TIERS[rank + 1]
    ctx = dict(context or {})
    prev = ctx.get("override") or {}
    # A call on the agent's own override stays under tool_policy.max_tier: keep its "by".
    ctx["override"] = {"tier": up, "reason": f"escalation: {why}" if why else "escalation",
                       **({"by": prev["by"]} if prev.get("by") else {})}
    try:
        d = router.route(messages, ctx)
    except AgentRouterError as e:  # BudgetBlocked, NoModelFits: the limits keep the first answer
        return None, str(e)
    if TIER_RANK.get(d.tier, 0) <= rank:
        return None, f"limits keep the call at {d.tier}: " + "; ".join(d.reasons[-2:])
    d.reasons.insert(0, f"escalated from {decision.model} ({decision.tier}): {why}" if why else "escalated")
    return d, None


def decide(
    router: Router,
    decision: Decision,
    messages: list[dict[str, Any]],
    answer: str | None,
    *,
    finish_reason: str | None = None,
    tool_calls: Sequence[Any] | None = None,
    context: dict[str, Any] | None = None,
    latency_ms: float | None = None,
) -> Escalation:
    """Keep the answer `decision`'s model gave to `messages`, or re-ask one tier up (see the module doc).

    `context` is the router context the first call was routed with (call_kind, max_tier, override, budget keys);
    `latency_ms` the first call's time, for `escalation.latency_budget_ms`. Never raises on the answer's text.
    """
    es = router.settings.escalation
    if not es.active:
        return Escalation(False)
    findings, score, failed = review(es, messages, answer, finish_reason, tool_calls)
    if not failed:
        return Escalation(False, findings, score)
    esc = Escalation(False, findings, score)
    d, blocked = route_up(router, decision, messages, context, "; ".join(esc.reasons)[:600])
    if d is not None and es.latency_budget_ms is not None and latency_ms is not None:
        expected = router.catalog.get(d.model).latency_ms
        if latency_ms + expected > es.latency_budget_ms:
            d, blocked = None, (
                f"latency budget {es.latency_budget_ms:.0f} ms: {latency_ms:.0f} ms spent + {expected:.0f} ms "
                f"expected on {router.catalog.get(d.model).alias}"
            )
    esc.decision, esc.blocked, esc.escalate = d, blocked, d is not None
    return esc
