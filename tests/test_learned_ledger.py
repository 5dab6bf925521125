"""Retraining the learned router from a ledger: judged calls with stored prompts become training rows, read
through the Ledger (SQLite or PostgreSQL), and `agent-router train --ledger` trains on them the same way it
trains on eval rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_router.cli import cli
from agent_router.errors import InputError
from agent_router.learned import router as learned
from agent_router.learned.ledger_rows import ledger_rows
from agent_router.learned.model import QualityModel
from agent_router.ledger import Ledger
from agent_router.settings import Settings
from agent_router.usage import counted

from .learned_fixtures import STRONG, WEAK, fill_ledger, write_rows

ROOT = Path(__file__).resolve().parents[1]
HARD_Q = "Prove that the sum of the first 9 odd numbers is a perfect square, step by step."
EASY_Q = "Say hello to my friend number 9."


def _train(*args: str):
    """`agent-router train ARGS` as a user runs it."""
    return CliRunner().invoke(cli, ["train", *args])


def _rows(db: Path, names: tuple[str, str] = ("weak", "strong")) -> list[dict]:
    with Ledger(db, Settings()) as led:
        return ledger_rows(led, names)


def _ledger(path: Path, store_prompts: bool = True, judge: bool = True, n: int = 48) -> list[int]:
    """A SQLite ledger as an agent leaves it (see learned_fixtures.fill_ledger)."""
    settings = Settings.model_validate({"ledger": {"path": str(path), "store_prompts": store_prompts}})
    with Ledger(path, settings) as led:
        return fill_ledger(led, judge, n)


def test_ledger_rows_have_the_eval_row_shape_with_one_side_known(tmp_path):
    db = tmp_path / "ledger.db"
    ids = _ledger(db)
    rows = _rows(db, (WEAK, STRONG))
    assert len(rows) == len(ids)  # the tool row and the unjudged call are not rows
    r0 = rows[0]  # call 1: a hard request on the cheap tier, explicit bad
    assert r0["messages"][-1]["content"].startswith("Prove that the sum")
    assert r0["quality"] == {WEAK: 0.0, STRONG: None}
    assert r0["cost_usd"][WEAK] > 0 and r0["cost_usd"][STRONG] > r0["cost_usd"][WEAK]  # priced per token
    by_id = {r["id"]: r for r in rows}
    premium_good = by_id[f"ledger:ledger.db:{ids[1]}"]
    assert premium_good["quality"] == {STRONG: 1.0, WEAK: None}
    assert premium_good["source"] == "ledger/explicit"  # its implicit tool_error verdict was overruled
    assert any(r["source"] == "ledger/implicit/retry" for r in rows)


def test_train_retrains_on_a_ledger(tmp_path):
    db = tmp_path / "ledger.db"
    _ledger(db)
    out = tmp_path / "mine.npz"
    r = _train("--ledger", str(db), "--out", str(out), "--folds", "2", "--iterations", "60")
    assert r.exit_code == 0, r.output
    printed = r.output
    assert "48 judged calls with stored prompts" in printed
    m = QualityModel.load(out)
    assert m.heads == ["weak", "strong"] and m.meta["trained_on"]["file"] == "ledger.db"
    assert m.meta["trained_on"]["rows"] == 48
    # It learned what the verdicts said: the cheap tier fails the hard kind, so it needs premium more.
    hard = m.score_messages([{"role": "user", "content": HARD_Q}])
    easy = m.score_messages([{"role": "user", "content": EASY_Q}])
    assert hard > easy + 0.1
    assert 0.0 <= m.meta["calibration"]["low"] <= m.meta["calibration"]["high"] <= 1.0
    # The learned router takes the file as its weights.
    lr = learned.LearnedRouter(learned.LearnedSettings(weights=str(out)))
    assert lr.analyze([{"role": "user", "content": HARD_Q}]).score > \
        lr.analyze([{"role": "user", "content": EASY_Q}]).score


def test_eval_rows_and_a_ledger_train_together(tmp_path):
    db = tmp_path / "ledger.db"
    _ledger(db, n=16)
    rows = write_rows(tmp_path / "fixture.jsonl", 40)
    out = tmp_path / "both.npz"
    r = _train(str(rows), "--ledger", str(db), "--models", f"{WEAK},{STRONG}", "--out", str(out), "--folds", "2",
               "--iterations", "40")
    assert r.exit_code == 0, r.output
    m = QualityModel.load(out)
    assert m.heads == [WEAK, STRONG]
    assert m.meta["trained_on"] == {**m.meta["trained_on"], "file": "fixture.jsonl + ledger.db", "rows": 56}


def test_a_ledger_without_prompts_or_verdicts_is_a_clear_error(tmp_path):
    no_prompts = tmp_path / "a.db"
    _ledger(no_prompts, store_prompts=False)
    with pytest.raises(InputError, match="no call has a stored prompt; turn on ledger.store_prompts"):
        _rows(no_prompts)
    r = _train("--ledger", str(no_prompts), "--out", str(tmp_path / "x.npz"))
    assert r.exit_code != 0 and "no call has a stored prompt" in r.output and "Traceback" not in r.output
    no_verdicts = tmp_path / "b.db"
    _ledger(no_verdicts, judge=False)
    with pytest.raises(InputError, match=r"49 call\(s\) have a stored prompt but none has a verdict.*"
                                         "agent-router feedback CALL_ID good\\|bad"):
        _rows(no_verdicts)
    r = _train("--ledger", str(tmp_path / "missing.db"), "--out", str(tmp_path / "x.npz"))
    assert r.exit_code != 0 and "no such file" in r.output
    assert not (tmp_path / "missing.db").exists()  # reading never creates a ledger
    (tmp_path / "notes.db").write_text("not a database")
    r = _train("--ledger", str(tmp_path / "notes.db"), "--out", str(tmp_path / "x.npz"))
    assert r.exit_code != 0 and "notes.db" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.npz").exists()


def test_too_few_verdicts_on_one_side_names_it(tmp_path):
    db = tmp_path / "ledger.db"
    settings = Settings.model_validate({"ledger": {"path": str(db), "store_prompts": True}})
    with Ledger(db, settings) as led:
        for i in range(6):
            cid = led.record("gpt-4.1-mini", counted(30, 30), provider="openai", tier="chat",
                             prompt=[{"role": "user", "content": f"question {i}"}])
            led.add_feedback(cid, i % 2 == 0, "explicit")
        led.record("claude-sonnet-4-5", counted(30, 30), provider="anthropic", tier="premium",
                   prompt=[{"role": "user", "content": "unjudged"}])
    r = _train("--ledger", str(db), "--out", str(tmp_path / "x.npz"), "--folds", "2")
    assert r.exit_code != 0 and "too few verdicts for strong" in r.output
    assert json.dumps(_rows(db))  # the rows themselves are fine JSON
