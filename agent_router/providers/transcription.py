"""Speech to text across several OpenAI-compatible providers (`POST {base_url}/audio/transcriptions`).

Order for each request: the cheapest eligible provider first, then the others round-robin, so free quota is
used before paid and load spreads when it runs out. A provider is eligible when a key is set (or it needs
none), it is not cooling down, and the file fits its size limit.
"""

from __future__ import annotations

import logging
import mimetypes
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..settings import Settings, TranscriptionProvider
from . import types as t
from .classify import classify, error_text, retry_after
from .client import default_state, tls_context
from .health import Health
from .keys import KeyPool, Secret, redact
from .state import StateStore

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("agent_router.providers")
MB = 1_000_000


@dataclass
class Transcript:
    text: str
    provider: str
    model: str
    duration_s: float | None
    cost_usd: float | None
    latency_ms: float
    attempts: list[dict[str, Any]] = field(default_factory=list)


class TranscriptionPool:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        state: StateStore | None = None,
        on_attempt: Callable[[dict[str, Any]], None] | None = None,
        env: Mapping[str, str] | None = None,
    ):
        self.settings = settings or Settings()
        ps = self.settings.providers
        self.providers = list(ps.transcription)
        self.state = state if state is not None else default_state(self.settings)  # Redis when configured
        self.on_attempt = on_attempt
        self._own_http = http is None
        import httpx  # here, not at import: `serve` and the CLI's other commands never load it

        self.http = http or httpx.Client(
            transport=transport, verify=tls_context(), timeout=httpx.Timeout(ps.timeout_s, connect=ps.connect_timeout_s)
        )
        self.health = Health(self.state, ps.failure_threshold, ps.cooldown_s)
        self.keys = KeyPool(self.state, env, ps.key_set_aside_s)

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def plan(self, size_bytes: int) -> tuple[list[TranscriptionProvider], list[str]]:
        """(providers to try in order, reasons others were skipped) for a file of `size_bytes`."""
        ok, skipped = [], []
        for p in self.providers:
            if p.key_envs() and not self.keys.present(p.key_envs()):
                why = "; ".join(self.keys.unusable(p.key_envs())) or f"{', '.join(p.key_envs())} unset"
                skipped.append(f"{p.name}: no key ({why})")
            elif size_bytes > p.max_file_mb * MB:
                skipped.append(
                    f"{p.name}: file {size_bytes / MB:.1f} MB exceeds its {p.max_file_mb:g} MB limit"
                )
            elif self.health.cooling_until(f"stt:{p.name}") is not None:
                skipped.append(f"{p.name}: cooling down")
            else:
                ok.append(p)
        if len(ok) <= 1:
            return ok, skipped
        ranked = sorted(range(len(ok)), key=lambda i: (ok[i].price_per_minute, i))
        first, rest = ok[ranked[0]], [ok[i] for i in sorted(ranked[1:])]
        n = int(self.state.incr("stt:rr", 1)) - 1
        k = n % len(rest)
        return [first, *rest[k:], *rest[:k]], skipped

    def transcribe(
        self,
        audio: bytes | str | Path,
        *,
        filename: str | None = None,
        language: str | None = None,
        prompt: str | None = None,
    ) -> Transcript:
        """Transcribe `audio` (bytes or a file path); raise AllModelsFailed naming each provider's error."""
        if isinstance(audio, str | Path):
            path = Path(audio)
            try:
                data = path.read_bytes()
            except OSError as e:
                raise InputError(f"{path}: cannot read audio ({e.strerror})") from None
            filename = filename or path.name
        else:
            data = audio
        filename = filename or "audio.wav"
        if not data:
            raise InputError(f"{filename}: audio is empty")
        order, skipped = self.plan(len(data))
        attempts: list[dict[str, Any]] = []
        for p in order:
            alias = f"stt:{p.name}"
            if not self.health.available(alias):
                skipped.append(f"{p.name}: cooling down")
                continue
            endpoint = p.base_url.rstrip("/")
            keys: list[Secret | None] = list(self.keys.rotation(f"stt:{p.name}", p.key_envs(), endpoint)) or [None]
            while keys:
                key = keys[0]
                t0 = time.perf_counter()
                prev = attempts[-1]["id"] if attempts else None
                try:
                    out = self._send(p, key, data, filename, language, prompt)
                except t.ProviderError as e:
                    attempts.append(self._record(p, t0, None, e, prev, len(attempts) + 1))
                    self.health.failure(alias, e.kind)
                    if e.kind == t.AUTH and key is not None:
                        self.keys.set_aside(key, endpoint)
                        keys.pop(0)
                        continue
                    if e.kind == t.RATE_LIMIT and e.retry_after:
                        self.health.trip(alias, min(e.retry_after, 3600))
                    break
                attempts.append(self._record(p, t0, out, None, prev, len(attempts) + 1))
                self.health.success(alias)
                out.attempts = attempts
                return out
        detail = "; ".join([*(f"{r['provider']}: {r['error_kind']}" for r in attempts), *skipped])
        kind = attempts[-1]["error_kind"] if attempts else t.NO_KEY
        raise t.AllModelsFailed(
            kind, f"no transcription provider succeeded ({detail or 'none configured'})", attempts=attempts
        )

    def _send(
        self,
        p: TranscriptionProvider,
        key: Secret | None,
        data: bytes,
        filename: str,
        language: str | None,
        prompt: str | None,
    ) -> Transcript:
        form = {"model": p.model, "response_format": p.response_format}
        if language:
            form["language"] = language
        if prompt:
            form["prompt"] = prompt
        import httpx

        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        headers = {"Authorization": f"Bearer {key.value}"} if key is not None else {}
        t0 = time.perf_counter()
        try:
            resp = self.http.post(
                p.base_url.rstrip("/") + "/audio/transcriptions",
                data=form,
                files={"file": (filename, data, mime)},
                headers=headers,
            )
        except httpx.TimeoutException as e:
            raise t.ProviderError(
                t.TIMEOUT, f"no answer in time ({type(e).__name__})", model=p.name
            ) from None
        except httpx.HTTPError as e:
            raise t.ProviderError(t.CONNECT, redact(f"{type(e).__name__}: {e}"), model=p.name) from None
        if resp.status_code >= 400:
            msg = redact(error_text(resp.content))
            kind = classify(resp.status_code, msg)
            raise t.ProviderError(
                kind,
                msg,
                model=p.name,
                status=resp.status_code,
                retry_after=retry_after(resp.headers, resp.content, msg),
            )
        duration = None
        if p.response_format == "text":
            text = resp.text.strip()
        else:
            try:
                body = resp.json()
                text = body["text"]
            except (ValueError, KeyError, TypeError):
                raise t.ProviderError(
                    t.MALFORMED, "transcription response has no 'text'", model=p.name
                ) from None
            d = body.get("duration") if isinstance(body, dict) else None
            duration = float(d) if isinstance(d, int | float) else None
        cost = None if duration is None else round(duration / 60 * p.price_per_minute, 8)
        return Transcript(
            text=text,
            provider=p.name,
            model=p.model,
            duration_s=duration,
            cost_usd=cost,
            latency_ms=round((time.perf_counter() - t0) * 1000, 3),
        )

    def _record(
        self,
        p: TranscriptionProvider,
        t0: float,
        out: Transcript | None,
        err: t.ProviderError | None,
        prev: str | None,
        n: int,
    ) -> dict[str, Any]:
        rec = {
            "id": uuid.uuid4().hex,
            "kind": "transcription",
            "model": p.name,
            "model_name": p.model,
            "provider": p.name,
            "input_tokens": 0,
            "cached_input_tokens": 0,
            "cache_write_tokens": 0,
            "output_tokens": 0,
            "reasoning_tokens": 0,
            "token_source": "none",
            "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
            "outcome": "ok" if err is None else "error",
            "error_kind": err.kind if err else None,
            "error": redact(str(err)) if err else None,
            "status": err.status if err else None,
            "fallback_of": prev,
            "attempt": n,
            "audio_seconds": out.duration_s if out else None,
            "cost_usd": out.cost_usd if out else None,
        }
        if err is not None:
            log.warning("transcription attempt %d on %s failed: %s", n, p.name, rec["error"])
        if self.on_attempt is not None:
            try:
                self.on_attempt(rec)
            except Exception:
                log.exception("on_attempt callback failed")
        return rec
