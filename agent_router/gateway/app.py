"""The HTTP face: aiohttp handlers for the OpenAI- and Anthropic-compatible endpoints, key checks, size limits
and error bodies. The pipeline itself is in gateway.core; the management API in gateway.api."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..errors import AgentRouterError
from ..messages import clean_strings
from ..providers import jsonbody
from ..providers import types as t
from ..secrets import redact
from . import anthropic_wire, openai_wire
from .core import Gateway, Prepared, conversation_id, upstream_error
from .errors import BadRequest, Forbidden, GatewayError, RateLimited, TooLarge, Unauthorized
from .keys import ClientKey

log = logging.getLogger("agent_router.gateway")
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
ANONYMOUS = ClientKey("local")  # no keys configured: a loopback-only gateway serves its own machine


@dataclass(frozen=True)
class Dialect:
    name: str
    messages: Any
    options: Any
    body: Any
    writer: Any


OPENAI = Dialect("openai", openai_wire.messages_of, None, openai_wire.completion_body, openai_wire.ChunkWriter)
ANTHROPIC = Dialect("anthropic", anthropic_wire.to_internal, anthropic_wire.options, anthropic_wire.message_body,
                    anthropic_wire.EventWriter)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=jsonbody.dumps(data), status=status, headers=headers,
                        content_type="application/json")


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as e:
        body = e.anthropic() if request.path.startswith("/v1/messages") else e.openai()
        return _json(body, e.status, e.headers)
    except web.HTTPRequestEntityTooLarge:
        gw = request.app[GATEWAY]
        e2 = TooLarge(f"request body larger than gateway.max_body_mb={gw.settings.gateway.max_body_mb:g} MB")
        return _json(e2.anthropic() if request.path.startswith("/v1/messages") else e2.openai(), 413)
    except web.HTTPException:
        raise
    except AgentRouterError as e:
        err = GatewayError(str(e))
        return _json(err.openai(), 400)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as e:  # one line, no traceback to the client, nothing secret
        log.exception("gateway: %s %s failed", request.method, request.path)
        err = GatewayError(f"internal error: {type(e).__name__}: {redact(str(e))[:300]}", status=500)
        err.type = "server_error"
        return _json(err.openai(), 500)


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or request.headers.get("api-key") or None


def authenticate(request: web.Request, admin: bool = False) -> ClientKey:
    gw = request.app[GATEWAY]
    if not gw.keys.configured():
        return ANONYMOUS
    value = presented_key(request)
    if value is None:
        raise Unauthorized("no API key: send 'Authorization: Bearer <key>' (or x-api-key)")
    key = gw.keys.lookup(value)
    if key is None:
        raise Unauthorized("the API key presented is not valid (unknown or revoked)")
    if admin and not key.admin:
        raise Forbidden(f"key {key.name!r} is not an admin key")
    return key


# A JSON escape of a UTF-16 surrogate (\ud800-\udfff): a pair is an ordinary character, a lone one is not
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")

async def read_json(request: web.Request) -> dict[str, Any]:
    gw = request.app[GATEWAY]
    limit = int(gw.settings.gateway.max_body_mb * 2**20)
    if (request.content_length or 0) > limit:
        raise TooLarge(f"request body of {request.content_length:,} bytes is larger than "
                       f"gateway.max_body_mb={gw.settings.gateway.max_body_mb:g} MB")
    raw = await request.read()
    try:
        body = jsonbody.loads(raw)
        # a lone one cannot be sent on as UTF-8: it becomes U+FFFD (the substring tests, ~6x faster than the
        # regex on a long body, let most bodies skip it)
        if (b"\\ud" in raw or b"\\uD" in raw) and _SURROGATE_ESCAPE.search(raw):
            body = clean_strings(body)
    except (ValueError, RecursionError):
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


async def prepare(gw: Gateway, request: web.Request, body: dict[str, Any], d: Dialect,
                  key: ClientKey) -> tuple[Prepared, dict[str, Any]]:
    messages = d.messages(body)
    override = gw.override_for(body.get("model"))
    conv = conversation_id(request.headers, body, messages)
    wait = gw.keys.rate_wait(key)
    if wait:
        raise RateLimited(f"key {key.name!r}: rate limit of {key.rpm} requests per minute reached",
                          headers={"Retry-After": str(max(1, int(wait + 0.999)))})
    require = []
    if body.get("tools"):
        require.append("tools")
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
        require.append("json")
    if gw.needs_thread(key):
        fut = gw.io.submit(gw.prepare, messages, override, conv, key, require)
        try:
            p = await asyncio.wrap_future(fut)
        except asyncio.CancelledError:  # the client left: what was reserved for it is released
            fut.add_done_callback(lambda f: f.cancelled() or f.exception() or gw.recorder(f.result()).flush())
            raise
    else:
        p = gw.prepare(messages, override, conv, key, require)
    try:
        opts = d.options(body) if d.options else openai_wire.options(body, gw.openai_upstream(p.decision))
    except BaseException:
        gw.recorder(p).flush()  # no call made: the budget reservations are released
        raise
    return p, opts


def _headers(gw: Gateway, p: Prepared, alias: str, cost: float | None) -> dict[str, str]:
    m = gw.catalog.find(alias)
    h = {
        "X-Agent-Router-Tier": (m.tier if m is not None else None) or p.decision.tier,
        "X-Agent-Router-Model": alias,
        "X-Agent-Router-Conversation": p.conversation_id.encode("ascii", "replace").decode()[:200],
        "X-Agent-Router-Estimated-Cost-Usd": f"{p.decision.estimated_cost_usd:.8f}",
    }
    if cost is not None:
        h["X-Agent-Router-Cost-Usd"] = f"{cost:.8f}"
    return h


async def handle_call(request: web.Request, d: Dialect) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    key = authenticate(request)
    body = await read_json(request)
    p, opts = await prepare(gw, request, body, d, key)
    log_ = gw.recorder(p)
    try:
        if body.get("stream"):
            return await stream_call(request, gw, d, p, opts, body, log_)
        try:
            c = await gw.client.complete(p.decision, p.messages, on_attempt=log_, **opts)
        except t.ProviderError as e:
            raise upstream_error(e) from None
        cost = gw.cost(c.alias, c.usage)
        resp = _json(d.body(c, c.alias), headers=_headers(gw, p, c.alias, cost))
        await resp.prepare(request)  # sent before the ledger rows are written (the reservation holds till then)
        await resp.write_eof()
        return resp
    finally:
        log_.flush()


async def stream_call(request: web.Request, gw: Gateway, d: Dialect, p: Prepared, opts: dict[str, Any],
                      body: dict[str, Any], log_: Any) -> web.StreamResponse:
    gen = gw.client.stream(p.decision, p.messages, on_attempt=log_, **opts)
    try:
        try:
            first = await gen.__anext__()
        except t.ProviderError as e:
            raise upstream_error(e) from None
        failed = {r["model"] for r in log_.seen}
        alias = next((a for a in (p.decision.model, *p.decision.fallbacks) if a not in failed), p.decision.model)
        if d is OPENAI:
            w = d.writer(alias, bool((body.get("stream_options") or {}).get("include_usage")))
        else:
            w = d.writer(alias)
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache", **_headers(gw, p, alias, None)})
        await resp.prepare(request)
        if first.completion is not None:
            await resp.write(w.first() + w.last(first.completion))
        else:
            await resp.write(w.first() + w.delta(first))
            async for delta in gen:
                if delta.completion is not None:
                    await resp.write(w.last(delta.completion))
                else:
                    await resp.write(w.delta(delta))
        await resp.write_eof()
        return resp
    except t.ProviderError as e:  # broken after output: the client learns it from an error event
        log.warning("gateway: stream broken: %s", e)
        err = upstream_error(e)
        payload = err.anthropic() if d is ANTHROPIC else err.openai()
        with _quiet():
            await resp.write(f"event: error\ndata: {json.dumps(payload)}\n\n".encode())
            await resp.write_eof()
        return resp
    finally:
        await gen.aclose()  # a client that went away: the upstream request ends here and is recorded


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is not None and issubclass(exc[0], ConnectionError | RuntimeError)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await handle_call(request, OPENAI)


async def messages(request: web.Request) -> web.StreamResponse:
    return await handle_call(request, ANTHROPIC)


async def models(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    authenticate(request)
    names = ["auto", "utility", "chat", "premium", *(m.alias for m in gw.catalog)]
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "agent-router"} for n in names]
    return _json({"object": "list", "data": data})


async def count_tokens(request: web.Request) -> web.Response:
    """Anthropic's /v1/messages/count_tokens, counted offline with the chat tier's first model's tokenizer."""
    gw = request.app[GATEWAY]
    authenticate(request)
    body = await read_json(request)
    msgs = anthropic_wire.to_internal({**body, "messages": body.get("messages") or []})
    m = next(iter(gw.catalog.tier_models("chat") or list(gw.catalog)))
    n = gw.rt.counter.count_messages(msgs, m.provider, m.name).tokens
    return _json({"input_tokens": n})


def create_app(gw: Gateway) -> web.Application:
    from . import api, dashboard

    app = web.Application(middlewares=[errors], client_max_size=int(gw.settings.gateway.max_body_mb * 2**20))
    app[GATEWAY] = gw
    r = app.router
    for prefix in ("/v1", ""):
        r.add_post(f"{prefix}/chat/completions", chat_completions)
        r.add_post(f"{prefix}/messages", messages)
        r.add_post(f"{prefix}/messages/count_tokens", count_tokens)
        r.add_get(f"{prefix}/models", models)
    api.add_routes(app)
    if gw.settings.gateway.dashboard:
        dashboard.add_routes(app)

    async def close(app: web.Application) -> None:
        await gw.aclose()

    app.on_cleanup.append(close)
    return app
