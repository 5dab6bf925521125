"""Calling model APIs directly: OpenAI-compatible, Anthropic and Gemini wire formats over httpx, with
retries, rate limits, key rotation, health and failover (`ProviderClient`), and a speech-to-text pool
(`TranscriptionPool`)."""

from .aio import AsyncProviderClient
from .client import ProviderClient
from .keys import redact
from .state import MemoryState, StateStore
from .transcription import Transcript, TranscriptionPool
from .types import AllModelsFailed, Completion, Delta, ProviderError, StreamBroken, ToolCall, Usage

__all__ = [
    "AllModelsFailed",
    "AsyncProviderClient",
    "Completion",
    "Delta",
    "MemoryState",
    "ProviderClient",
    "ProviderError",
    "StateStore",
    "StreamBroken",
    "ToolCall",
    "Transcript",
    "TranscriptionPool",
    "Usage",
    "redact",
]
