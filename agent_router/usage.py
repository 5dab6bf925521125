"""Token usage from provider payloads, normalized to one convention.

Convention of `Usage` (the same as `Catalog.cost`): `input` counts every prompt token, cached reads and cache
writes included; `output` counts every generated token, reasoning included. Providers disagree:

- OpenAI-compatible: `prompt_tokens` already includes `prompt_tokens_details.cached_tokens`;
  `completion_tokens` already includes `completion_tokens_details.reasoning_tokens`. (Responses API:
  `input_tokens` / `output_tokens` with `input_tokens_details` / `output_tokens_details`, same inclusion.)
- Anthropic: `input_tokens` EXCLUDES `cache_read_input_tokens` and `cache_creation_input_tokens`; add them.
  In a stream, `message_start` carries the input side and `message_delta.usage.output_tokens` is cumulative,
  so the last value is the total (summing would double count).
- Gemini: `promptTokenCount` includes `cachedContentTokenCount`, but not `toolUsePromptTokenCount` (the
  tool results the server fed back to the model, billed as input): input = prompt + tool-use prompt.
  `candidatesTokenCount` EXCLUDES `thoughtsTokenCount`, so output = candidates + thoughts
  (`totalTokenCount` = prompt + tool-use prompt + candidates + thoughts). Streamed chunks carry cumulative
  `usageMetadata`.

Servers' counts are not always consistent (reasoning above output, cached above input). A paid call must be
recorded whatever its payload says, so `Usage.reported` (which every parser here uses) settles such counts
instead of raising: output is at least reasoning, cached reads and writes fit inside input. The plain
constructor stays strict, for counts a program makes itself. This module is the one place payloads are read:
the provider client's wire formats parse through `from_openai` / `from_anthropic` / `from_gemini` too.

Why not `genai_prices.extract_usage`: it maps whole non-streamed responses well (tests check that we
agree with it), but it raises for a model missing from its table (local and OpenAI-compatible servers) and
for streamed events (an Anthropic `message_delta` has no `input_tokens`), and it needs an API flavor per
provider. The ledger must record every call, so this module normalizes the payload and the catalog prices it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .errors import AgentRouterError

TokenSource = Literal["provider", "counted", "estimated"]
TOKEN_SOURCES: tuple[str, ...] = ("provider", "counted", "estimated")
_ANTHROPIC = ("anthropic", "claude")
_GEMINI = ("gemini", "google", "vertex", "vertex_ai")


class UsageError(AgentRouterError, ValueError):
    """A usage payload that cannot be read (wrong shape, negative or non-numeric counts). `path` names the
    JSON path of the bad value when there is one."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


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

    @classmethod
    def reported(
        cls,
        input: int = 0,  # noqa: A002 - the field's name
        output: int = 0,
        cached_input: int = 0,
        cache_write: int = 0,
        reasoning: int = 0,
        source: str = "provider",
    ) -> Usage:
        """Counts as a server (or an attempt record) reported them, settled into this type's convention
        instead of refused: output is at least reasoning (some servers count reasoning outside the completion),
        cached reads then cache writes are cut to fit input, an unknown source reads as "estimated". Counts
        must still be non-negative whole numbers (`count`)."""
        inp = count(input, "usage.input")
        read = min(count(cached_input, "usage.cached_input"), inp)
        write = min(count(cache_write, "usage.cache_write"), inp - read)
        think = count(reasoning, "usage.reasoning")
        return cls(
            input=inp,
            output=max(count(output, "usage.output"), think),
            cached_input=read,
            cache_write=write,
            reasoning=think,
            source=source if source in TOKEN_SOURCES else "estimated",
        )

    # The provider client's former field names, kept so `Completion.usage.input_tokens` reads as before.
    @property
    def input_tokens(self) -> int:
        return self.input

    @property
    def output_tokens(self) -> int:
        return self.output

    @property
    def cached_input_tokens(self) -> int:
        return self.cached_input

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write

    @property
    def reasoning_tokens(self) -> int:
        return self.reasoning

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


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return {list: "an array", dict: "an object"}.get(type(v), type(v).__name__)


def count(v: Any, where: str) -> int:
    """A token count: a non-negative whole number (12 or 12.0); absent/null -> 0. Raises UsageError naming
    `where` and the JSON type found (never the value: it may be a megabyte of hostile text)."""
    if type(v) is int and v >= 0:  # the usual case first
        return v
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise UsageError(f"{where}: expected a number, got {json_type(v)}", where)
    if isinstance(v, float) and (not math.isfinite(v) or v != int(v)):
        raise UsageError(f"{where}: expected a whole number, got {json_type(v)}", where)
    if v < 0:
        raise UsageError(f"{where}: expected a non-negative number, got {json_type(v)}", where)
    return int(v)


def _obj(v: Any, where: str) -> Any:
    """A nested usage object (dict or SDK object); absent/null -> {}."""
    if v is None:
        return {}
    if isinstance(v, bool | int | float | str | list):
        raise UsageError(f"{where}: expected an object, got {json_type(v)}", where)
    return v


def _as_mapping(payload: Any) -> Any:
    # SDK objects (pydantic models) expose model_dump(); plain dicts pass through.
    dump = getattr(payload, "model_dump", None)
    return dump() if callable(dump) else payload


def from_openai(u: Any, path: str = "usage") -> Usage:
    """An OpenAI-compatible `usage` object (Chat Completions or Responses API). `path` names it in errors."""
    if type(u) is dict:  # the usual body: two plain counts and nothing else to read (the general path's answer)
        inp, out = u.get("prompt_tokens"), u.get("completion_tokens")
        if (type(inp) is int and type(out) is int and inp >= 0 and out >= 0 and u.get("prompt_tokens_details") is None
                and u.get("completion_tokens_details") is None and u.get("prompt_cache_hit_tokens") is None):
            return Usage(input=inp, output=out)
    u = _obj(_as_mapping(u), path)

    def n(*keys: str) -> int:
        v = _get(u, *keys)
        if type(v) is int and v >= 0:  # the usual count (an int only comes out through objects)
            return v
        if v is None and _get(u, keys[0]) is None:  # absent, as is its object if it has one
            return 0
        return count(_get(_obj(_get(u, *keys[:-1]), ".".join((path, *keys[:-1]))), keys[-1]),
                     ".".join((path, *keys)))

    if _get(u, "prompt_tokens") is not None or _get(u, "completion_tokens") is not None:
        inp, out = n("prompt_tokens"), n("completion_tokens")
        # DeepSeek reports its cache hits (inside prompt_tokens) under its own name.
        cached = n("prompt_tokens_details", "cached_tokens") or n("prompt_cache_hit_tokens")
        reasoning = n("completion_tokens_details", "reasoning_tokens")
    else:
        inp, out = n("input_tokens"), n("output_tokens")
        cached = n("input_tokens_details", "cached_tokens")
        reasoning = n("output_tokens_details", "reasoning_tokens")
    return Usage.reported(input=inp, output=out, cached_input=cached, reasoning=reasoning)


def from_anthropic(u: Any, path: str = "usage") -> Usage:
    """An Anthropic `usage` object: cache reads and writes are added to `input_tokens`."""
    u = _obj(_as_mapping(u), path)

    def n(key: str) -> int:
        return count(_get(u, key), f"{path}.{key}")

    read, write = n("cache_read_input_tokens"), n("cache_creation_input_tokens")
    return Usage.reported(
        input=n("input_tokens") + read + write, output=n("output_tokens"), cached_input=read, cache_write=write
    )


def from_gemini(u: Any, path: str = "usageMetadata") -> Usage:
    """A Gemini `usageMetadata` object (camelCase as on the wire, or snake_case as in the SDK)."""
    u = _obj(_as_mapping(u), path)

    def n(camel: str, snake: str) -> int:
        v = _get(u, camel)
        return count(v if v is not None else _get(u, snake), f"{path}.{camel}")

    prompt = n("promptTokenCount", "prompt_token_count")  # includes the cached content
    thoughts = n("thoughtsTokenCount", "thoughts_token_count")  # not inside candidatesTokenCount
    return Usage.reported(
        # Tool-use prompt tokens are not inside promptTokenCount, and are billed as input.
        input=prompt + n("toolUsePromptTokenCount", "tool_use_prompt_token_count"),
        output=n("candidatesTokenCount", "candidates_token_count") + thoughts,
        cached_input=n("cachedContentTokenCount", "cached_content_token_count"),
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
        raise UsageError(f"{provider}: no usage object in the response (got {json_type(u)})")
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
    return Usage.reported(input=input_tokens, output=output_tokens, source=source)
