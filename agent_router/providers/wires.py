"""Which wire format and endpoint a configured model uses, and reading one streamed answer with its parser."""

from __future__ import annotations

import time
from typing import Any

from ..catalog import ModelInfo
from ..errors import AgentRouterError
from . import types as t
from . import wire_anthropic, wire_gemini, wire_openai
from .shape import ShapeError


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


class StreamRead:
    """One streamed attempt's parsing, the same for both clients: events go to the wire's StreamParser, the
    first delta's time is noted (ttft), and a failure is a StreamBroken once output was produced (else an
    error another model may answer instead of)."""

    __slots__ = ("m", "parser", "t0", "first_at")

    def __init__(self, m: ModelInfo, parser: Any):
        self.m, self.parser = m, parser
        self.t0 = time.perf_counter()
        self.first_at: float | None = None

    def broken(self, why: str, err: t.ProviderError) -> t.ProviderError:
        if self.first_at is not None or parser_text(self.parser):
            return t.StreamBroken(why, model=self.m.alias, partial=parser_text(self.parser))
        return err

    def feed(self, event: str, data: str) -> list[t.Delta]:
        try:
            deltas = self.parser.feed(event, data)
        except ShapeError as e:
            bad = t.ProviderError(t.MALFORMED, f"stream event {e}", model=self.m.alias)
            raise self.broken(f"stream event {e}", bad) from None
        if deltas and self.first_at is None:
            self.first_at = time.perf_counter()
        return deltas

    def whole(self, c: t.Completion) -> list[t.Delta]:
        """A server that ignored `stream` and answered in one piece: a one-delta stream."""
        self.first_at = time.perf_counter()
        return [t.Delta(text=c.text)] if c.text else []

    def finish(self) -> t.Completion:
        try:
            return self.parser.finish()
        except ShapeError as e:
            raise t.ProviderError(t.MALFORMED, f"stream event {e}", model=self.m.alias) from None

    def done(self, c: t.Completion) -> t.Delta:
        if self.first_at is not None:
            c.ttft_ms = (self.first_at - self.t0) * 1000
        return t.Delta(completion=c)
