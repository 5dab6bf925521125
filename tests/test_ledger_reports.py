"""Cost reports (`agent-router costs`, `report --html`, `feedback`), read by people and headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.ledger import LedgerError, costs, parse_since
from agent_router.ledger.html import render
from agent_router.usage import Usage

from .ledger_fixtures import ledger, list_cost

NOW = datetime.now(UTC)


def _fill(path: Path) -> None:
    led = ledger(path)
    rows = []
    for day in range(6):
        t = NOW - timedelta(days=day, minutes=5)
        rows += [
            dict(
                model="gpt-4.1-nano",
                usage=Usage(input=2000, output=200),
                time=t,
                task_type="chat",
                conversation_id="a",
                latency_ms=300,
            ),
            dict(
                model="gpt-4.1-mini",
                usage=Usage(input=5000, output=500, cached_input=1000),
                time=t,
                task_type="code",
                conversation_id="a",
                latency_ms=900,
                outcome="ok",
            ),
            dict(
                model="claude-sonnet-4-5",
                usage=Usage(input=3000, output=400),
                time=t,
                task_type="reasoning",
                conversation_id="b",
                latency_ms=2100,
                outcome="rate_limit" if day == 0 else "ok",
            ),
            dict(
                model="gemini-2.5-flash",
                usage=Usage(input=1000, output=100),
                time=t,
                kind="tool",
                tool="search",
                conversation_id="b",
                latency_ms=500,
            ),
        ]
    led.record_many(rows)
    led.close()


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "ledger.db"
    _fill(path)
    return path


def test_costs_by_model_with_error_rate_latency_and_savings(db):
    rep = costs(ledger(db), "model")
    by = {r["key"]: r for r in rep["rows"]}
    assert set(by) == {"gpt-4.1-nano", "gpt-4.1-mini", "claude-sonnet-4-5", "gemini-2.5-flash"}
    mini = by["gpt-4.1-mini"]
    assert mini["calls"] == 6 and mini["input_tokens"] == 30000 and mini["cached_input_tokens"] == 6000
    assert mini["cost_usd"] == pytest.approx(6 * list_cost("gpt-4.1-mini", 4000, 1000, 0, 500), rel=0.01)
    # The saving: the same tokens priced at the premium tier's first model (claude-sonnet-4-5).
    assert rep["premium_model"] == "claude-sonnet-4-5"
    assert mini["premium_cost_usd"] == pytest.approx(
        6 * list_cost("claude-sonnet-4-5", 4000, 1000, 0, 500), rel=0.01
    )
    assert mini["routing_saved_usd"] == pytest.approx(mini["premium_cost_usd"] - mini["cost_usd"])
    assert by["claude-sonnet-4-5"]["routing_saved_usd"] == pytest.approx(0.0, abs=1e-12)
    assert by["claude-sonnet-4-5"]["error_rate"] == pytest.approx(1 / 6)
    assert by["gpt-4.1-nano"]["mean_latency_ms"] == pytest.approx(300)
    t = rep["total"]
    assert t["calls"] == 24 and t["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rep["rows"]))


@pytest.mark.parametrize(
    ("by", "keys"),
    [
        ("tier", {"utility", "chat", "premium"}),
        ("task_type", {"chat", "code", "reasoning", None}),
        ("conversation", {"a", "b"}),
        ("tool", {None, "search"}),
    ],
)
def test_costs_groupings(db, by, keys):
    assert {r["key"] for r in costs(ledger(db), by)["rows"]} == keys


def test_since_filters_and_days_are_in_order(db):
    rep = costs(ledger(db), "day", "2d")
    days = [r["key"] for r in rep["rows"]]
    assert days == sorted(days) and len(days) in (2, 3) and rep["total"]["calls"] == 4 * len(days)
    assert parse_since("2026-11-01") == "2026-11-01T00:00:00.000000+00:00"
    assert parse_since("today", NOW).startswith(NOW.strftime("%Y-%m-%d") + "T00:00:00")
    assert costs(ledger(db), "model", "2999-01-01")["total"] is None


def test_cli_costs_table_and_json(db):
    r = CliRunner().invoke(cli, ["costs", "--db", str(db), "--by", "tier"])
    assert r.exit_code == 0, r.output
    assert re.search(r"^premium\s+6\s", r.output, re.M) and "routing saved $" in r.output
    r = CliRunner().invoke(cli, ["costs", "--db", str(db), "--by", "conversation", "--since", "7d", "--json"])
    data = json.loads(r.output)
    assert data["by"] == "conversation" and data["total"]["calls"] == 24


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "colour"], "Invalid value for '--by'"),
        (["--since", "last tuesday"], "--since: cannot read 'last tuesday'"),
    ],
)
def test_cli_bad_arguments_are_named(db, args, message):
    r = CliRunner().invoke(cli, ["costs", "--db", str(db), *args])
    assert r.exit_code == 2 and message in r.output
    with pytest.raises(LedgerError, match="--since"):
        parse_since("soon")


def test_cli_corrupt_and_missing_db(tmp_path):
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"\x00garbage" * 512)
    r = CliRunner().invoke(cli, ["costs", "--db", str(bad)])
    assert (
        r.exit_code == 2
        and "corrupt.db: the ledger file is corrupt" in r.output
        and "Traceback" not in r.output
    )
    r = CliRunner().invoke(
        cli, ["report", "--db", str(tmp_path / "none.db"), "--html", str(tmp_path / "r.html")]
    )
    assert r.exit_code == 2 and "none.db: no ledger there yet" in r.output


def test_cli_feedback(db):
    r = CliRunner().invoke(cli, ["feedback", "3", "bad", "--db", str(db)])
    assert r.exit_code == 0 and "call 3 bad" in r.output
    assert [(o["call_id"], o["good"], o["source"]) for o in ledger(db).outcomes()] == [(3, False, "explicit")]
    r = CliRunner().invoke(cli, ["feedback", "999", "good", "--db", str(db)])
    assert r.exit_code == 2 and "no call with id 999" in r.output
    r = CliRunner().invoke(cli, ["feedback", "3", "meh", "--db", str(db)])
    assert r.exit_code == 2 and "'meh' is not one of 'good', 'bad'" in r.output


def test_cli_schema_lists_every_column(tmp_path):
    r = CliRunner().invoke(cli, ["ledger", "schema", "--db", str(tmp_path / "s.db")])
    assert r.exit_code == 0 and "| cached_input_tokens | INTEGER |" in r.output and "m005_budgets" in r.output


def test_html_is_self_contained(db):
    page = render(ledger(db))
    assert page.count('<svg class="chart"') == 4
    for cid in ("cost-over-time", "cost-by-model", "cost-by-tier", "savings"):
        assert f'id="{cid}"' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) and "<script" not in page
    assert "claude-sonnet-4-5" in page and "routing saved" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)"
)
def test_html_report_renders_in_headless_chromium(db, tmp_path):
    from PIL import Image

    html = tmp_path / "report.html"
    r = CliRunner().invoke(cli, ["report", "--db", str(db), "--html", str(html)])
    assert r.exit_code == 0, r.output
    png = tmp_path / "shot.png"
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'ud'}",
    ]
    # One browser start: the screenshot is written to `png`, the rendered DOM to stdout.
    dom = subprocess.run(
        [*flags, f"--screenshot={png}", "--dump-dom", "--window-size=1200,1600", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    ).stdout
    assert png.exists() and png.stat().st_size > 20_000
    img = Image.open(png).convert("RGB")
    assert img.size == (1200, 1600)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50
    # The chart colours are really painted (model bars, tier bars, premium line).
    painted = {c for _, c in colours}
    for hexc in ("#4e79a7", "#e15759", "#59a14f"):
        assert tuple(int(hexc[i : i + 2], 16) for i in (1, 3, 5)) in painted
    assert len(re.findall(r'<svg class="chart"', dom)) == 4
    assert len(re.findall(r"<rect ", dom)) > 20 and "<polyline" in dom


def test_cli_ledger_budget(tmp_path):
    cfg = tmp_path / "settings.json"
    cfg.write_text(json.dumps({"budgets": {"daily_usd": 2.0}, "ledger": {"path": str(tmp_path / "l.db")}}))
    led = ledger(tmp_path / "l.db")
    led.record("gpt-4.1", Usage(input=1, output=1), cost_usd=0.5)
    r = CliRunner().invoke(cli, ["ledger", "budget", "--settings", str(cfg)])
    assert r.exit_code == 0 and "$1.5000 left" in r.output
    r = CliRunner().invoke(cli, ["ledger", "path", "--settings", str(cfg)])
    assert r.output.strip() == str(tmp_path / "l.db")
