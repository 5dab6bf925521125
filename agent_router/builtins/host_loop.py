"""Built-in host-loop hooks: route each turn, compress the prompt, swap the model per call, record usage.

Every hook finds the active `Runtime` (agent_router.runtime) and reaches host objects only through its
adapter. With no active runtime the hooks do nothing, so loading the pack never changes a host by itself.

Flow of one loop iteration:
  message_loop_start          analyze + route the turn; the decision is kept for the turn
  message_loop_prompts_after  compression entry point (`compress_prompt`)
  chat_model_call_before      budget check, apply the decision (swap the model), start timing
  chat_model_call_after       usage (provider-reported, else counted) -> ledger row
  util_model_call_before/after  the same for utility calls, routed no higher than routing.utility_max_tier
  tool_execute_after          a tool that failed on the answer: an implicit bad verdict on that call

Escalation (settings.escalation, agent_router.escalation.escalate): chat_model_call_after checks the answer of a
main call below the top tier; when it failed, the checks' reasons go into its ledger row with a bad verdict
(signal "answer_check"), and the conversation's next main call -- the reference loop re-asks at once, a host
that already streamed the answer retries the step itself -- goes one tier up, linked by `escalated_from`.

Implicit verdicts (the runtime's SignalTracker): after each recorded answer (the iteration's own chat call) the
request it answered is remembered; the same request sent again marks the earlier answer bad ("retry"), and so
do a failing tool run on it ("tool_error") and the agent escalating with switch_model ("switch_model", in
agent_router.runtime.switch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..hookspecs import hookimpl
from ..messages import last_user_index
from ..usage import Usage, counted, normalize

if TYPE_CHECKING:  # imported by the hooks when they run: loading the plugins (and `agent-router --help`) stays light
    from ..router import Decision
    from ..runtime import core as rtmod


@dataclass
class PendingEscalation:
    """A main call whose answer failed the checks: the conversation's next main call goes one tier up."""

    call_id: int | None  # its ledger row
    failed: Decision  # its decision (the tier to go above)
    why: str  # the checks' reasons, joined


def _escalation_context(rt: rtmod.Runtime, conv: str) -> dict[str, Any]:
    ctx: dict[str, Any] = {"call_kind": "chat", **rt.ledger.budget_context(conv)}
    st = rt.state(conv)
    if st.turn_override:
        ctx["override"] = st.turn_override
    return ctx


_COMPRESSOR: Any = None


def _compressor() -> Any:
    """agent_router.compression.compressor, or None when it cannot be imported (imported once, not on every
    routed request: an import statement walks the import system's tables each time)."""
    global _COMPRESSOR
    if _COMPRESSOR is None:
        try:
            from ..compression import compressor
        except ImportError:
            return None
        _COMPRESSOR = compressor
    return _COMPRESSOR


def compress_prompt(rt: rtmod.Runtime, messages: list[dict[str, Any]], decision: Decision,
                    n_in: int | None = None) -> Any | None:
    """Fit `messages` to the chosen model's budget: the compression result, or None when nothing changed.
    `n_in`: the tokens of `messages` on the decision's model, when the caller counted them already.

    The seam to agent_router.compression (branch `compression`: `plan_budget`, `compress`). When that module
    is not installed the step says so in the decision's reasons and leaves the prompt alone.
    """
    compression = _compressor()
    if compression is None:
        decision.reasons.append("compression not configured")
        return None
    model = rt.catalog.get(decision.model)
    budget = compression.plan_budget(messages, model, rt.settings, rt.counter, n_in)
    if budget is None:
        return None
    result = compression.compress(messages, budget, model, settings=rt.settings, counter=rt.counter, pm=rt.pm,
                                  utility_caller=rt.utility_caller)
    if result.after >= result.before:
        return None
    decision.reasons.append(
        f"compressed prompt {result.before:,} -> {result.after:,} tokens ({budget.reason})"
    )
    return result


@hookimpl
def message_loop_start(agent: Any, loop_data: Any) -> None:
    from ..runtime import core as rtmod

    rt = rtmod.current()
    if rt is None:
        return
    conv = rt.adapter.conversation_id(agent)
    messages = rt.adapter.messages(agent, loop_data)
    try:
        rt.route_turn(conv, messages)
    except InputError:
        # Nothing routable yet (an empty history): the host's own model answers; calls are still recorded.
        rt.state(conv).decision = None


@hookimpl
def message_loop_prompts_after(agent: Any, loop_data: Any) -> None:
    from ..runtime import core as rtmod

    rt = rtmod.current()
    if rt is None:
        return
    st = rt.state(rt.adapter.conversation_id(agent))
    if st.decision is None or not rt.settings.compression.enabled:
        return
    messages = rt.adapter.prompt_messages(agent, loop_data)
    result = compress_prompt(rt, messages, st.decision)
    if result is not None:
        rt.adapter.set_prompt_messages(agent, loop_data, result.messages)
        st.saved = (result.tokens_saved, result.saved_usd)  # credited to the turn's chat call in the ledger


def _before(agent: Any, call_data: Any, kind: str) -> None:
    from ..runtime import core as rtmod

    rt = rtmod.current()
    if rt is None:
        return
    ad = rt.adapter
    conv = ad.conversation_id(agent)
    st = rt.state(conv)
    messages = ad.call_messages(call_data, kind)
    main = kind == "chat" and ad.is_main_call(agent, call_data)
    decision = st.decision if main else None
    if decision is None:
        # Utility calls, and chat calls other than the iteration's own (tools, plugins), are routed on
        # their own messages.
        try:
            decision = rt.route(conv, messages, kind)
        except InputError:
            return  # nothing to route (empty messages): the host's own model takes the call as it is
    # The router holds utility calls (and their fallbacks) at or below routing.utility_max_tier, even when a
    # named model (manual strategy, task preference) sits above it.
    override = st.turn_override if main else None
    escalated_from = None
    if main and st.escalation is not None:  # the previous answer failed its checks: this call goes one up
        from ..escalation.escalate import route_up

        pending, st.escalation = st.escalation, None
        up, _ = route_up(rt.router, pending.failed, messages, _escalation_context(rt, conv), pending.why)
        if up is not None:
            decision, escalated_from = up, pending.call_id
            override = {"tier": up.tier, "reason": "escalation"}
    decision, reservation = _within_budget(rt, conv, decision, messages, kind, override)
    if main:
        st.decision = decision
    model = rt.catalog.get(decision.model)
    ad.set_model(agent, call_data, model, kind)
    rec = rtmod.CallRecord(kind, conv, model, decision, messages, rtmod.now(), reservation, main=main,
                           escalated_from=escalated_from)
    if main and st.saved is not None:
        rec.saved, st.saved = st.saved, None
    rt.begin_call(call_data, rec)


def _within_budget(
    rt: rtmod.Runtime,
    conv: str,
    d: Decision,
    messages: list[dict[str, Any]],
    kind: str,
    override: dict[str, Any] | None,
    n_in: int | None = None,
) -> tuple[Decision, str | None]:
    """Check the call against the budgets atomically just before it is made (spend may have grown since
    the turn began), reserving its estimate. Over budget: re-route with what is left, which downgrades, or
    raises BudgetBlocked when settings say block or nothing cheaper fits. Returns the decision and the
    reservation to settle when the call is recorded. `n_in`: the tokens of `messages` on `d.model`, when
    the caller counted them already (the gateway routes the very list it sends)."""
    model = rt.catalog.get(d.model)
    if n_in is None:
        n_in = rt.counter.count_messages(messages, model.provider, model.name).tokens
    est = model.estimate_cost(n_in, d.estimated_output_tokens)
    # The turn was routed on the conversation; the call carries the host's whole prompt (system prompt,
    # tools): its estimate is what the budget and the ledger should see.
    d.estimated_input_tokens, d.estimated_cost_usd = n_in, est
    if d.shadow and d.shadow.get("model"):  # a shadow challenger's estimate on the same whole prompt
        sm = rt.catalog.get(d.shadow["model"])
        sn = rt.counter.count_messages(messages, sm.provider, sm.name).tokens
        d.shadow["estimated_cost_usd"] = sm.estimate_cost(sn, d.estimated_output_tokens)
    chk = rt.ledger.check(est, conv)
    if chk.allowed:
        return d, chk.reservation_id
    if chk.action == "block":
        from ..router import BudgetBlocked

        raise BudgetBlocked("; ".join(chk.reasons) or f"budget exhausted for conversation {conv}")
    ctx: dict[str, Any] = {"call_kind": kind, "conversation_id": conv}
    if override:
        ctx["override"] = override
    new, chk2 = rt.ledger.route(rt.router, messages, ctx)
    new.reasons.insert(0, f"budget check before the call: {'; '.join(chk.reasons) or 'over budget'}")
    return new, chk2.reservation_id


def _after(agent: Any, call_data: Any, response: Any, kind: str) -> None:
    from ..runtime import core as rtmod

    rt = rtmod.current()
    if rt is None:
        return
    rec = rt.end_call(call_data)
    if rec is None:  # the before-hook did not run for this call (pack activated mid-call)
        return
    ad = rt.adapter
    latency_ms = (rtmod.now() - rec.started) * 1000.0
    m = rec.model
    by = getattr(response, "answered_by", None)  # a fallback answered (agent_router.runtime.loop's Completion)
    if isinstance(by, str) and by != m.alias:
        m = rt.catalog.find(by) or m
    usage: Usage | None = None
    payload = ad.provider_usage(call_data, response)
    if isinstance(payload, Usage):
        usage = payload
    elif payload is not None:
        usage = normalize(payload, m.provider)
    if usage is None:
        n_in = rt.counter.count_messages(rec.messages, m.provider, m.name)
        text = ad.response_text(response, rec.reasoning)
        n_out = rt.counter.count_text(text, m.provider, m.name)
        usage = counted(n_in.tokens, n_out.tokens, "counted" if n_in.source == "counted" else "estimated")
    esc = _check_answer(rt, rec, response, latency_ms) if rec.main and kind == "chat" else None
    reasons = None
    if esc is not None and esc.failed and rec.decision is not None:
        then = f"re-asked on {esc.decision.model} ({esc.decision.tier})" if esc.decision else f"kept ({esc.blocked})"
        reasons = [*rec.decision.reasons, f"answer check failed, {then}: " + "; ".join(esc.reasons)]
    call_id = rt.record(
        model=m.name,
        requested_model=m.alias,
        provider=m.provider,
        usage=usage,
        kind=kind,
        conversation_id=rec.conversation_id,
        tier=m.tier,
        decision=rec.decision,
        reasons=reasons,
        latency_ms=latency_ms,
        reservation_id=rec.reservation_id,
        tokens_saved=rec.saved[0],
        saved_usd=rec.saved[1],
        prompt=rec.messages,  # stored only when ledger.store_prompts is on (keys masked by the ledger)
        escalated_from=rec.escalated_from,
    )
    if rec.main and call_id is not None:
        _track_answer(rt, rec.conversation_id, call_id)
    if esc is not None and esc.failed:
        from ..escalation.escalate import SIGNAL

        if call_id is not None:  # the failed answer is a recorded verdict, whether or not it is re-asked
            rt.signals.on_check_failed(call_id, SIGNAL)
        if esc.decision is not None and rec.decision is not None:
            rt.state(rec.conversation_id).escalation = PendingEscalation(
                call_id, rec.decision, "; ".join(esc.reasons)[:600]
            )


def _check_answer(rt: rtmod.Runtime, rec: rtmod.CallRecord, response: Any, latency_ms: float) -> Any | None:
    """The escalation verdict on a main call's answer (agent_router.escalation.escalate.decide), or None when
    escalation is off, the call re-asked a failed one already, or it was not routed."""
    if not rt.settings.escalation.active or rec.escalated_from is not None or rec.decision is None:
        return None
    from ..escalation.escalate import decide, protocol_tool_calls

    text = rt.adapter.response_text(response)
    tool_calls = getattr(response, "tool_calls", None) or protocol_tool_calls(text)
    return decide(
        rt.router, rec.decision, rec.messages, text, finish_reason=getattr(response, "finish_reason", None),
        tool_calls=tool_calls, context=_escalation_context(rt, rec.conversation_id), latency_ms=latency_ms,
    )


def _track_answer(rt: rtmod.Runtime, conv: str, call_id: int) -> None:
    """Remember the answer for implicit verdicts, keyed by the request it answers: the user's newest message
    in the turn's history (tool results are not requests) and its position, so the steps of one turn are
    not a retry but the same text sent again as a new message is."""
    turn = rt.state(conv).last_messages
    if not any(m.get("role") == "user" for m in turn):
        return
    rt.signals.on_call(conv, turn, call_id, request_key=last_user_index(turn))


def record_failure(agent: Any, call_data: Any, error: BaseException) -> None:
    """For hosts that see a model call fail (the hookspec has no failure hook): one ledger row with outcome
    `error: <kind>`, no cost, its budget reservation settled. The caller re-raises."""
    from ..runtime import core as rtmod

    rt = rtmod.current()
    if rt is None:
        return
    rec = rt.end_call(call_data)
    if rec is None:
        return
    m = rec.model
    n_in = rt.counter.count_messages(rec.messages, m.provider, m.name)
    kind = getattr(error, "kind", None) or type(error).__name__
    rt.record(
        model=m.name,
        requested_model=m.alias,
        provider=m.provider,
        usage=counted(n_in.tokens, 0, "counted" if n_in.source == "counted" else "estimated"),
        cost_usd=0.0,
        kind=rec.kind,
        conversation_id=rec.conversation_id,
        tier=m.tier,
        decision=rec.decision,
        latency_ms=(rtmod.now() - rec.started) * 1000.0,
        outcome=f"error: {kind}",
        reservation_id=rec.reservation_id,
        escalated_from=rec.escalated_from,
    )


@hookimpl
def chat_model_call_before(agent: Any, call_data: Any) -> None:
    _before(agent, call_data, "chat")


@hookimpl
def chat_model_call_after(agent: Any, call_data: Any, response: Any) -> None:
    _after(agent, call_data, response, "chat")


@hookimpl
def util_model_call_before(agent: Any, call_data: Any) -> None:
    _before(agent, call_data, "utility")


@hookimpl
def util_model_call_after(agent: Any, call_data: Any, response: Any) -> None:
    _after(agent, call_data, response, "utility")


# A tool's output that reports a failure: a Python traceback, or a first line that says error / failed.
# The runs of space are bounded: unbounded, \s* and \W\s* overlap and 100 KB of blanks took minutes.
_FAILED = re.compile(
    r"Traceback \(most recent call last\)|\A\s{0,64}(?:\W{0,3}\s{0,8})?(?:error|exception|failed|fatal)\b",
    re.IGNORECASE,
)


def tool_failed(response: Any) -> bool:
    """Whether a tool's response says it failed: an `error` attribute or key that is set, an exception, or
    a text (the response itself or its `message`) that starts with an error or carries a traceback."""
    if isinstance(response, BaseException):
        return True
    err = response.get("error") if isinstance(response, dict) else getattr(response, "error", None)
    if err:
        return True
    text = response.get("message") if isinstance(response, dict) else getattr(response, "message", response)
    return isinstance(text, str) and bool(_FAILED.search(text))


@hookimpl
def tool_execute_after(agent: Any, tool_name: str, response: Any) -> None:
    from ..runtime import core as rtmod

    rt = rtmod.current()
    if rt is None or tool_name in ("response", "switch_model"):
        return  # the final answer is no tool run on an answer; switch_model gives its own signal
    if tool_failed(response):
        rt.signals.on_tool_error(rt.adapter.conversation_id(agent))
