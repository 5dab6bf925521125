"""Token usage from provider payloads, normalized to one convention.

Convention of `Usage` (the same as `Catalog.cost`): `input` counts every prompt token, cached reads and cache
writes included; `output` counts every generated token, reasoning included. Providers disagree:

- OpenAI-compatible: `prompt_tokens` already includes `prompt_tokens_details.cached_tokens`;
  `completion_tokens` already includes `completion_tokens_details.reasoning_tokens`. (Responses API:
  `input_tokens` / `output_tokens` with `input_tokens_details` / `output_tokens_details`, same inclusion.)
- Anthropic: `input_tokens` EXCLUDES `cache_read_input_tokens` and `cache_creation_input_tokens`; add them.
  In a stream, `message_start` carries the input side and `message_delta.usage.output_tokens` is cumulative,
  so the last value is the total (summing would double count).
- Gemini: `promptTokenCount` includes `cachedContentTokenCount`; `candidatesTokenCount` EXCLUDES
  `thoughtsTokenCount`, so output = candidates + thoughts. Streamed chunks carry cumulative `usageMetadata`.

Why not `genai_prices.extract_usage`: it maps whole non-streamed responses well (tests check that we
agree with it), but it raises for a model missing from its table (local and OpenAI-compatible servers) and
for streamed events (an Anthropic `message_delta` has no `input_tokens`), and it needs an API flavor per
provider. The ledger must record every call, so this module normalizes the payload and the catalog prices it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from .errors import AgentRouterError

TokenSource = Literal["provider", "counted", "estimated"]
TOKEN_SOURCES: tuple[str, ...] = ("provider", "counted", "estimated")
_ANTHROPIC = ("anthropic", "claude")
_GEMINI = ("gemini", "google", "vertex", "vertex_ai")


class UsageError(AgentRouterError):
    """A usage payload that cannot be read (wrong shape, negative or non-numeric counts)."""


@dataclass(frozen=True)
class Usage:
    """Tokens of one call. `input` includes cached reads and cache writes; `output` includes reasoning."""

    input: int = 0
    output: int = 0
    cached_input: int = 0
    cache_write: int = 0
    reasoning: int = 0
    source: str = "provider"

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input", "cache_write", "reasoning"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise UsageError(f"usage.{name}: expected a non-negative integer, got {v!r}")
        if self.cached_input + self.cache_write > self.input:
            raise UsageError(
                f"usage: cached_input ({self.cached_input}) + cache_write ({self.cache_write}) exceed input "
                f"({self.input}); input must include cached tokens"
            )
        if self.reasoning > self.output:
            raise UsageError(f"usage: reasoning ({self.reasoning}) exceeds output ({self.output})")
        if self.source not in TOKEN_SOURCES:
            raise UsageError(f"usage.source: expected one of {', '.join(TOKEN_SOURCES)}, got {self.source!r}")

    @property
    def fresh_input(self) -> int:
        """Input tokens billed at the full input price."""
        return self.input - self.cached_input - self.cache_write

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get(obj: Any, *path: str) -> Any:
    """Walk dicts or attribute objects (SDK response objects) along `path`; None when absent."""
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return obj


def _int(v: Any, where: str) -> int:
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v != int(v):
        raise UsageError(f"{where}: expected a non-negative whole number, got {v!r}")
    return int(v)


def _as_mapping(payload: Any) -> Any:
    # SDK objects (pydantic models) expose model_dump(); plain dicts pass through.
    dump = getattr(payload, "model_dump", None)
    return dump() if callable(dump) else payload


def from_openai(u: Any) -> Usage:
    """An OpenAI-compatible `usage` object (Chat Completions or Responses API)."""
    u = _as_mapping(u)
    if _get(u, "prompt_tokens") is not None or _get(u, "completion_tokens") is not None:
        inp = _int(_get(u, "prompt_tokens"), "usage.prompt_tokens")
        out = _int(_get(u, "completion_tokens"), "usage.completion_tokens")
        cached = _int(
            _get(u, "prompt_tokens_details", "cached_tokens"), "usage.prompt_tokens_details.cached_tokens"
        )
        if not cached:  # DeepSeek reports its cache hits (inside prompt_tokens) under its own name
            cached = _int(_get(u, "prompt_cache_hit_tokens"), "usage.prompt_cache_hit_tokens")
        reasoning = _int(
            _get(u, "completion_tokens_details", "reasoning_tokens"),
            "usage.completion_tokens_details.reasoning_tokens",
        )
    else:
        inp = _int(_get(u, "input_tokens"), "usage.input_tokens")
        out = _int(_get(u, "output_tokens"), "usage.output_tokens")
        cached = _int(
            _get(u, "input_tokens_details", "cached_tokens"), "usage.input_tokens_details.cached_tokens"
        )
        reasoning = _int(
            _get(u, "output_tokens_details", "reasoning_tokens"),
            "usage.output_tokens_details.reasoning_tokens",
        )
    # Some compatible servers report reasoning outside completion_tokens; never let it exceed output.
    return Usage(input=inp, output=max(out, reasoning), cached_input=min(cached, inp), reasoning=reasoning)


def from_anthropic(u: Any) -> Usage:
    """An Anthropic `usage` object: cache reads and writes are added to `input_tokens`."""
    u = _as_mapping(u)
    base = _int(_get(u, "input_tokens"), "usage.input_tokens")
    read = _int(_get(u, "cache_read_input_tokens"), "usage.cache_read_input_tokens")
    write = _int(_get(u, "cache_creation_input_tokens"), "usage.cache_creation_input_tokens")
    out = _int(_get(u, "output_tokens"), "usage.output_tokens")
    return Usage(input=base + read + write, output=out, cached_input=read, cache_write=write)


def from_gemini(u: Any) -> Usage:
    """A Gemini `usageMetadata` object (camelCase as on the wire, or snake_case as in the SDK)."""
    u = _as_mapping(u)

    def pick(camel: str, snake: str) -> int:
        v = _get(u, camel)
        return _int(v if v is not None else _get(u, snake), f"usageMetadata.{camel}")

    prompt = pick("promptTokenCount", "prompt_token_count")
    cached = pick("cachedContentTokenCount", "cached_content_token_count")
    candidates = pick("candidatesTokenCount", "candidates_token_count")
    thoughts = pick("thoughtsTokenCount", "thoughts_token_count")
    # Tool-use prompt tokens are billed as input.
    tool_prompt = pick("toolUsePromptTokenCount", "tool_use_prompt_token_count")
    return Usage(
        input=prompt + tool_prompt,
        output=candidates + thoughts,
        cached_input=min(cached, prompt),
        reasoning=thoughts,
    )


def family(provider: str) -> str:
    """'anthropic', 'gemini' or 'openai' (every OpenAI-compatible provider)."""
    p = provider.lower()
    if p.startswith(_ANTHROPIC):
        return "anthropic"
    if p.startswith(_GEMINI):
        return "gemini"
    return "openai"


def normalize(payload: Any, provider: str) -> Usage:
    """Usage from a whole response or its usage object, for `provider` (its wire family decides the rules)."""
    payload = _as_mapping(payload)
    fam = family(provider)
    if fam == "gemini":
        meta = _get(payload, "usageMetadata") or _get(payload, "usage_metadata") or payload
        return from_gemini(meta)
    # A whole response has `usage`; an Anthropic message_start event nests it in `message`.
    u = _get(payload, "usage") or _get(payload, "message", "usage") or payload
    if not isinstance(u, dict):
        raise UsageError(f"{provider}: no usage object in the response (got {type(u).__name__})")
    return from_anthropic(u) if fam == "anthropic" else from_openai(u)


class StreamUsage:
    """Accumulates usage over a streamed response's events; `usage()` gives the total.

    Anthropic: input side from `message_start`, output from the LAST `message_delta` (cumulative counts).
    Gemini: every chunk's `usageMetadata` is cumulative; the last one wins.
    OpenAI-compatible: the final chunk carries `usage` (with stream_options.include_usage); the last wins.
    """

    def __init__(self, provider: str):
        self.provider = provider
        self.family = family(provider)
        self._start: dict[str, Any] = {}
        self._last: Any = None

    def feed(self, event: Any) -> None:
        event = _as_mapping(event)
        if not isinstance(event, dict):
            return
        if self.family == "anthropic":
            if event.get("type") == "message_start":
                self._start = dict(_get(event, "message", "usage") or {})
            elif event.get("type") == "message_delta" and isinstance(event.get("usage"), dict):
                self._last = event["usage"]
        elif self.family == "gemini":
            meta = event.get("usageMetadata") or event.get("usage_metadata")
            if meta:
                self._last = meta
        elif event.get("usage"):
            self._last = event["usage"]

    @property
    def seen(self) -> bool:
        return bool(self._start) or self._last is not None

    def usage(self) -> Usage:
        if not self.seen:
            raise UsageError(f"{self.provider}: the stream carried no usage")
        if self.family == "anthropic":
            merged = dict(self._start)
            # message_delta may repeat input-side counts; the delta's values are the final ones.
            merged.update({k: v for k, v in (self._last or {}).items() if v is not None})
            return from_anthropic(merged)
        if self.family == "gemini":
            return from_gemini(self._last)
        return from_openai(self._last)


def counted(input_tokens: int, output_tokens: int, source: str = "counted") -> Usage:
    """Usage we counted (tokenizer) or estimated ourselves, when the provider reported none."""
    return Usage(input=int(input_tokens), output=int(output_tokens), source=source)
