"""The live pack inside a host process: settings, router, ledger, the host adapter, per-conversation state.

A host activates one `Runtime` (`activate(rt)`); the built-in host-loop hooks find it with `current()`.
Per conversation it keeps the decision of the current turn and the agent's model override; per model call,
what is needed to record it when the call returns (kind, decision, messages, start time).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalog import ModelInfo
from ..hosts import HostAdapter
from ..learned.adaptive import SignalTracker
from ..plugins import load_plugins
from ..router import Decision, Router
from ..settings import Settings

if TYPE_CHECKING:
    from ..compression import UtilityCaller

log = logging.getLogger("agent_router.runtime")


@dataclass
class ConversationState:
    """What the pack remembers about one conversation between hooks."""

    decision: Decision | None = None  # the current turn's decision
    override: dict[str, Any] | None = None  # sticky, set by switch_model with scope "conversation"
    next_turn: dict[str, Any] | None = None  # one turn only, set by switch_model with scope "next_turn"
    turn_override: dict[str, Any] | None = None  # the override the current turn was routed with
    last_messages: list[dict[str, Any]] = field(default_factory=list)  # as routed at the turn's start
    turn: int = 0
    saved: tuple[int, float] | None = None  # (tokens, USD) compression saved on the prompt being built
    escalation: Any = None  # a failed answer's PendingEscalation: the next main call goes one tier up


@dataclass
class CallRecord:
    """A model call in flight: started in *_call_before, recorded in *_call_after."""

    kind: str  # "chat" | "utility"
    conversation_id: str
    model: ModelInfo
    decision: Decision | None
    messages: list[dict[str, Any]]
    started: float
    reservation_id: str | None = None  # the budget reservation to settle when the call is recorded
    reasoning: Any = None
    saved: tuple[int, float] = (0, 0.0)  # compression's saving on this call's prompt
    main: bool = False  # the loop iteration's own chat call (the agent's answer), not a tool's or a summary
    escalated_from: int | None = None  # the ledger row of the failed answer this call re-asks one tier up
    context: dict[str, Any] = field(default_factory=dict)  # the router context the call was routed with


class Runtime:
    """One configured pack: `Runtime(settings, adapter)`; the ledger opens from settings unless given.
    `utility_caller` is what compression's summaries ask (see agent_router.compression.UtilityCaller)."""

    def __init__(
        self,
        settings: Settings,
        adapter: HostAdapter,
        ledger: Any = None,
        pm: Any = None,
        agent_name: str | None = None,
        utility_caller: UtilityCaller | None = None,
    ):
        self.settings = settings
        # fn(system, message, timeout_s) -> text: how compression's built-in summarizer asks the utility tier
        # for this runtime (None: deterministic digests). The host adapter or the loop sets it.
        self.utility_caller = utility_caller
        self.adapter = adapter
        self.pm = pm if pm is not None else load_plugins()
        self.router = Router(settings, pm=self.pm)
        self.catalog = self.router.catalog
        self.counter = self.router.counter
        if ledger is None:
            from ..ledger import Ledger

            ledger = Ledger.from_settings(settings)
        self.ledger = ledger
        self.router.ledger = ledger  # learned routing reads the verdicts of this runtime's ledger
        self.agent_name = agent_name or adapter.name
        self._states: dict[str, ConversationState] = {}
        self._calls: dict[int, CallRecord] = {}
        self._lock = threading.Lock()
        # What the agent does next (retry, escalate, a failing tool) becomes an implicit verdict in the ledger.
        self.signals = SignalTracker(self.implicit_feedback)

    # -- state -------------------------------------------------------------------------------------------
    def state(self, conversation_id: str) -> ConversationState:
        with self._lock:
            st = self._states.get(conversation_id)
            if st is None:
                st = self._states[conversation_id] = ConversationState()
            return st

    def adopt_states(self, other: Runtime) -> None:
        """Take over another runtime's conversation state and calls in flight (after a settings reload)."""
        with other._lock:
            states, calls = dict(other._states), dict(other._calls)
        with self._lock:
            self._states.update(states)
            self._calls.update(calls)
        self.signals.adopt(other.signals)

    def begin_call(self, call_data: Any, rec: CallRecord) -> None:
        with self._lock:
            self._calls[id(call_data)] = rec

    def end_call(self, call_data: Any) -> CallRecord | None:
        with self._lock:
            return self._calls.pop(id(call_data), None)

    def pending_call(self, call_data: Any) -> CallRecord | None:
        with self._lock:
            return self._calls.get(id(call_data))

    # -- budgets -----------------------------------------------------------------------------------------
    def budget_remaining(self, conversation_id: str) -> float | None:
        """USD left before the tightest budget (conversation, day, month) is reached; None if unlimited."""
        return self.ledger.remaining(conversation_id=conversation_id)

    # -- routing -----------------------------------------------------------------------------------------
    def route(
        self,
        conversation_id: str,
        messages: list[dict[str, Any]],
        kind: str = "chat",
        override: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> Decision:
        """`context`: more router context keys (max_tier, unhealthy, a tighter budget_remaining_usd)."""
        ctx: dict[str, Any] = {"call_kind": kind, **self.ledger.budget_context(conversation_id)}
        if context:  # the tighter of the two remaining budgets
            mine, theirs = ctx.get("budget_remaining_usd"), context.get("budget_remaining_usd")
            ctx.update(context)
            if mine is not None:
                ctx["budget_remaining_usd"] = mine if theirs is None else min(mine, theirs)
        if override:
            ctx["override"] = override
        return self.router.route(messages, ctx)

    def route_turn(
        self, conversation_id: str, messages: list[dict[str, Any]], context: dict[str, Any] | None = None
    ) -> Decision:
        """Route a loop iteration: the agent's override applies; a next-turn override is used up."""
        st = self.state(conversation_id)
        override = st.next_turn or st.override
        st.next_turn = None
        st.turn_override = override
        st.turn += 1
        st.last_messages = list(messages)
        st.decision = self.route(conversation_id, messages, "chat", override, context)
        return st.decision

    # -- recording ---------------------------------------------------------------------------------------
    def record(self, **row: Any) -> int | None:
        """Write one ledger row (arguments of `Ledger.record`); returns its id."""
        row.setdefault("agent_id", self.agent_name)
        return self.ledger.record(**row)

    def implicit_feedback(self, call_id: int, good: bool, source: str, signal: str) -> None:
        """Record a verdict the agent's behaviour gave (SignalTracker's sink), then let learned routing read it
        now rather than at its next periodic sync. A failure is logged, never raised: a verdict must not
        break the agent's turn."""
        import sqlite3

        from ..errors import AgentRouterError

        try:
            self.ledger.add_feedback(call_id, good, source=source, signal=signal)
        except (AgentRouterError, OSError, sqlite3.Error) as e:
            log.warning("agent_router: implicit verdict %r on call %s not recorded: %s", signal, call_id, e)
            return
        if self.settings.learned.enabled and self.settings.learned.adaptive:
            from ..learned.router import sync_ledger

            sync_ledger(self.router)


_current: Runtime | None = None
_current_lock = threading.Lock()


def activate(rt: Runtime | None) -> Runtime | None:
    """Make `rt` the runtime the host-loop hooks use (None deactivates); returns the previous one."""
    global _current
    with _current_lock:
        prev, _current = _current, rt
    return prev


def current() -> Runtime | None:
    """The active runtime, or None when no host activated one (the hooks then do nothing)."""
    return _current


def now() -> float:
    return time.perf_counter()
