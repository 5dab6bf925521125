"""`agent-router eval`: score routers on routing-eval rows beside random, length and oracle baselines."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from ..errors import InputError
from ..hookspecs import Scorer, hookimpl
from ._common import get_router, iter_rows, settings_option

__all__ = ["Scorer", "eval_cmd", "format_table"]

def _analyzer(settings_path: str | None) -> Scorer:
    router = get_router(settings_path)
    return lambda rows, models: [router.analyze(r["messages"], {}).score for r in rows]


def _default(settings_path: str | None) -> Scorer:
    """The built-in default router (no settings file): the learned router as it routes, out-of-fold on the
    rows its weights were trained on; the heuristic analyzer if the defaults ever turn learned routing off."""
    from ..settings import Settings

    s = Settings()
    if not s.learned.enabled:
        from ..router import Router

        router = Router(s)
        return lambda rows, models: [router.analyze(r["messages"], {}).score for r in rows]
    from ..learned.router import LearnedRouter
    from ..learned.scoring import router_scores

    lr = LearnedRouter(s.learned.model_copy(update={"adaptive": False}))  # no outcomes offline: static routing
    t = s.routing.thresholds
    return lambda rows, models: router_scores(rows, models, lr, t.low, t.high)


def describe(settings: Any, name: str) -> str:
    """One line saying what router `name` (default / analyzer) is under `settings`."""
    ls = settings.learned
    if not ls.enabled:
        return f"{name}: the heuristic analyzer (learned.enabled false)"
    from ..learned.model import load_model
    from ..learned.router import default_calibration

    model = load_model(ls.weights, ls.embeddings)
    objective = ls.objective if model.cost_dense is not None else "quality"
    cal = ls.calibration or default_calibration(model, objective)
    return (f"{name}: learned router ({'packaged weights' if ls.weights is None else ls.weights}, objective "
            f"{objective}), cut points {cal.low:.3f}/{cal.high:.3f} calibrated to quality {cal.quality} of "
            f"premium-only on {cal.source or 'its rows'}")


@hookimpl
def register_scorers(register: Callable[..., None]) -> None:
    register("default", _default, help="the built-in default router, ignoring any settings file (learned, "
             "cost objective, calibrated to 95% of premium quality; out-of-fold on its own training rows)")
    register("analyzer", _analyzer, help="the router's analyzer under the settings (heuristic, or learned when "
             "learned.enabled, the default); in-sample on the learned weights' own training rows")


def scorers() -> dict[str, Callable[[str | None], Scorer]]:
    """Every scorer `--router` accepts: the `register_scorers` hook's, by name."""
    from ..plugins import get_scorers

    return {name: factory for name, (factory, _) in get_scorers().items()}


class _RouterOption(click.Option):
    """`--router`, whose help names the scorers the plugins register."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = f"Router(s) to score: {', '.join(scorers())} (repeatable)."
        return super().get_help_record(ctx)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(eval_cmd)


def _read_peer(spec: str) -> tuple[str, dict[str, float]]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise InputError(f"--peer {spec!r}: expected NAME=SCORES.jsonl")
    out: dict[str, float] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        d = json.loads(line)
                        out[str(d["id"])] = float(d["score"])
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        raise InputError(f"{path}:{n}: expected {{\"id\": ..., \"score\": number}}") from None
    except OSError as e:
        raise InputError(f"--peer {path}: cannot open ({e.strerror})") from None
    return name, out


def format_table(report: dict[str, Any], title: str = "") -> str:
    lines = [f"{title} ({report['rows']} rows; models {' < '.join(report['models'])})" if title else ""]
    lines.append(f"| {'router':<22} | {'APGR':>6} | {'CPT(50%)':>8} | {'CPT(80%)':>8} | {'save95':>7} |")
    lines.append(f"|{'-' * 24}|{'-' * 8}|{'-' * 10}|{'-' * 10}|{'-' * 9}|")

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    for name, r in report["results"].items():
        lines.append(f"| {name:<22} | {r['apgr']:>6.3f} | {pct(r['cpt50']):>8} | {pct(r['cpt80']):>8} | "
                     f"{pct(r['save95']):>7} |")
    return "\n".join(x for x in lines if x is not None)


@click.command("eval")
@click.argument("rows", type=click.Path(dir_okay=False))
@click.option("--models", required=True, help="Comma-separated models, cheapest first: weak,strong or a,b,c.")
@click.option("--router", "routers", cls=_RouterOption, multiple=True, default=["analyzer"], show_default=True)
@click.option("--peer", "peers", multiple=True, help="NAME=SCORES.jsonl of another router's {id, score} rows.")
@click.option("--seeds", default=10, show_default=True, help="Seeds averaged for the random baseline.")
@click.option("--limit", type=int, default=None, help="Only the first N rows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--escalate", is_flag=True,
              help="Rows with answers: compare request-only routing (--router; default analyzer and learned), "
              "escalation after checking the cheap answer, hybrid, random and oracle on cost-normalised curves "
              "(out-of-fold; the cheap call's cost counted). See docs/escalation.md.")
@settings_option
@click.pass_context
def eval_cmd(ctx: click.Context, rows: str, models: str, routers: tuple[str, ...], peers: tuple[str, ...],
             seeds: int, limit: int | None, as_json: bool, escalate: bool, settings_path: str | None) -> None:
    """APGR, CPT(50%), CPT(80%) and save95 of each router on ROWS, beside random, length and oracle."""
    from ..learned.evaluation import evaluate

    model_list = [m.strip() for m in models.split(",") if m.strip()]
    known = scorers()
    unknown = [r for r in routers if r not in known]
    if unknown:
        raise InputError(f"--router: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    data = []
    for row in iter_rows(rows):
        data.append(row)
        if limit and len(data) >= limit:
            break
    if escalate:
        from ..escalation.evaluation import evaluate_rows
        from ..escalation.evaluation import format_table as escalation_table

        if ctx.get_parameter_source("routers") == click.core.ParameterSource.DEFAULT:
            routers = tuple(r for r in ("analyzer", "learned") if r in known)
        report = evaluate_rows(data, model_list, {name: known[name](settings_path) for name in routers},
                               seeds=seeds, where=rows)
        click.echo(json.dumps(report, indent=2) if as_json else escalation_table(report, rows))
        return
    chosen = {name: known[name](settings_path) for name in routers}
    extra = dict(_read_peer(p) for p in peers)
    report = evaluate(data, model_list, chosen, seeds=seeds, extra_scores=extra, where=rows)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_table(report, rows))
        _describe_routers(routers, settings_path)


def _describe_routers(routers: tuple[str, ...], settings_path: str | None) -> None:
    from ..settings import Settings
    from ._common import get_settings

    if "default" in routers:
        click.echo(describe(Settings(), "default"))
    if "analyzer" in routers:
        click.echo(describe(get_settings(settings_path), "analyzer"))
