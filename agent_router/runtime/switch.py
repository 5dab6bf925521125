"""The `switch_model` tool, host-agnostic: the agent asks for a tier, a model or `auto`; policy decides.

Arguments: `tier` (utility | chat | premium) or `model` (an alias) or `auto` (true: back to routing);
`reason` (required, logged); `scope` (`next_turn`, the default, or `conversation`).

Policy (settings.tool_policy): the tool may be disabled; the agent may not pick a tier above `max_tier` nor a
model outside `allowed_models` (when given) nor, even when listed there, a model above `max_tier`; the target
must be able to take the conversation (vision, context window) and its next call must fit the remaining budget.
A refusal is one sentence addressed to the agent. Every decision, accepted or refused, is a ledger row of kind
"tool" with tool_name "switch_model"; an accepted switch also shows in the reasons of the next call's decision
("override: tier chat (agent: ...)"), and that call and its fallbacks stay at or below `max_tier`.
Arguments are bounded: a tier, model or scope longer than 100 characters or a reason longer than 4,000 is
refused without being echoed; the reason is kept as one line of at most 200 characters (control characters,
ANSI escapes and line separators removed), so it cannot forge lines in decision printouts. An accepted switch
to a higher tier than the conversation is on is also an implicit bad verdict on the answer just given
(signal "switch_model"): the agent found it not good enough.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..catalog import TIER_RANK, ModelInfo
from ..router import estimate_output_tokens
from ..settings import TIERS
from ..usage import counted
from .core import Runtime

SCOPES = ("next_turn", "conversation")
_TRUE = (True, "true", "yes", "1", 1)
MAX_NAME_CHARS = 100  # tier, model, scope: longer is refused
MAX_REASON_CHARS = 4000  # longer is refused
REASON_KEPT_CHARS = 200  # what the override, the decision's reasons and the ledger keep
# An ANSI/VT escape sequence (CSI with its parameters, or OSC up to its terminator), one linear pass.
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]{0,64}[ -/]{0,16}[@-~]?|\][^\x07\x1b]{0,4096}(?:\x07|\x1b\\)?|.?)", re.S)


def one_line(text: str, limit: int = REASON_KEPT_CHARS) -> str:
    """`text` as one printable line of at most `limit` characters: escape sequences dropped, control,
    format and line/paragraph-separator characters (\\n, \\r, U+2028...) turned into spaces, runs of space
    collapsed; cut with "..." when longer."""
    text = _ESCAPE.sub("", text[: limit * 4])
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") else c for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _too_long(args: dict[str, Any]) -> str | None:
    """The name of the first argument over its bound (strings only; other types are judged later)."""
    for k in ("tier", "model", "scope", "auto"):
        v = args.get(k)
        if v is not None and len(v if isinstance(v, str) else repr(v)[: MAX_NAME_CHARS + 1]) > MAX_NAME_CHARS:
            return f"`{k}` is longer than {MAX_NAME_CHARS} characters"
    r = args.get("reason")
    if r is not None and len(r if isinstance(r, str) else repr(r)[: MAX_REASON_CHARS + 1]) > MAX_REASON_CHARS:
        return f"`reason` is longer than {MAX_REASON_CHARS:,} characters"
    return None


def clean_reason(args: dict[str, Any]) -> str:
    r = args.get("reason")
    return one_line(r if isinstance(r, str) else "" if r is None else repr(r)[:MAX_REASON_CHARS])


@dataclass
class SwitchResult:
    accepted: bool
    message: str  # one sentence for the agent
    target: dict[str, Any] | None = None  # {"tier": t} | {"model": alias} | None for auto
    scope: str = "next_turn"


def _refuse(msg: str, scope: str = "next_turn") -> SwitchResult:
    return SwitchResult(False, msg, None, scope)


def decide(rt: Runtime, conversation_id: str, args: dict[str, Any]) -> SwitchResult:
    """Check a switch request against the policy; does not change any state."""
    pol = rt.settings.tool_policy
    if not isinstance(args, dict):
        return _refuse("Switch refused: the arguments must be an object with `tier`, `model` or `auto`, and `reason`.")
    too_long = _too_long(args)
    if too_long:
        return _refuse(f"Switch refused: {too_long}.")
    scope = one_line(str(args.get("scope") or "next_turn"), MAX_NAME_CHARS)
    if scope not in SCOPES:
        return _refuse(f"Switch refused: scope must be one of {', '.join(SCOPES)}, not {scope!r}.")
    reason = clean_reason(args)
    if not reason:
        return _refuse("Switch refused: give a `reason` saying why this task needs a different model.", scope)
    tier, model, auto = args.get("tier"), args.get("model"), args.get("auto")
    chosen = [k for k, v in (("tier", tier), ("model", model), ("auto", auto)) if v not in (None, "", False)]
    if len(chosen) != 1:
        return _refuse(
            "Switch refused: pass exactly one of `tier` (utility, chat or premium), `model`, "
            "or `auto`: true.",
            scope,
        )
    if not pol.enabled:
        return _refuse(
            "Switch refused: the operator turned the switch_model tool off (tool_policy.enabled is false).",
            scope,
        )
    if chosen == ["auto"]:
        if auto not in _TRUE:
            return _refuse("Switch refused: `auto` must be true to hand the choice back to routing.", scope)
        return SwitchResult(
            True, f"Model choice is back to automatic routing ({scope.replace('_', ' ')}).", None, scope
        )

    max_rank = TIER_RANK[pol.max_tier]
    candidates: list[ModelInfo]
    if chosen == ["tier"]:
        tier = one_line(str(tier), MAX_NAME_CHARS).lower()
        if tier not in TIERS:
            return _refuse(f"Switch refused: tier {tier!r} is not one of {', '.join(TIERS)}.", scope)
        if TIER_RANK[tier] > max_rank:
            return _refuse(
                f"Switch refused: the {tier} tier is above {pol.max_tier}, the highest tier you may "
                "choose yourself; routing will pick it when the task needs it.",
                scope,
            )
        candidates = rt.catalog.tier_models(tier)
        target: dict[str, Any] = {"tier": tier}
        label = f"the {tier} tier"
    else:
        model = one_line(str(model), MAX_NAME_CHARS)
        m = rt.catalog.find(model)
        if m is None:
            return _refuse(
                f"Switch refused: model {model!r} is not configured; configured: "
                f"{', '.join(sorted(x.alias for x in rt.catalog))}.",
                scope,
            )
        if pol.allowed_models and m.alias not in pol.allowed_models:
            return _refuse(
                f"Switch refused: {m.alias} is not among the models you may pick "
                f"({', '.join(pol.allowed_models)}).",
                scope,
            )
        if m.tier is None and not pol.allowed_models:
            return _refuse(
                f"Switch refused: {m.alias} has no tier, so only an explicit allowed_models entry "
                "lets you pick it.",
                scope,
            )
        if m.tier is not None and TIER_RANK[m.tier] > max_rank:  # allowed_models never lifts max_tier
            return _refuse(
                f"Switch refused: {m.alias} is in the {m.tier} tier, above {pol.max_tier}, the highest "
                "tier you may choose yourself.",
                scope,
            )
        candidates = [m]
        target = {"model": m.alias}
        label = m.alias

    # Capability and size: the target must be able to take this conversation.
    st = rt.state(conversation_id)
    messages = st.last_messages
    analysis = st.decision.analysis if st.decision else (rt.router.analyze(messages) if messages else None)
    fit: list[ModelInfo] = []
    why = ""
    for c in candidates:
        if analysis is not None and analysis.needs_vision and not c.capabilities.vision:
            why = "cannot read the images in this conversation"
            continue
        if messages:
            n = rt.counter.count_messages(messages, c.provider, c.name).tokens
            if n + min(c.max_output_tokens, 1024) > c.context_window:
                why = f"cannot hold this conversation ({n:,} tokens, window {c.context_window:,})"
                continue
        fit.append(c)
    if not fit:
        return _refuse(f"Switch refused: {label} {why}.", scope)

    # Budget: the next call on the target must fit what is left.
    remaining = rt.budget_remaining(conversation_id) if rt.settings.tool_policy.check_budget else None
    if remaining is not None and messages:
        c = fit[0]
        n = rt.counter.count_messages(messages, c.provider, c.name).tokens
        out = estimate_output_tokens(analysis) if analysis is not None else 350
        est = c.estimate_cost(n, out)
        if est > remaining:
            return _refuse(
                f"Switch refused: a call on {c.alias} is estimated at ${est:.4f} but only "
                f"${remaining:.4f} of budget is left.",
                scope,
            )
    where = "for the next turn" if scope == "next_turn" else "for the rest of this conversation"
    return SwitchResult(True, f"Switched to {label} {where}.", target, scope)


def switch_model(rt: Runtime, conversation_id: str, args: dict[str, Any]) -> SwitchResult:
    """Decide, apply (set the override) and record the decision as a ledger row of kind 'tool'."""
    res = decide(rt, conversation_id, args)
    st = rt.state(conversation_id)
    args = args if isinstance(args, dict) else {}
    reason = clean_reason(args) if _too_long(args) is None else "(refused: too long)"
    if res.accepted:
        # "by": the router holds an agent's override (and its fallbacks) at or below tool_policy.max_tier.
        override = None if res.target is None else {**res.target, "reason": f"agent: {reason}", "by": "agent"}
        if res.scope == "conversation":
            st.override, st.next_turn = override, None
        else:
            st.next_turn = override
            if override is None:  # auto for the next turn: drop any sticky choice as well
                st.override = None
    shown = {k: one_line(str(args[k]), MAX_NAME_CHARS) for k in ("tier", "model", "auto", "scope") if k in args}
    target = _target_model(rt, res, st)
    if res.accepted and res.target and _escalates(rt, st, target):
        rt.signals.on_switch_model(conversation_id)
    rt.record(
        model="switch_model",
        requested_model=target.alias,
        provider=target.provider,
        usage=counted(0, 0),
        cost_usd=0.0,
        kind="tool",
        tool="switch_model",
        conversation_id=conversation_id,
        tier=target.tier,
        outcome="ok" if res.accepted else "refused",
        reasons=[res.message, f"args: {shown}", f"reason: {reason}"],
    )
    return res


def _escalates(rt: Runtime, st: Any, target: ModelInfo) -> bool:
    """Whether the switch goes to a higher tier than the model the conversation's last answer came from."""
    if st.decision is None or target.tier is None:
        return False
    m = rt.catalog.find(st.decision.model)  # None when a settings reload removed it: the decision's tier says
    current = (m.tier if m is not None else None) or st.decision.tier
    return TIER_RANK.get(target.tier, 0) > TIER_RANK.get(current, 0)


def _target_model(rt: Runtime, res: SwitchResult, st: Any) -> ModelInfo:
    """The model a tool row names: the switch's target, else the model the conversation is on."""
    if res.accepted and res.target:
        if "model" in res.target:
            return rt.catalog.get(res.target["model"])
        return rt.catalog.tier_models(res.target["tier"])[0]
    if st.decision is not None:
        return rt.catalog.get(st.decision.model)
    return rt.catalog.tier_models("chat")[0]
