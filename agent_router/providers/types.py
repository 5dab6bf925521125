"""What every provider call returns, and the errors it raises, whatever the wire format. `Completion.usage`
is agent_router.usage.Usage, the one token-count type (re-exported here for old imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import AgentRouterError
from ..usage import Usage
from .keys import redact

# Error kinds, as recorded in attempt records (`error_kind`) and carried by ProviderError.kind.
TIMEOUT = "timeout"
CONNECT = "connect"  # refused, reset, DNS: the request may not have reached the model
SERVER = "server"  # 5xx, 529 overloaded
RATE_LIMIT = "rate_limit"  # 429, or our own per-model limit reached
AUTH = "auth"  # 401/403, invalid key
CONTEXT_LENGTH = "context_length"
CONTENT_POLICY = "content_policy"
BAD_REQUEST = "bad_request"  # 4xx that another model would reject too
NOT_FOUND = "not_found"  # unknown model / endpoint
MALFORMED = "malformed"  # a 2xx whose body is not the wire format
STREAM_BROKEN = "stream_broken"
CANCELLED = "cancelled"  # the caller stopped reading a stream; recorded with what was generated so far
NO_KEY = "no_key"
COOLDOWN = "cooldown"

# Kinds worth another try on the same model (after a wait), and kinds that move on to the next model. A timeout
# is not retried: the model just used a whole time budget, so the next model gets the time left.
RETRYABLE = frozenset({CONNECT, SERVER, RATE_LIMIT, MALFORMED})
FAILOVER = frozenset(
    {
        TIMEOUT,
        CONNECT,
        SERVER,
        RATE_LIMIT,
        MALFORMED,
        CONTEXT_LENGTH,
        CONTENT_POLICY,
        AUTH,
        NOT_FOUND,
        NO_KEY,
        COOLDOWN,
        STREAM_BROKEN,
    }
)
# Kinds that say the model (not this request) is unwell; they count toward its cooldown.
UNHEALTHY = frozenset({TIMEOUT, CONNECT, SERVER, RATE_LIMIT, MALFORMED, STREAM_BROKEN})


class ProviderError(AgentRouterError):
    """A provider call failed. `kind` is one of the kinds above; the message never holds an API key."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        model: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        attempts: list[dict[str, Any]] | None = None,
    ):
        self.kind = kind
        self.model = model
        self.status = status
        self.retry_after = retry_after
        self.attempts = attempts or []
        where = f"{model}: " if model else ""
        code = f" (HTTP {status})" if status else ""
        # Servers echo refused keys in their messages; no key may reach our error text.
        super().__init__(redact(f"{where}{kind}{code}: {message}"))


class StreamBroken(ProviderError):
    """A stream stopped before its end marker; the text received so far is in `partial`."""

    def __init__(self, message: str, *, model: str | None = None, partial: str = "", **kw: Any):
        super().__init__(STREAM_BROKEN, message, model=model, **kw)
        self.partial = partial


class AllModelsFailed(ProviderError):
    """Every model of the fallback chain failed; `attempts` holds the record of each try."""


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI gives it

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class Completion:
    """One normalized model response."""

    text: str
    tool_calls: list[ToolCall]
    finish_reason: str  # stop | length | tool_calls | content_filter | other
    usage: Usage
    model: str  # the model the server says answered
    alias: str = ""
    provider: str = ""
    latency_ms: float = 0.0
    ttft_ms: float | None = None  # streams: time to the first delta
    attempts: list[dict[str, Any]] = field(default_factory=list)
    raw: Any = None

    def message(self) -> dict[str, Any]:
        """The reply as an OpenAI chat message, ready to append to the history."""
        m: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            m["tool_calls"] = [t.to_openai() for t in self.tool_calls]
        return m


@dataclass
class Delta:
    """One piece of a stream: text, a finished tool call, or (last) the whole `completion`."""

    text: str = ""
    tool_call: ToolCall | None = None
    completion: Completion | None = None


@dataclass
class Request:
    """What to ask, in our internal (OpenAI chat) shape; each wire module converts it."""

    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    json_mode: bool = False
    stop: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # merged into the wire body as is
