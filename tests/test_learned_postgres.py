"""Learned routing with a PostgreSQL ledger (the real server the suite starts): verdicts recorded by one
process reach the adaptive layer of a router in another, and retraining rows are read from the server."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .learned_fixtures import STRONG, WEAK, fill_ledger

pytestmark = pytest.mark.skipif(importlib.util.find_spec("psycopg") is None,
                                reason="psycopg not installed: pip install -e '.[postgres]'")

from click.testing import CliRunner  # noqa: E402

from agent_router.cli import cli  # noqa: E402
from agent_router.learned.ledger_rows import ledger_rows  # noqa: E402
from agent_router.learned.model import QualityModel  # noqa: E402
from agent_router.ledger import Ledger  # noqa: E402
from agent_router.plugins import load_plugins  # noqa: E402
from agent_router.router import Router  # noqa: E402
from agent_router.settings import Settings, load  # noqa: E402

ENV = "AR_TEST_LEARNED_PG_DSN"
HELLO = "hi, thanks!"


def _settings_file(tmp_path: Path, **extra: object) -> Path:
    f = tmp_path / "settings.json"
    f.write_text(json.dumps({"ledger": {"backend": "postgresql", "dsn_env": ENV}, **extra}))
    return f


def _route_in_another_process(settings_file: Path, text: str) -> dict:
    """A fresh Python process that shares only the PostgreSQL ledger with this one (the DSN in the env)."""
    code = (
        "import json, sys\n"
        "from agent_router import learned\n"
        "from agent_router.plugins import load_plugins\n"
        "from agent_router.router import Router\n"
        "from agent_router.settings import load\n"
        "r = Router(load(sys.argv[1]), pm=load_plugins())\n"
        "read = learned.sync_ledger(r)\n"
        "d = r.route([{'role': 'user', 'content': sys.argv[2]}])\n"
        "print(json.dumps({'read': read, 'tier': d.tier, 'need': d.analysis.features['need']}))\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(settings_file), text], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_postgres_verdicts_reach_the_adaptive_layer_of_a_router_in_another_process(pg_dsn, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setenv(ENV, pg_dsn)
    settings_file = _settings_file(tmp_path, learned={"enabled": True})
    before = _route_in_another_process(settings_file, HELLO)
    assert before["read"] == 0 and before["tier"] != "premium"
    settings = load(settings_file)
    router = Router(settings, pm=load_plugins())
    decision = router.route([{"role": "user", "content": HELLO}])
    with Ledger.from_settings(settings) as led:
        for _ in range(120):  # the cheap tier kept failing requests like this one
            led.add_feedback(led.record(decision=decision), False, "explicit", "test")
    after = _route_in_another_process(settings_file, HELLO)
    assert after["read"] == 120
    assert after["tier"] == "premium" and after["need"] > before["need"]


def test_retraining_rows_are_read_from_postgres_as_from_sqlite(pg_dsn, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, pg_dsn)
    settings_file = _settings_file(tmp_path, ledger={"backend": "postgresql", "dsn_env": ENV, "store_prompts": True})
    settings = load(settings_file)
    with Ledger.from_settings(settings) as pg:
        fill_ledger(pg)
        from_pg = ledger_rows(pg, (WEAK, STRONG))
    lite = tmp_path / "ledger.db"
    lite_settings = Settings.model_validate({"ledger": {"path": str(lite), "store_prompts": True}})
    with Ledger(lite, lite_settings) as led:
        fill_ledger(led)
        from_lite = ledger_rows(led, (WEAK, STRONG))
    assert len(from_pg) == 48

    def same(rows: list[dict]) -> list[tuple]:
        return [(r["source"], r["messages"], r["quality"], {k: round(v, 12) for k, v in r["cost_usd"].items()})
                for r in rows]

    assert same(from_pg) == same(from_lite)
    # `agent-router train --from-ledger` trains on the ledger the settings name: here the server.
    out = tmp_path / "mine.npz"
    r = CliRunner().invoke(cli, ["train", "--from-ledger", "--settings", str(settings_file), "--out", str(out),
                                 "--folds", "2", "--iterations", "60"])
    assert r.exit_code == 0, r.output
    assert "48 judged calls with stored prompts" in r.output
    m = QualityModel.load(out)
    assert m.meta["trained_on"]["rows"] == 48
