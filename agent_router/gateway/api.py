"""The management API: models, usage (the ledger's cost reports), health, recommendations, recent decisions,
feedback and virtual keys. Reads and writes of the ledger run on the gateway's ledger thread."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from ..errors import AgentRouterError
from ..ledger.budgets import iso
from ..ledger.reports import costs
from ..settings import TASK_TYPES, TIERS
from .app import GATEWAY, _json, authenticate, read_json
from .core import Gateway
from .errors import BadRequest

USAGE_BY = {"model": "model", "tier": "tier", "day": "day", "key": "agent", "conversation": "conversation",
            "task_type": "task_type", "arm": "arm"}
# Tier a task type needs by default when the settings name no preference (the analyzer's own leaning).
TASK_TIER = {"chat": "utility", "extraction": "utility", "creative": "chat", "code": "chat", "research": "chat",
             "vision": "chat", "math": "premium", "reasoning": "premium"}


async def on_ledger(gw: Gateway, fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(gw.io, fn, *args)


def models_payload(gw: Gateway) -> list[dict[str, Any]]:
    out = []
    health = gw.sync_client.health
    for m in gw.catalog:
        until = health.cooling_until(m.alias)
        out.append({
            "alias": m.alias, "name": m.name, "provider": m.provider, "tier": m.tier,
            "context_window": m.context_window,
            "price": {"input_per_mtok": m.price.input, "output_per_mtok": m.price.output,
                      "cached_input_per_mtok": m.price.cached_input, "source": m.price.source},
            "health": "cooling down" if until is not None else "ok",
            "cooling_until": until,
        })
    return out


async def api_models(request: web.Request) -> web.Response:
    authenticate(request)
    return _json({"models": models_payload(request.app[GATEWAY])})


async def api_usage(request: web.Request) -> web.Response:
    authenticate(request, admin=True)
    gw = request.app[GATEWAY]
    by = request.query.get("by", "model")
    if by not in USAGE_BY:
        raise BadRequest(f"by: one of {', '.join(USAGE_BY)}", param="by")
    since = request.query.get("since") or None
    try:
        report = await on_ledger(gw, costs, gw.ledger, USAGE_BY[by], since)
    except AgentRouterError as e:
        raise BadRequest(str(e).replace("--since", "since").replace("--by", "by"), param="since") from None
    report["by"] = by
    return _json(report)


async def api_health(request: web.Request) -> web.Response:
    authenticate(request)
    gw = request.app[GATEWAY]
    ms = models_payload(gw)
    ok = [m for m in ms if m["health"] == "ok"]
    return _json({"status": "ok" if ok else "degraded", "models": ms, "ledger": str(gw.ledger.path),
                  "time": datetime.now(UTC).isoformat()})


async def api_health_check(request: web.Request) -> web.Response:
    """Ping each model (or those named in {"models": [...]}) with a 1-token request, concurrently."""
    authenticate(request, admin=True)
    gw = request.app[GATEWAY]
    body = await read_json(request) if request.can_read_body else {}
    names = body.get("models") or [m.alias for m in gw.catalog]
    if not isinstance(names, list):
        raise BadRequest("models: a list of model aliases", param="models")
    for n in names:
        if gw.catalog.find(str(n)) is None:
            raise BadRequest(f"models: {n!r} is not a configured model", param="models")
    loop = asyncio.get_running_loop()
    results = await asyncio.gather(*(loop.run_in_executor(None, gw.sync_client.ping, str(n)) for n in names))
    for r in results:
        if r["status"] == "ok":
            gw.sync_client.health.success(r["model"])
    return _json({"results": results})


async def api_recommendations(request: web.Request) -> web.Response:
    """Models fit for a task: context_tokens must fit, cost_preference (low | balanced | quality) orders them."""
    authenticate(request)
    gw = request.app[GATEWAY]
    q = request.query
    task = q.get("task_type", "chat")
    if task not in TASK_TYPES:
        raise BadRequest(f"task_type: one of {', '.join(TASK_TYPES)}", param="task_type")
    pref = q.get("cost_preference", "balanced")
    if pref not in ("low", "balanced", "quality"):
        raise BadRequest("cost_preference: low, balanced or quality", param="cost_preference")
    try:
        ctx_tokens = int(q.get("context_tokens", "1000"))
    except ValueError:
        raise BadRequest("context_tokens: a whole number", param="context_tokens") from None
    configured = gw.settings.routing.task_preferences.get(task)  # type: ignore[call-overload]
    tier = configured if configured in TIERS else TASK_TIER[task]
    rank = TIERS.index(tier)
    if pref == "low":
        rank = max(0, rank - 1)
    elif pref == "quality":
        rank = min(len(TIERS) - 1, rank + 1)
    tier = TIERS[rank]
    out_tokens = 800
    rows = []
    for m in gw.catalog:
        fits = m.context_window >= ctx_tokens + min(out_tokens, m.config.max_output_tokens)
        est = m.estimate_cost(ctx_tokens, out_tokens)
        rows.append({"model": m.alias, "tier": m.tier, "fits_context": fits, "estimated_cost_usd": round(est, 8),
                     "healthy": gw.sync_client.health.available(m.alias)})
    order = {t: abs(TIERS.index(t) - rank) for t in TIERS}
    rows.sort(key=lambda r: (not r["fits_context"], not r["healthy"], order.get(r["tier"] or "chat", 9),
                             r["estimated_cost_usd"]))
    return _json({"task_type": task, "context_tokens": ctx_tokens, "cost_preference": pref,
                  "recommended_tier": tier, "recommended_model": rows[0]["model"] if rows else None,
                  "models": rows})


def decisions(gw: Gateway, limit: int) -> list[dict[str, Any]]:
    rows = gw.ledger.store.read(
        "SELECT id, time, conversation_id, agent_id, task_type, tier, requested_model, model, cost_usd,"
        " estimated_cost_usd, latency_ms, outcome, fallback_of, reasons FROM calls ORDER BY id DESC LIMIT "
        + str(int(limit)))
    for r in rows:
        try:
            r["reasons"] = json.loads(r["reasons"]) if r["reasons"] else []
        except ValueError:
            r["reasons"] = [r["reasons"]]
        r["key"] = r.pop("agent_id")
    return rows


async def api_decisions(request: web.Request) -> web.Response:
    authenticate(request, admin=True)
    gw = request.app[GATEWAY]
    try:
        limit = max(1, min(500, int(request.query.get("limit", "50"))))
    except ValueError:
        raise BadRequest("limit: a whole number", param="limit") from None
    return _json({"decisions": await on_ledger(gw, decisions, gw, limit)})


async def api_feedback(request: web.Request) -> web.Response:
    """{"call_id": N, "good": true|false}: a verdict on a call, for learned routing."""
    authenticate(request)
    gw = request.app[GATEWAY]
    body = await read_json(request)
    good = body.get("good")
    if not isinstance(good, bool):
        raise BadRequest("good: true or false", param="good")
    try:
        fid = await on_ledger(gw, gw.ledger.add_feedback, body.get("call_id"), good, "explicit", "api")
    except AgentRouterError as e:
        raise BadRequest(str(e), param="call_id") from None
    return _json({"id": fid, "call_id": body.get("call_id"), "verdict": "good" if good else "bad"})


def summary(gw: Gateway) -> dict[str, Any]:
    """What the dashboard shows beyond /api/usage: budgets, tier mix per hour (last 24 h), key spend."""
    now = datetime.now(UTC)
    b = gw.settings.budgets
    since = iso(now - timedelta(hours=24))
    store = gw.ledger.store
    mix = store.read(store.sql(
        "SELECT substr(time, 1, 13) AS hour, COALESCE(tier, 'other') AS tier, COUNT(*) AS calls,"
        " SUM(cost_usd) AS cost_usd FROM calls WHERE time >= ? GROUP BY substr(time, 1, 13),"
        " COALESCE(tier, 'other') ORDER BY 1"), [since])
    return {
        "time": now.isoformat(),
        "budgets": {"daily_usd": b.daily_usd, "monthly_usd": b.monthly_usd,
                    "per_conversation_usd": b.per_conversation_usd, "on_exceed": b.on_exceed},
        "tier_mix": mix,
        "keys": gw.keys.list(),
    }


async def api_summary(request: web.Request) -> web.Response:
    authenticate(request, admin=True)
    gw = request.app[GATEWAY]
    return _json(await on_ledger(gw, summary, gw))


async def api_keys(request: web.Request) -> web.Response:
    authenticate(request, admin=True)
    gw = request.app[GATEWAY]
    return _json({"keys": await on_ledger(gw, gw.keys.list)})


async def api_keys_create(request: web.Request) -> web.Response:
    """{"name", "budget_usd"?, "rpm"?, "max_tier"?, "admin"?} -> the key, shown this once."""
    authenticate(request, admin=True)
    gw = request.app[GATEWAY]
    body = await read_json(request)
    value, key = await on_ledger(gw, lambda: gw.keys.create(
        body.get("name"), body.get("budget_usd"), body.get("rpm"), body.get("max_tier"), bool(body.get("admin"))))
    return _json({"key": value, **key.public()}, status=201)


async def api_keys_revoke(request: web.Request) -> web.Response:
    authenticate(request, admin=True)
    gw = request.app[GATEWAY]
    name = request.match_info["name"]
    await on_ledger(gw, gw.keys.revoke, name)
    return _json({"name": name, "revoked": True})


async def health_live(request: web.Request) -> web.Response:
    return _json({"status": "ok", "time": time.time()})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/models", api_models)
    r.add_get("/api/usage", api_usage)
    r.add_get("/api/health", api_health)
    r.add_post("/api/health-check", api_health_check)
    r.add_get("/api/recommendations", api_recommendations)
    r.add_get("/api/decisions", api_decisions)
    r.add_post("/api/feedback", api_feedback)
    r.add_get("/api/summary", api_summary)
    r.add_get("/api/keys", api_keys)
    r.add_post("/api/keys", api_keys_create)
    r.add_delete("/api/keys/{name}", api_keys_revoke)
    r.add_get("/health", health_live)

