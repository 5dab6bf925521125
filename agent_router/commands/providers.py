"""Provider commands: `health` (ping every configured model), `ask` (route, call, print answer and cost)."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from ..hookspecs import hookimpl
from ._common import LazyChoice, get_router, get_settings, settings_option


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(health_cmd)
    cli.add_command(ask_cmd)


@click.command("health")
@settings_option
@click.option("--timeout", "timeout_s", type=float, default=10.0, show_default=True, help="Seconds per ping.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def health_cmd(settings_path: str | None, timeout_s: float, as_json: bool) -> None:
    """Ping each configured model with a one-token request; exit 1 if a tier has no healthy model.

    A model whose API key variable is unset is reported as 'no key' and not pinged."""
    from ..providers import ProviderClient
    from ..settings import TIERS

    s = get_settings(settings_path)
    with ProviderClient(s) as client, ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(lambda a: client.ping(a, timeout_s), list(s.models)))
    for r in rows:
        r["tier"] = s.tier_of(r["model"])
        r["provider"] = s.models[r["model"]].provider
    ok = {r["model"] for r in rows if r["status"] == "ok"}
    down = [t for t in TIERS if not any(a in ok for a in s.tiers.get(t, []))]  # type: ignore[call-overload]
    if as_json:
        click.echo(json.dumps({"models": rows, "tiers_without_healthy_model": down}, indent=2))
    else:
        click.echo(f"{'model':24} {'tier':8} {'provider':10} {'status':14} {'latency':>9}")
        for r in rows:
            lat = f"{r['latency_ms']:.0f} ms" if r["latency_ms"] is not None else "-"
            click.echo(f"{r['model']:24} {r['tier'] or '-':8} {r['provider']:10} {r['status']:14} {lat:>9}")
            if r["error"]:
                click.echo(f"    {r['error']}")
        for t in down:
            click.echo(f"tier {t}: no healthy model", err=True)
    if down:
        sys.exit(1)


@click.command("ask")
@click.argument("prompt")
@settings_option
@click.option("--stream", is_flag=True, help="Print the answer as it arrives.")
@click.option("--tier", type=LazyChoice("..settings:TIERS"), default=None, help="Force a tier.")
@click.option("--model", "model_alias", default=None, help="Force a model alias.")
@click.option("--max-tokens", type=int, default=None, help="Most output tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print answer, decision, usage and cost as JSON.")
def ask_cmd(
    prompt: str,
    settings_path: str | None,
    stream: bool,
    tier: str | None,
    model_alias: str | None,
    max_tokens: int | None,
    as_json: bool,
) -> None:
    """Route PROMPT within the budgets, call the chosen model (failing over along its chain, which keeps to
    the same limits), print answer, decision and cost.

    Budgets are checked and the call's estimate reserved in the ledger before any request is sent; over
    budget, budgets.on_exceed decides: downgrade to a model that fits, or stop with one line and exit 2.
    With escalation on (settings.escalation) and no --tier/--model, an answer that fails the answer checks is
    re-asked one tier up within the same limits; both calls are in the ledger, the second linked to the first."""
    router = get_router(settings_path)
    messages = [{"role": "user", "content": prompt}]
    override = {"model": model_alias} if model_alias else {"tier": tier} if tier else None
    opts = {"max_tokens": max_tokens} if max_tokens else {}
    from ..ledger import Ledger

    calls: list[tuple[Any, Any]] = []  # (decision, completion) of each call made, the answer last
    esc = None
    with Ledger.from_settings(router.settings) as ledger:
        # BudgetBlocked (an AgentRouterError) ends the command here: one line on stderr, exit 2, no request.
        ctx: dict = {"override": override} if override else {}
        if max_tokens:  # the answer cannot be longer: the estimate (and the reservation) use it
            ctx["output_tokens"] = max_tokens
        d, chk = ledger.route(router, messages, ctx)
        first_row: list[int | None] = [None]
        c = _ask_call(router, ledger, d, chk, messages, opts, stream and not as_json, first_row)
        calls.append((d, c))
        if router.settings.escalation.active and override is None:
            from ..escalation.escalate import SIGNAL, decide

            esc = decide(
                router, d, messages, c.text, finish_reason=c.finish_reason,
                tool_calls=[tc.to_openai() for tc in c.tool_calls],
                context={**ctx, **ledger.budget_context(None)}, latency_ms=c.latency_ms,
            )
            if esc.failed and first_row[0] is not None:  # the failed answer is a recorded verdict
                ledger.add_feedback(first_row[0], False, source="implicit", signal=SIGNAL)
            if esc.decision is not None:
                chk2 = ledger.check(esc.decision.estimated_cost_usd)
                if not chk2.allowed:
                    esc.decision, esc.blocked, esc.escalate = None, "; ".join(chk2.reasons) or "budget", False
            if esc.decision is not None:
                if stream and not as_json:
                    click.echo(f"-- answer check failed ({'; '.join(esc.reasons)}): re-asking {esc.decision.model}")
                c2 = _ask_call(router, ledger, esc.decision, chk2, messages, opts, stream and not as_json, [None],
                               escalated_from=first_row[0])
                calls.append((esc.decision, c2))
        if not stream and not as_json:  # printed before the ledger closes: a paid answer is never lost
            click.echo(calls[-1][1].text)
    d, c = calls[-1]
    u = c.usage
    cost, price_source = router.catalog.cost(
        c.alias, u.input, u.output, u.cached_input, u.cache_write
    )
    failed = [r for r in c.attempts if r["outcome"] != "ok"]
    if as_json:
        out = {
            "answer": c.text,
            "tool_calls": [tc.to_openai() for tc in c.tool_calls],
            "finish_reason": c.finish_reason,
            "model": c.alias,
            "resolved_model": c.model,
            "decision": d.to_dict(),
            "usage": u.to_dict(),
            "cost_usd": round(cost, 8),
            "price_source": price_source,
            "latency_ms": c.latency_ms,
            "attempts": c.attempts,
        }
        if esc is not None:
            d0, c0 = calls[0]
            out["escalation"] = {**esc.to_dict(), "first_answer": {"model": c0.alias, "text": c0.text,
                                                                   "finish_reason": c0.finish_reason}}
        click.echo(json.dumps(out, indent=2))
        return
    click.echo("--")
    if esc is not None and esc.failed:
        d0, c0 = calls[0]
        then = f"re-asked on {esc.decision.model} ({esc.decision.tier})" if esc.decision else f"kept: {esc.blocked}"
        click.echo(f"answer check failed on {c0.alias}: {'; '.join(esc.reasons)}; {then}")
    click.echo(f"decision: {d.tier}: {d.model} ({d.provider}/{d.model_name}); " + "; ".join(d.reasons[-2:]))
    if failed:
        click.echo(
            "failover: " + ", ".join(f"{r['model']} {r['error_kind']}" for r in failed) + f" -> {c.alias}"
        )
    click.echo(
        f"answered by {c.alias} ({c.model}) in {c.latency_ms:.0f} ms; tokens {u.input_tokens} in "
        f"({u.cached_input_tokens} cached) + {u.output_tokens} out [{u.source}]; "
        f"cost ${cost:.6f} ({price_source})"
    )


def _ask_call(router: Any, ledger: Any, d: Any, chk: Any, messages: list[dict[str, Any]], opts: dict[str, Any],
              stream: bool, row: list[int | None], escalated_from: int | None = None) -> Any:
    """One routed call of `ask`, every attempt recorded (row[0]: the answering attempt's row id); the budget
    reservation is released once they are (their real cost replaces the estimate)."""
    from ..providers import ProviderClient

    recorder = ledger.attempt_recorder(decision=d, kind="chat", escalated_from=escalated_from)

    def on_attempt(rec: dict[str, Any]) -> int | None:
        rid = recorder(rec)
        if rec.get("outcome") == "ok":
            row[0] = rid
        return rid

    c = None
    try:
        with ProviderClient(
            router.settings, catalog=router.catalog, counter=router.counter, on_attempt=on_attempt
        ) as client:
            if stream:
                for delta in client.stream(d, messages, **opts):
                    if delta.text:
                        click.echo(delta.text, nl=False)
                    c = delta.completion or c
                click.echo()
            else:
                c = client.complete(d, messages, **opts)
    finally:
        if chk.reservation_id:
            ledger.release(chk.reservation_id)
    assert c is not None
    return c
