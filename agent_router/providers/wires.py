"""Which wire format and endpoint a configured model uses, and what a wire's stream parser holds so far."""

from __future__ import annotations

from typing import Any

from ..catalog import ModelInfo
from ..errors import AgentRouterError
from . import wire_anthropic, wire_gemini, wire_openai


def wire_for(provider: str) -> Any:
    if provider == "anthropic":
        return wire_anthropic
    if provider in ("gemini", "google"):
        return wire_gemini
    return wire_openai


def base_url_for(m: ModelInfo) -> str:
    if m.config.base_url:
        return m.config.base_url.rstrip("/")
    p = m.provider
    if p == "anthropic":
        return wire_anthropic.DEFAULT_BASE_URL
    if p in ("gemini", "google"):
        return wire_gemini.DEFAULT_BASE_URL
    if p in wire_openai.DEFAULT_BASE_URLS:
        return wire_openai.DEFAULT_BASE_URLS[p]
    raise AgentRouterError(
        f"models.{m.alias}.base_url: required for provider {p!r} (no default endpoint known)"
    )


def needs_key(m: ModelInfo) -> bool:
    return bool(m.config.key_envs()) or m.provider not in wire_openai.KEYLESS


def parser_text(parser: Any) -> str:
    """The answer's text a wire format's StreamParser has received so far."""
    text = getattr(parser, "text", None)
    if text is None and hasattr(parser, "acc"):
        text = parser.acc.text
    return "".join(text or ())
