"""`agent-router serve`: an OpenAI- and Anthropic-compatible gateway that routes each request through the same
pipeline as the in-process hooks (route, compress, budget, call with failover, ledger), with virtual keys, a
management API and a live cost dashboard. See docs/gateway.md."""

from __future__ import annotations

from .core import Gateway, conversation_id
from .server import serve

__all__ = ["Gateway", "conversation_id", "serve"]
