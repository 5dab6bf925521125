"""Turning an HTTP failure into an error kind, a wait and learned limits, for all three wire formats."""

from __future__ import annotations

import contextlib
import json
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any

from . import types as t

_CONTEXT = re.compile(
    r"context[_ ]length|maximum context|context window|prompt is too long|too many tokens|input is too long|"
    r"exceeds the maximum number of tokens|reduce the length|request too large|string too long",
    re.I,
)
_POLICY = re.compile(r"content[_ ]policy|content[_ ]filter|safety|responsible ai|flagged|moderation", re.I)
_AUTH = re.compile(
    r"api[_ ]?key[_ ]?(not valid|invalid)|invalid[_ ](x-)?api[_ ]?key|incorrect api key|unauthori", re.I
)
_QUOTA = re.compile(r"insufficient_quota|exceeded your current quota|billing", re.I)


def error_text(body: bytes | str) -> str:
    """The provider's own error message from a JSON error body, else the body's start."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return text.strip()[:300]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        parts = [str(err.get(k)) for k in ("type", "code", "status", "message") if err.get(k)]
        return ": ".join(parts)[:500] or text[:300]
    if isinstance(err, list) and err and isinstance(err[0], dict):  # Gemini sometimes wraps in a list
        return error_text(json.dumps(err[0]))
    return str(err)[:300]


def classify(status: int, message: str) -> str:
    if status in (401, 403) and not _POLICY.search(message):
        return t.AUTH
    if status == 404:
        return t.NOT_FOUND
    if status == 408:
        return t.TIMEOUT
    if status == 413:
        return t.CONTEXT_LENGTH
    if status == 429:
        return t.RATE_LIMIT
    if status >= 500:
        return t.SERVER
    if _CONTEXT.search(message):
        return t.CONTEXT_LENGTH
    if _AUTH.search(message):
        return t.AUTH
    if _POLICY.search(message):
        return t.CONTENT_POLICY
    return t.BAD_REQUEST


_DURATION = re.compile(r"(?<![\d.])(\d{1,12}(?:\.\d{1,9})?)(ms|h|m|s)")  # from a number's start: linear


def parse_duration(v: str) -> float | None:
    """'1s', '6m0s', '20ms', '7.5s', '2' -> seconds."""
    v = v.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(v))
    total, found = 0.0, False
    for num, unit in _DURATION.findall(v):
        found = True
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total if found else None


def _until(v: str, now: float) -> float | None:
    """An HTTP date or RFC 3339 timestamp -> seconds from now."""
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, parsedate_to_datetime(v).timestamp() - now)
    try:
        from datetime import datetime

        return max(0.0, datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() - now)
    except ValueError:
        return None


def retry_after(headers: Any, body: bytes | str = b"", message: str = "") -> float | None:
    """Seconds the server asks us to wait: Retry-After(-ms), exhausted rate-limit resets, Gemini RetryInfo."""
    now = time.time()
    ms = headers.get("retry-after-ms")
    if ms:
        with contextlib.suppress(ValueError):
            return max(0.0, float(ms) / 1000)
    ra = headers.get("retry-after")
    if ra:
        d = parse_duration(ra)
        if d is None:
            d = _until(ra, now)
        if d is not None:
            return d
    waits = []
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        if headers.get(f"x-ratelimit-remaining-{kind}") == "0":
            d = parse_duration(headers.get(f"x-ratelimit-reset-{kind}", ""))
            if d is not None:
                waits.append(d)
        if headers.get(f"anthropic-ratelimit-{kind}-remaining") == "0":
            d = _until(headers.get(f"anthropic-ratelimit-{kind}-reset", ""), now)
            if d is not None:
                waits.append(d)
    if waits:
        return max(waits)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    m = re.search(r'"retryDelay"\s*:\s*"([\d.]+s)"', text) or re.search(
        r"retry in ([\d.]+m?s)", message, re.I
    )
    if m:
        return parse_duration(m.group(1))
    if _QUOTA.search(message):
        return float("inf")  # out of credit: waiting will not help
    return None


def learned_limits(headers: Any, provider: str = "") -> dict[str, int]:
    """Rate limits the server announces (OpenAI/Groq x-ratelimit-*, Anthropic anthropic-ratelimit-*)."""
    out: dict[str, int] = {}
    pairs = {
        "rpm": ("x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit"),
        "input_tpm": ("x-ratelimit-limit-tokens", "anthropic-ratelimit-input-tokens-limit"),
        "output_tpm": ("anthropic-ratelimit-output-tokens-limit",),
    }
    for name, keys in pairs.items():
        for k in keys:
            v = headers.get(k)
            if v and v.strip().isdigit() and int(v) > 0:
                out[name] = int(v)
                break
    if provider == "groq":  # Groq's x-ratelimit-limit-requests counts per day, not per minute
        out.pop("rpm", None)
    return out
