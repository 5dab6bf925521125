"""Fit chat messages (OpenAI shape) into a token budget without losing what matters.

Rules, in order of precedence:
- Kept as they are: leading system messages, the first user request, and the newest
  ``keep_recent_turns`` turns (a turn starts at a user message, or at an assistant message that follows tool
  results). Everything between them is the "middle".
- The middle is split by age into bands (current topic, older topics, bulk) with proportional budgets.
  Within a band the largest items go first (tool outputs, code blocks, JSON documents, pasted text), each
  replaced whole by a marker saying what was removed and how big it was; only then are whole exchanges
  (an assistant tool call and its results always together) replaced by a summary.
- Lines matching ``important_patterns`` in removed content are carried into the marker or the summary.
- Summaries come from the ``summarize`` hook (the built-in one asks the utility tier through the
  ``utility_caller`` given to ``compress``, which a ``Runtime`` holds) within ``summarize_timeout_s``; on
  failure, absence or timeout a deterministic digest is used, so compression never stalls the agent. The
  deterministic path gives the same output for the same input.
- A synthetic summary never creates two consecutive user or assistant messages, and no tool call is ever left
  without its result (or a result without its call).

`plan_budget` decides whether and how far to compress for a model; `compress` does it. Helpers live in
`text_blocks` (atomic blocks, markers, the structure check), `facts` (important lines) and `summaries`
(the bounded, cached hook call).
"""

from __future__ import annotations

import contextvars
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import messages as msgs
from ..errors import InputError
from ..settings import CompressionSettings, Settings
from ..tokens import PER_MESSAGE, REPLY_PRIMER, TokenCounter
from .blocks import (
    Block,
    append_text,
    blocks_of,
    call_name,
    est_tokens,
    first_line,
    gist,
    marker,
    prepend_text,
    role_kind,
    size_class,
    split_text,
    structure_problems,
    tidy_whitespace,
    unclosed_fence,
)
from .facts import Fact, compile_patterns, find_facts
from .summaries import BREAKER, SUMMARIES, call_hook, span_key, timeout_var

__all__ = [
    "Budget", "CompressionResult", "clear_summary_cache", "compress", "get_utility_caller", "plan_budget",
    "set_utility_caller", "structure_problems", "summarize_timeout", "unclosed_fence", "UtilityCaller",
]

# fn(system, message, timeout_s) -> reply text. Held by its owner (a Runtime, a host adapter) and passed to
# `compress(..., utility_caller=...)`; during that call the summarize hook reads it from `utility_caller_var`.
UtilityCaller = Callable[[str, str, float], str]

utility_caller_var: contextvars.ContextVar[UtilityCaller | None] = contextvars.ContextVar(
    "agent_router_utility_caller", default=None
)
_deprecated_default: UtilityCaller | None = None  # set_utility_caller's process-wide caller

# Blocks smaller than this are not worth a marker (a marker costs ~30 tokens).
_MIN_ELIDE_TOKENS = 60
_BAND_NAMES = ("current topic", "older topics", "bulk")
_BAND_SHARES = (0.5, 0.3, 0.2)
_BAND_EDGES = (0.25, 0.45)  # current topic fallback: newest 25%; older topics: newer 45% of the rest
_TOPIC_MIN, _TOPIC_MAX = 0.10, 0.50  # share of the middle a current topic may span
_REQUEST_WORDS = 6  # a user message this long starts a topic; shorter ones ("go on") do not
_FACTS_PER_BLOCK = 12
_GIST_CHARS = 140
_USER_GIST_CHARS = 320
_HEADER_TOKENS = 40


def set_utility_caller(fn: UtilityCaller | None) -> None:
    """Deprecated: pass `compress(..., utility_caller=fn)` (a Runtime passes its own). Sets (None: clears) a
    process-wide caller, used by calls that give none."""
    global _deprecated_default
    if fn is not None:
        warnings.warn(
            "agent_router.compression.set_utility_caller is deprecated: pass compress(..., utility_caller=fn), "
            "or set Runtime.utility_caller",
            DeprecationWarning,
            stacklevel=2,
        )
    _deprecated_default = fn


def get_utility_caller() -> UtilityCaller | None:
    """The caller in effect: the one given to the running `compress` call, else set_utility_caller's."""
    return utility_caller_var.get() or _deprecated_default


def clear_summary_cache() -> None:
    """Forget summaries kept from earlier calls (reused while a span is unchanged) and any recent summarizer
    failure (after which the summarizer is left alone for ``summarize_retry_after_s``)."""
    SUMMARIES.clear()
    BREAKER.reset()


def summarize_timeout() -> float:
    """Seconds the current summary may take (set by `compress` for the summarize hook)."""
    return timeout_var.get()


# --- results ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """What `plan_budget` decided: compress to `tokens`, because of `reason` ("fit", "cost" or "fit+cost")."""

    tokens: int
    reason: str
    prompt_tokens: int
    limit: int
    compress_system: bool = False

    def __int__(self) -> int:
        return self.tokens


@dataclass
class CompressionResult:
    """Compressed messages and what it took. Token counts include chat framing, as `count_messages`."""

    messages: list[dict[str, Any]]
    before: int
    after: int
    actions: list[str]
    budget: int = 0
    fits: bool = True
    tokens_saved: int = 0
    saved_usd: float = 0.0
    summarizer: str = "none"  # "none" | "deterministic" | "hook"
    facts_carried: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before,
            "after": self.after,
            "budget": self.budget,
            "fits": self.fits,
            "tokens_saved": self.tokens_saved,
            "saved_usd": round(self.saved_usd, 8),
            "summarizer": self.summarizer,
            "facts_carried": self.facts_carried,
            "actions": self.actions,
        }


# --- the plan --------------------------------------------------------------------------------------------
@dataclass(eq=False)  # units are compared by identity (a group holds its own unit)
class _Unit:
    idx: list[int]  # message indices, in order (an assistant tool call and its results together)
    tokens: int
    band: int = 0
    dropped: bool = False
    # Units holding the other half of a tool call or result (they go into a summary together), and whether
    # a half is in the kept part (then the unit stays: its blocks may be elided, the message never).
    group: list[_Unit] = field(default_factory=list)
    fixed: bool = False


def _tool_units(indices: list[int], work: list[dict[str, Any]]) -> list[_Unit]:
    units: list[_Unit] = []
    k = 0
    while k < len(indices):
        i = indices[k]
        m = work[i]
        group = [i]
        if m.get("role") == "assistant" and m.get("tool_calls"):
            ids = {str((tc or {}).get("id")) for tc in m["tool_calls"]}
            while k + 1 < len(indices) and indices[k + 1] == group[-1] + 1:
                nxt = work[indices[k + 1]]
                if role_kind(nxt) == "tool" and str(nxt.get("tool_call_id")) in ids:
                    group.append(indices[k + 1])
                    k += 1
                else:
                    break
        units.append(_Unit(group, 0))
        k += 1
    return units


def _turn_starts(work: list[dict[str, Any]]) -> list[int]:
    starts = []
    for i, m in enumerate(work):
        r = role_kind(m)
        prev = role_kind(work[i - 1]) if i else None
        if r == "user" or (r == "assistant" and prev == "tool"):
            starts.append(i)
    return starts


def _allocate(needs: list[int], shares: tuple[float, ...], total: int) -> list[int]:
    """Water-filling: each band gets its share; what a band does not need goes to the others."""
    alloc = [0] * len(needs)
    active = [i for i in range(len(needs)) if needs[i] > 0]
    remaining = max(0, total)
    while active and remaining > 0:
        wsum = sum(shares[i] for i in active)
        settled = [i for i in active if needs[i] - alloc[i] <= remaining * shares[i] / wsum]
        if not settled:
            for i in active:
                alloc[i] += int(remaining * shares[i] / wsum)
            break
        for i in settled:
            remaining -= needs[i] - alloc[i]
            alloc[i] = needs[i]
            active.remove(i)
    return alloc


def _model_parts(model: Any) -> tuple[str, str, Any]:
    """(provider, name, ModelInfo or None) from a ModelInfo, a model name, or None."""
    if model is None:
        return "openai", "gpt-4o", None
    if isinstance(model, str):
        return "openai", model, None
    return getattr(model, "provider", "openai"), getattr(model, "name", "gpt-4o"), model


def _settings_of(settings: Settings | CompressionSettings | None) -> CompressionSettings:
    if settings is None:
        return CompressionSettings()
    if isinstance(settings, Settings):
        return settings.compression
    return settings


def plan_budget(
    messages: list[dict[str, Any]],
    model_info: Any,
    settings: Settings | CompressionSettings | None = None,
    counter: TokenCounter | None = None,
    total: int | None = None,
) -> Budget | None:
    """Whether and how far to compress the prompt for `model_info` (a catalog ModelInfo); None: leave it.
    `total`: the prompt's tokens on that model, when the caller counted them already.

    Compress when the prompt exceeds ``history_share`` of the model's window (less its reserved output), and
    for models whose input price is at or above ``expensive_input_price``, to ``1 - target_reduction`` of
    the prompt even when it fits (then the system prompt's whitespace is tidied too).
    """
    cs = _settings_of(settings)
    if not cs.enabled:
        return None
    provider, name, info = _model_parts(model_info)
    if total is None:
        total = (counter or TokenCounter()).count_messages(messages, provider, name).tokens
    window = getattr(info, "context_window", None) or 128_000
    out = getattr(info, "max_output_tokens", 0) or 0
    limit = max(1, min(int(window * cs.history_share), window - out))
    price = getattr(info, "price", None)
    expensive = (
        price is not None and getattr(price, "known", True) and price.input >= cs.expensive_input_price
        and cs.target_reduction > 0
    )
    target = int(total * (1 - cs.target_reduction)) if expensive else None
    if total > limit:
        if target is not None and target < limit:
            return Budget(target, "fit+cost", total, limit, compress_system=True)
        return Budget(limit, "fit", total, limit)
    if target is not None and target < total:
        return Budget(target, "cost", total, limit, compress_system=True)
    return None


class _Compressor:
    def __init__(self, messages: list[dict[str, Any]], budget: int, model: Any, cs: CompressionSettings,
                 counter: TokenCounter, pm: Any, compress_system: bool):
        self.cs = cs
        self.budget = budget
        self.counter = counter
        self.provider, self.name, self.info = _model_parts(model)
        self.enc = counter._encoding(self.provider, self.name)  # same package: share its encoding lookup
        self.pm = pm
        self.compress_system = compress_system
        self.patterns = compile_patterns(cs.important_patterns)
        self._facts_cache: dict[int, list[Fact]] = {}
        self._args_cache: dict[int, list[Fact]] = {}
        self.actions: list[str] = []
        # Shallow copies: every change below builds a new dict, so the input is never modified (a full
        # deepcopy of a 100k-token history costs more than the rest of the work).
        self.work = [dict(m) for m in messages]
        self.original = messages

    def mtok(self, m: dict[str, Any]) -> int:
        enc, enc_name, _ = self.enc
        return self.counter.framed_tokens(m, enc, enc_name)

    def total(self, ms: list[dict[str, Any]]) -> int:
        return REPLY_PRIMER + sum(self.mtok(m) for m in ms)

    # -- main ----------------------------------------------------------------------------------------------
    def run(self) -> CompressionResult:
        work = self.work
        tokens = [self.mtok(m) for m in work]
        before = REPLY_PRIMER + sum(tokens)
        head_end = 0
        while head_end < len(work) and role_kind(work[head_end]) == "system":
            head_end += 1
        if self.compress_system:
            for i in range(head_end):
                c = work[i].get("content")
                if isinstance(c, str):
                    tidy = tidy_whitespace(c)
                    if tidy != c:
                        work[i] = {**work[i], "content": tidy}
                        t = self.mtok(work[i])
                        self.actions.append(f"system prompt {i}: whitespace and repeated paragraphs tidied "
                                            f"({tokens[i] - t} tokens)")
                        tokens[i] = t
        if REPLY_PRIMER + sum(tokens) <= self.budget:
            if not self.actions:
                self.actions.append(f"fits: {before:,} <= {self.budget:,} tokens; nothing removed")
            return self._result(work, before, "none")

        first_user = next((i for i, m in enumerate(work) if m.get("role") == "user"), None)
        starts = [s for s in _turn_starts(work) if first_user is None or s > first_user]
        k = self.cs.keep_recent_turns
        if k == 0:
            recent_start = len(work)
        elif len(starts) >= k:
            recent_start = starts[-k]
        else:  # fewer turns than we keep: everything after the first request stays
            recent_start = first_user + 1 if first_user is not None else head_end
        pinned = set(range(head_end)) | set(range(recent_start, len(work)))
        if first_user is not None:
            pinned.add(first_user)
        middle = [i for i in range(head_end, recent_start) if i not in pinned]
        units = _tool_units(middle, work)
        for u in units:
            u.tokens = sum(tokens[i] for i in u.idx)
        pinned_tokens = REPLY_PRIMER + sum(tokens[i] for i in pinned)
        self.pinned_tokens = pinned_tokens
        self.tokens = tokens
        self.units = units
        self.blocks: dict[int, list[Block]] = {}

        self._link_calls(units)
        self._assign_bands(units)

        self.summaries: dict[int, str] = {}
        self.hook_notes: list[str] = []
        out = None
        available = self.budget - pinned_tokens
        for attempt in range(6):
            # Token figures inside the plan are estimates; re-plan with less room until the exact count fits,
            # and on the last attempt with none (everything in the middle summarized).
            out = self._plan_and_render(available if attempt < 5 else 0)
            after = self.total(out)
            if after <= self.budget or all(u.dropped or u.fixed for u in units):
                break
            available -= (after - self.budget) + max(8, self.budget // 200)
        assert out is not None
        if self.total(out) > self.budget:
            out = self._last_resort(out, recent_start)
        summarizer = "deterministic" if self.spans or self._any_elided() else "none"
        if self.spans and self._hook_usable():
            hooked = self._try_hook()
            if hooked is not None:
                out, summarizer = hooked, "hook"
        self.actions += self.last_actions + self.hook_notes
        return self._result(out, before, summarizer)

    def _assign_bands(self, units: list[_Unit]) -> None:
        """Bands by age. The current topic runs from the newest real request in the middle (a user message of
        a few words or more, not "ok, go on") when that covers 10-50% of the middle's tokens, else from the
        newest 25%; of the rest, the newer ~45% are older topics and the remainder is bulk."""
        total = sum(u.tokens for u in units)
        if not units or not total:
            return
        cut = None
        cum = 0
        for n in range(len(units) - 1, -1, -1):
            cum += units[n].tokens
            if cum > total * _TOPIC_MAX:
                break
            m = self.work[units[n].idx[0]]
            request = m.get("role") == "user" and len(msgs.text_of(m).split()) >= _REQUEST_WORDS
            if request and cum >= total * _TOPIC_MIN:
                cut = n
                break
        if cut is None:
            cum, cut = 0, len(units)
            while cut > 0 and cum < total * _BAND_EDGES[0]:
                cut -= 1
                cum += units[cut].tokens
        rest = sum(u.tokens for u in units[:cut])
        acc = 0
        for n in range(len(units) - 1, -1, -1):
            if n >= cut:
                units[n].band = 0
                continue
            units[n].band = 1 if acc < rest * _BAND_EDGES[1] else 2
            acc += units[n].tokens

    def _any_elided(self) -> bool:
        return any(b.elided for bl in self.blocks.values() for b in bl)

    def _result(self, out: list[dict[str, Any]], before: int, summarizer: str) -> CompressionResult:
        after = self.total(out)
        saved = max(0, before - after)
        price = getattr(getattr(self.info, "price", None), "input", 0.0) or 0.0
        fits = after <= self.budget
        if not fits:
            self.actions.append(
                f"over budget: {after:,} > {self.budget:,} tokens after keeping what must be kept"
            )
        return CompressionResult(
            messages=out, before=before, after=after, actions=self.actions, budget=self.budget, fits=fits,
            tokens_saved=saved, saved_usd=saved * price / 1e6, summarizer=summarizer,
            facts_carried=getattr(self, "facts_carried", 0),
        )

    # -- planning ------------------------------------------------------------------------------------------
    def _blocks_of(self, i: int) -> list[Block]:
        if i not in self.blocks:
            self.blocks[i] = blocks_of(self.work[i], self.tokens[i] - PER_MESSAGE)
        return self.blocks[i]

    def _plan_and_render(self, available: int) -> list[dict[str, Any]]:
        units = self.units
        for u in units:
            u.dropped = False
        for bl in self.blocks.values():
            for b in bl:
                b.elided = False
        self.plan_actions: list[str] = []
        needs = [sum(u.tokens for u in units if u.band == b) for b in range(3)]
        alloc = _allocate(needs, _BAND_SHARES, available)
        for band in range(3):
            if needs[band] <= alloc[band]:
                continue
            self._shrink_band(band, alloc[band])
        return self._render()

    def _unit_tokens(self, u: _Unit) -> int:
        t = 0
        for i in u.idx:
            bl = self.blocks.get(i)
            if bl is None:
                t += self.tokens[i]
            else:
                # Planned markers not written yet count as ~60 tokens.
                t += self.tokens[i] - sum(b.tokens - est_tokens(b.marker or "x" * 180) for b in bl
                                          if b.elided)
        return t

    def _shrink_band(self, band: int, alloc: int) -> None:
        units = [u for u in self.units if u.band == band]
        have = sum(u.tokens for u in units)
        # Phase 1: the largest items first, whole, anywhere in the band.
        cands: list[tuple[int, int, int, Block]] = []
        for u in units:
            for i in u.idx:
                if self.tokens[i] < _MIN_ELIDE_TOKENS:
                    continue
                for n, b in enumerate(self._blocks_of(i)):
                    if b.kind != "prose" and b.tokens >= _MIN_ELIDE_TOKENS:
                        cands.append((-size_class(b.tokens), i, n, b))
        cands.sort(key=lambda c: c[:3])
        for _, i, _, b in cands:
            if have <= alloc:
                break
            if not b.marker:
                b.marker = marker(b, self.work[i], self._block_facts(i, b))
            b.elided = True
            have -= b.tokens - est_tokens(b.marker)
        if have <= alloc:
            return
        # Phase 2: whole exchanges, oldest first, into a summary that carries their facts.
        facts_cost = 0
        last = -1
        for n, u in enumerate(units):
            if have + _HEADER_TOKENS + facts_cost <= alloc:
                break
            if u.dropped or u.fixed:
                continue
            for g in self._drop(u):
                if g.band == band:
                    have -= self._unit_tokens(g)
                facts_cost += sum(est_tokens(f.line) for f in self._unit_facts(g))
            last = n
        # End the span before a user message when one is near: the summary then stands as its own
        # message instead of being merged into a neighbour.
        if last >= 0:
            tail: list[_Unit] = []
            for u in units[last + 1:]:
                if role_kind(self.work[u.idx[0]]) == "user":
                    if sum(self._unit_tokens(t) for t in tail) <= alloc // 4:
                        for t in tail:
                            if not t.fixed:
                                self._drop(t)
                    break
                tail.append(u)

    def _link_calls(self, units: list[_Unit]) -> None:
        """Tie each tool result to the assistant message that called it, wherever the two sit (other messages
        may stand between them): both go into a summary, or neither does, so no tool_call_id is ever left
        without its other half. A unit whose other half is kept (system, first request, recent turns) stays."""
        call_at: dict[str, int] = {}
        for i, m in enumerate(self.work):
            if role_kind(m) == "assistant":
                for tc in m.get("tool_calls") or []:
                    if isinstance(tc, dict) and tc.get("id") is not None:
                        call_at[str(tc["id"])] = i
        unit_of = {i: u for u in units for i in u.idx}
        for u in units:
            u.group = [u]
        for i, m in enumerate(self.work):
            if role_kind(m) != "tool" or m.get("tool_call_id") is None:
                continue
            a = call_at.get(str(m["tool_call_id"]))
            ua, ur = unit_of.get(a) if a is not None else None, unit_of.get(i)
            if a is None or ua is ur:
                continue
            if ua is None or ur is None:  # the other half is kept
                (ua or ur).fixed = True  # type: ignore[union-attr]
                continue
            merged = ua.group + [g for g in ur.group if g not in ua.group]
            for g in merged:
                g.group = merged
        for u in units:
            if any(g.fixed for g in u.group):
                for g in u.group:
                    g.fixed = True

    def _drop(self, u: _Unit) -> list[_Unit]:
        """Drop `u` and the units tied to it; the ones newly dropped."""
        out = [g for g in u.group if not g.dropped]
        for g in out:
            g.dropped = True
        return out

    def _block_facts(self, i: int, b: Block) -> list[str]:
        if b.kind == "image":
            return []
        if b.start >= 0:  # string content: the message's facts, scanned once, that fall inside the block
            end = b.start + len(b.text)
            fs = [f for f in self._msg_facts(i) if b.start <= f.pos < end]
        else:
            fs = find_facts(b.text, self.patterns, i)
        fs.sort(key=lambda f: f.prio)
        seen: list[str] = []
        for f in fs:
            if f.line not in seen:
                seen.append(f.line)
            if len(seen) >= _FACTS_PER_BLOCK:
                break
        return seen

    def _msg_facts(self, i: int) -> list[Fact]:
        if i not in self._facts_cache:
            self._facts_cache[i] = find_facts(msgs.text_of(self.original[i]), self.patterns, i)
        return self._facts_cache[i]

    def _unit_facts(self, u: _Unit) -> list[Fact]:
        out = []
        for i in u.idx:
            out += self._msg_facts(i)
            if i not in self._args_cache:
                fs = []
                for tc in self.original[i].get("tool_calls") or []:
                    args = ((tc or {}).get("function") or {}).get("arguments")
                    if isinstance(args, str):
                        # Ranked just below the same pattern in the conversation's own words.
                        fs += [Fact(f.prio, i, f"{call_name(tc)} called with {f.line}", weak=True)
                               for f in find_facts(args, self.patterns, i)]
                self._args_cache[i] = fs
            out += self._args_cache[i]
        return out

    # -- rendering -----------------------------------------------------------------------------------------
    def _rebuild(self, i: int) -> dict[str, Any]:
        m = self.work[i]
        bl = self.blocks.get(i)
        if not bl or not any(b.elided for b in bl):
            return m
        new = dict(m)
        parts: dict[int, list[str]] = {}
        for b in bl:
            if b.part <= -2:
                continue
            parts.setdefault(b.part, []).append(b.marker if b.elided else b.text)
        if -1 in parts:
            new["content"] = "".join(parts[-1])
        elif isinstance(m.get("content"), list):
            content = []
            for k, p in enumerate(m["content"]):
                if k in parts:
                    content.append({**p, "text": "".join(parts[k])} if "text" in p else
                                   {"type": "text", "text": "".join(parts[k])})
                else:
                    content.append(p)
            new["content"] = content
        calls = m.get("tool_calls")
        if calls:
            calls = [dict(tc) for tc in calls]
            for b in bl:
                if b.part <= -2 and b.elided:
                    j = -b.part - 2
                    fn = dict(calls[j].get("function") or {})
                    # Arguments stay valid JSON so providers that parse them (Anthropic) accept the call.
                    note = f"arguments of {b.label}: {len(b.text):,} chars, ~{b.tokens:,} tokens"
                    fn["arguments"] = json.dumps({"_elided": note})
                    calls[j] = {**calls[j], "function": fn}
            new["tool_calls"] = calls
        return new

    def _render(self) -> list[dict[str, Any]]:
        self.render_actions: list[str] = []
        dropped = {i for u in self.units if u.dropped for i in u.idx}
        unit_of = {i: u for u in self.units for i in u.idx}
        out: list[dict[str, Any]] = []
        spans: list[list[_Unit]] = []
        placeholders: list[int] = []
        i = 0
        n = len(self.work)
        while i < n:
            if i in dropped:
                span: list[_Unit] = []
                while i < n and i in dropped:
                    u = unit_of[i]
                    span.append(u)
                    i = u.idx[-1] + 1
                spans.append(span)
                placeholders.append(len(out))
                out.append({})  # filled below
                continue
            out.append(self._rebuild(i))
            i += 1
        # Facts: ranked globally (most important pattern first, then newest) under the facts cap.
        all_facts: list[tuple[Fact, int]] = []
        for s, span in enumerate(spans):
            for u in span:
                all_facts += [(f, s) for f in self._unit_facts(u)]
        # What the kept messages leave; the facts cap never takes more (the newest turns come first).
        room = self.budget - self.total([m for m in out if m]) - _HEADER_TOKENS * len(spans)
        cap = min(int(self.budget * self.cs.facts_share), max(0, room))
        chosen: dict[int, list[Fact]] = {s: [] for s in range(len(spans))}
        seen: set[str] = set()
        used = 0
        dropped_facts = 0
        for f, s in sorted(all_facts, key=lambda fs: (fs[0].weak, fs[0].prio, -fs[0].order)):
            if f.line in seen:
                continue
            seen.add(f.line)
            cost = est_tokens(f.line)
            if used + cost > cap:
                dropped_facts += 1
                continue
            used += cost
            chosen[s].append(f)
        self.facts_carried = sum(len(v) for v in chosen.values())
        self.spans = []
        # Gist budget: what the band allocations leave after kept content and facts.
        leftover = room - used
        for s, span in enumerate(spans):
            facts = [f.line for f in sorted(chosen[s], key=lambda f: f.order)]
            gist_budget = max(0, leftover // max(1, len(spans) - s)) if leftover > 0 else 0
            text, gist_used = self._digest(span, facts, gist_budget, self.summaries.get(s))
            leftover -= gist_used
            self.spans.append({"units": span, "facts": facts, "gist_budget": gist_budget})
            out[placeholders[s]] = {"role": "user", "content": text, "_agent_router_summary": s}
        if dropped_facts:
            self.render_actions.append(
                f"{dropped_facts} lower-priority fact lines not carried (facts cap {cap:,} tokens)"
            )
        out = self._place_summaries(out)
        self._note_actions(spans)
        return out

    def _digest(self, span: list[_Unit], facts: list[str], budget: int, summary: str | None = None
                ) -> tuple[str, int]:
        idx = [i for u in span for i in u.idx]
        toks = sum(self.tokens[i] for i in idx)
        n_code = sum(1 for i in idx if self.original[i].get("role") not in ("tool", "function")
                     for k, _, _ in split_text(msgs.text_of(self.original[i])) if k == "code")
        n_tool = sum(1 for i in idx if role_kind(self.original[i]) == "tool")
        held = [f"{n} {w}" for n, w in ((n_code, "code blocks"), (n_tool, "tool results")) if n]
        head = (f"[Earlier conversation compressed by agent-router: {len(idx)} messages (~{toks:,} tokens"
                f"{'; ' + ', '.join(held) if held else ''}) replaced by this digest.]")
        if summary is not None:
            lines = [head, "Summary:", summary]
            if facts:
                lines += ["Facts carried over:", *[f"- {f}" for f in facts]]
            return "\n".join(lines), est_tokens(summary)
        gists: list[tuple[int, int, str]] = []  # (priority, index, line)
        seen_gists: set[str] = set()
        for i in idx:
            m = self.original[i]
            role = m.get("role")
            text = msgs.text_of(m)
            prose = "".join(p for k, p, _ in split_text(text) if k == "prose") if role != "tool" else ""
            # A user's own words are the scarcest context: up to a few sentences; an assistant's first one.
            g = gist(prose, _USER_GIST_CHARS, fill=True) if role == "user" else gist(prose, _GIST_CHARS)
            if len(g.split()) < 4 or g in seen_gists:
                g = ""  # "ok, continue" says nothing a summary needs
            seen_gists.add(g)
            if role == "user" and g:
                gists.append((0, i, f'- user: "{g}"'))
            elif role == "assistant":
                if g:
                    gists.append((1, i, f'- assistant: "{g}"'))
                names = [call_name(tc) for tc in m.get("tool_calls") or []]
                if names:
                    gists.append((2, i, f"- assistant called {', '.join(names)}"))
            elif role in ("tool", "function"):
                gists.append((3, i, f"- result of {m.get('name') or 'tool'} ({len(text):,} chars) removed"))
            if role != "tool":
                for k, p, label in split_text(text):
                    if k == "code":
                        body = p.split("\n", 1)[1] if "\n" in p else ""
                        gists.append((2, i, f"- code block removed: {label or 'code'}, "
                                            f"{p.count(chr(10)) + 1} lines; starts \"{first_line(body)}\""))
        picked = []
        used = 0
        for g in sorted(gists, key=lambda g: (g[0], -g[1])):
            c = est_tokens(g[2])
            if used + c > budget:
                continue
            used += c
            picked.append(g)
        lines = [head]
        if facts:
            lines.append("Facts carried over:")
            lines += [f"- {f}" for f in facts]
        if picked:
            lines.append("Digest:")
            lines += [g[2] for g in sorted(picked, key=lambda g: g[1])]
        return "\n".join(lines), used

    def _place_summaries(self, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Give each summary a role its neighbours allow, or merge it into a neighbour when none does."""
        res: list[dict[str, Any]] = []
        for k, m in enumerate(out):
            if "_agent_router_summary" not in m:
                res.append(m)
                continue
            text = m["content"]
            prev = res[-1] if res else None
            nxt = out[k + 1] if k + 1 < len(out) else None
            p, n = role_kind(prev), role_kind(nxt)
            role = None
            for r in ("user", "assistant"):
                if r == p or r == n or (p in (None, "system") and r != "user"):
                    continue
                role = r
                break
            if role is not None:
                res.append({"role": role, "content": text})
            elif prev is not None and p in ("user", "assistant") and not prev.get("tool_calls"):
                res[-1] = append_text(prev, text)
                self.render_actions.append("summary appended to the preceding message (no valid own role)")
            elif nxt is not None and n in ("user", "assistant") and "_agent_router_summary" not in nxt:
                out[k + 1] = prepend_text(nxt, text)
                self.render_actions.append("summary put before the following message (no valid own role)")
            else:
                res.append({"role": "user", "content": text})
        return res

    def _note_actions(self, spans: list[list[_Unit]]) -> None:
        acts = self.plan_actions + self.render_actions
        for band in range(3):
            els = [b for u in self.units if u.band == band for i in u.idx for b in self.blocks.get(i, [])
                   if b.elided]
            if els:
                kinds: dict[str, int] = {}
                for b in els:
                    kinds[b.kind] = kinds.get(b.kind, 0) + 1
                desc = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
                size = sum(b.tokens for b in els)
                acts.append(f"{_BAND_NAMES[band]}: elided {len(els)} blocks ({desc}; ~{size:,} tokens)")
            drops = [u for u in self.units if u.band == band and u.dropped]
            if drops:
                acts.append(f"{_BAND_NAMES[band]}: {sum(len(u.idx) for u in drops)} messages summarized")
        self.last_actions = acts

    def _last_resort(self, out: list[dict[str, Any]], recent_start: int) -> list[dict[str, Any]]:
        """Everything compressible is gone and it still does not fit: elide big blocks of the recent turns,
        except the newest turn, largest first. System prompt, first request and newest turn stay."""
        starts = _turn_starts(self.work)
        newest = starts[-1] if starts else len(self.work)
        cands = []
        for i in range(recent_start, newest):
            for n, b in enumerate(self._blocks_of(i)):
                if b.kind != "prose" and b.tokens >= _MIN_ELIDE_TOKENS:
                    cands.append((-size_class(b.tokens), i, n, b))
        if not cands:
            return out
        cands.sort(key=lambda c: c[:3])
        over = self.total(out) - self.budget
        elided = 0
        for _, i, _, b in cands:
            if over <= 0:
                break
            if not b.marker:
                b.marker = marker(b, self.work[i], self._block_facts(i, b))
            b.elided = True
            over -= b.tokens - est_tokens(b.marker)
            elided += 1
        self.plan_actions.append(f"recent turns exceed the budget: elided {elided} large blocks in them "
                                 "(newest turn kept verbatim)")
        return self._render()

    # -- summaries through the hook ----------------------------------------------------------------------
    def _hook_usable(self) -> bool:
        if not self.cs.summarize or self.pm is None:
            return False
        impls = self.pm.hook.summarize.get_hookimpls()
        if not impls:
            return False
        builtin = "agent_router.builtins.summarize"
        only_builtin = all(getattr(h.plugin, "__name__", "") == builtin for h in impls)
        return not (only_builtin and get_utility_caller() is None)

    def _try_hook(self) -> list[dict[str, Any]] | None:
        """Ask the summarize hook for each span; the re-rendered messages, or None to keep the digest."""
        resting = BREAKER.resting()
        if resting:
            self.hook_notes.append(f"summarizer skipped: it {resting}; deterministic digest used")
            return None
        deadline = time.monotonic() + self.cs.summarize_timeout_s
        for s, sp in enumerate(self.spans):
            if sp["gist_budget"] < 48:
                continue  # too little room for a summary to say more than the header and facts
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.hook_notes.append("summary skipped: summarize timeout used up; digest kept")
                break
            span_msgs = [self.original[i] for u in sp["units"] for i in u.idx]
            key = span_key(span_msgs)
            summary = SUMMARIES.get(key)
            if summary is not None and est_tokens(summary) <= sp["gist_budget"] * 1.5:
                err = ""
                self.hook_notes.append("summary reused (same span as an earlier call)")
            else:
                summary, err = call_hook(self.pm, span_msgs, sp["gist_budget"], remaining)
            if summary is None:
                self.hook_notes.append(f"summary {err}; deterministic digest kept")
                if err.startswith(("timed out", "failed")):
                    # One stall or failure is enough: never wait twice in one call, nor on the next ones.
                    BREAKER.trip(err, self.cs.summarize_retry_after_s)
                    break
                continue
            if summary.count("```") % 2 or est_tokens(summary) > sp["gist_budget"] * 1.5:
                self.hook_notes.append("summary from the hook rejected (too long or an unbalanced code "
                                       "fence); deterministic digest kept")
                continue
            self.summaries[s] = summary.strip()
            SUMMARIES.put(key, self.summaries[s])
        if not self.summaries:
            return None
        out = self._render()
        if self.total(out) > self.budget:
            self.hook_notes.append("hook summaries did not fit the budget; deterministic digest kept")
            self.summaries = {}
            self._render()
            return None
        return out


def compress(
    messages: list[dict[str, Any]],
    budget_tokens: int | Budget,
    model: Any = None,
    *,
    settings: Settings | CompressionSettings | None = None,
    counter: TokenCounter | None = None,
    pm: Any = None,
    compress_system: bool | None = None,
    utility_caller: UtilityCaller | None = None,
) -> CompressionResult:
    """Fit `messages` into `budget_tokens` (an int, or a `Budget` from `plan_budget`).

    `model` is a catalog ModelInfo (its encoding counts tokens, its input price values the saving), a model
    name, or None. `pm` is a pluggy manager whose `summarize` hook writes summaries; by default the loaded
    plugins when ``settings.summarize`` is on. `utility_caller` (fn(system, message, timeout_s) -> text) is
    what the built-in summarizer asks for summaries during this call. The input is never modified; unchanged
    messages in the result are shallow copies (nested lists such as ``tool_calls`` are shared with the input).
    """
    msgs.validate(messages)
    if isinstance(budget_tokens, Budget):
        tokens = budget_tokens.tokens
        if compress_system is None:
            compress_system = budget_tokens.compress_system
    else:
        if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int):
            raise InputError(f"budget: expected a whole number of tokens, got {budget_tokens!r}")
        tokens = budget_tokens
    if tokens <= 0:
        raise InputError(f"budget: must be a positive number of tokens, got {tokens}")
    cs = _settings_of(settings)
    if pm is None and cs.summarize:
        from ..plugins import load_plugins

        pm = load_plugins()
    c = _Compressor(messages, tokens, model, cs, counter or TokenCounter(), pm, bool(compress_system))
    if utility_caller is None:
        return c.run()
    token = utility_caller_var.set(utility_caller)
    try:
        return c.run()
    finally:
        utility_caller_var.reset(token)
