"""Core commands: route, score, models, check, plugins."""

from __future__ import annotations

import json
import sys

import click

from ..errors import InputError
from ..hookspecs import hookimpl
from ._common import get_router, get_settings, iter_rows, read_stdin_messages, settings_option


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(route_cmd)
    cli.add_command(score_cmd)
    cli.add_command(models_cmd)
    cli.add_command(check_cmd)
    cli.add_command(plugins_cmd)
    cli.add_command(settings_cmd)


@click.command("route")
@click.argument("prompt", required=False)
@settings_option
@click.option("--json", "as_json", is_flag=True, help="Print the whole decision as JSON.")
@click.option("--kind", type=click.Choice(["chat", "utility"]), default="chat", help="Call kind.")
def route_cmd(prompt: str | None, settings_path: str | None, as_json: bool, kind: str) -> None:
    """Route PROMPT (or a JSON list of messages on stdin) and print the decision."""
    router = get_router(settings_path)
    messages = [{"role": "user", "content": prompt}] if prompt is not None else read_stdin_messages()
    d = router.route(messages, {"call_kind": kind})
    if as_json:
        click.echo(json.dumps(d.to_dict(), indent=2))
        return
    click.echo(f"{d.tier}: {d.model} ({d.provider}/{d.model_name})  est. ${d.estimated_cost_usd:.5f}"
               f"  [{d.estimated_input_tokens} in ({d.token_source}) + ~{d.estimated_output_tokens} out]")
    for r in d.reasons:
        click.echo(f"  - {r}")
    if d.fallbacks:
        click.echo(f"  fallbacks: {', '.join(d.fallbacks)}")


@click.command("score")
@click.argument("rows", type=click.Path(dir_okay=False))
@settings_option
@click.option("--escalate", is_flag=True, help="Print {\"id\",\"score\"}: the escalation scorer's predicted gain "
              "of STRONG over CHEAP's answer (rows need answers.CHEAP); out-of-fold on rows it is trained on.")
@click.option("--models", default=None, help="With --escalate: CHEAP,STRONG.")
@click.option("--train", "train_path", type=click.Path(dir_okay=False), default=None,
              help="With --escalate: train on these rows (default: ROWS' rows with both qualities; with fewer "
              "than 50, the packaged weights).")
@click.option("--no-length", is_flag=True, help="With --escalate: leave out the answer and request length features.")
def score_cmd(rows: str, settings_path: str | None, escalate: bool, models: str | None, train_path: str | None,
              no_length: bool) -> None:
    """Print {"id","score","task_type","tier"} as JSONL for each routing-eval row in ROWS."""
    if escalate:
        from ..escalation.scorer import scores_for_rows

        pair = [m.strip() for m in (models or "").split(",") if m.strip()]
        if len(pair) < 2:
            raise InputError("--escalate needs --models CHEAP,STRONG")
        data = list(iter_rows(rows))
        train = list(iter_rows(train_path)) if train_path else None
        scores = scores_for_rows(data, [pair[0], pair[-1]], length=not no_length, train_rows=train, where=rows)
        for row, s in zip(data, scores, strict=True):
            sys.stdout.write(json.dumps({"id": row.get("id"), "score": round(float(s), 6)}) + "\n")
        return
    from ..router import tier_for_score

    router = get_router(settings_path)
    out = sys.stdout
    for row in iter_rows(rows):
        a = router.analyze(row["messages"], {})
        out.write(json.dumps({"id": row.get("id"), "score": round(a.score, 6), "task_type": a.task_type,
                              "tier": tier_for_score(a.score, router.settings)}) + "\n")


@click.command("models")
@settings_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_cmd(settings_path: str | None, as_json: bool) -> None:
    """The catalog: each model with tier, window, capabilities and price (USD per million tokens)."""
    from ..catalog import Catalog

    cat = Catalog(get_settings(settings_path))
    rows = []
    for m in cat:
        caps = [k for k in ("tools", "vision", "json_mode", "reasoning") if getattr(m.capabilities, k)]
        rows.append({"alias": m.alias, "tier": m.tier, "provider": m.provider, "name": m.name,
                     "context_window": m.context_window, "capabilities": [c.replace("_mode", "") for c in caps],
                     "input": m.price.input, "cached_input": m.price.cached_input, "output": m.price.output,
                     "price_source": m.price.source})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'alias':22} {'tier':8} {'provider':10} {'window':>9} {'in $/M':>8} {'cached':>8} {'out $/M':>8}"
               "  price source / capabilities")
    for r in rows:
        click.echo(f"{r['alias']:22} {r['tier'] or '-':8} {r['provider']:10} {r['context_window']:>9,} "
                   f"{r['input']:>8.3f} {r['cached_input']:>8.3f} {r['output']:>8.3f}  {r['price_source']}; "
                   f"{','.join(r['capabilities'])}")


@click.command("check")
@settings_option
def check_cmd(settings_path: str | None) -> None:
    """Validate the settings file; print a summary, or the problems and exit 2."""
    from ..catalog import Catalog
    from ..settings import resolve_path

    s = get_settings(settings_path)
    cat = Catalog(s)
    src = resolve_path(settings_path) or "<built-in defaults>"
    click.echo(f"{src}: OK ({len(s.models)} models; strategy {s.routing.strategy})")
    for t, aliases in s.tiers.items():
        click.echo(f"  {t}: {', '.join(aliases)}")
    unpriced = [m.alias for m in cat if not m.price.known]
    if unpriced:
        click.echo(f"  warning: no price known for {', '.join(unpriced)}; their calls cost $0 in the ledger "
                   "until a `price` is set")


@click.command("plugins")
def plugins_cmd() -> None:
    """List registered plugins and their hooks."""
    from ..plugins import get_plugins

    click.echo(json.dumps(get_plugins(), indent=2))


def example_settings() -> dict:
    """Every setting with its default value (optional ones as null), for settings.example.json."""
    from ..settings import ModelConfig, Price, RateLimits, Settings

    s = Settings()
    data = s.model_dump(mode="json", by_alias=True)
    data["$schema"] = "settings.schema.json"
    # Show the optional per-model blocks once, on a generic OpenAI-compatible endpoint.
    local = ModelConfig(provider="openai_compatible", name="llama3.1:8b", base_url="http://127.0.0.1:11434/v1",
                        context_window=131072, price=Price(input=0, output=0),
                        rate_limits=RateLimits(rpm=60), host_kwargs={"temperature": 0.2})
    data["models"]["local-llama"] = local.model_dump(mode="json", by_alias=True)
    return data


@click.command("settings")
@click.argument("what", type=click.Choice(["example", "schema", "show"]))
@settings_option
def settings_cmd(what: str, settings_path: str | None) -> None:
    """Print the example settings (every key), the JSON schema (every description), or the effective settings."""
    from ..settings import Settings

    if what == "example":
        data = example_settings()
    elif what == "schema":
        data = Settings.model_json_schema(by_alias=True)
    else:
        data = get_settings(settings_path).model_dump(mode="json", by_alias=True)
    click.echo(json.dumps(data, indent=2))
