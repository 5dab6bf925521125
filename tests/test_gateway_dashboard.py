"""The gateway's management API and its dashboard: the page is loaded in headless Chromium (no network but
127.0.0.1) and the numbers it shows match /api/usage."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .gateway_fixtures import HARD, Gateway, http, openai_client, rows, settings_for

# openai (~0.5 s of CPU to import) is imported by the tests that use it, so that an xdist worker which only
# collects this file does not pay for it.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def gw(gw_upstream, tmp_path_factory):

    tmp = tmp_path_factory.mktemp("gwdash")
    g = Gateway(settings_for(gw_upstream.url, tmp, budgets={"daily_usd": 5.0, "monthly_usd": 50.0}), tmp)
    c = openai_client(g.url, "x")
    for i, text in enumerate(["hi", "thanks", HARD, "write a python function that parses ISO dates"]):
        c.chat.completions.create(model="auto", messages=[{"role": "user", "content": text}],
                                  extra_headers={"X-Conversation-Id": f"d{i}"})
    rows(g.db, 4)
    yield g
    g.stop()


def test_models_health_and_recommendations(gw):
    with http(base_url=gw.url) as h:
        models = h.get("/api/models").json()["models"]
        assert {m["alias"]: m["tier"] for m in models} == {"u": "utility", "c": "chat", "p": "premium"}
        assert all(m["price"]["source"] == "settings" and m["health"] == "ok" for m in models)
        assert h.get("/api/health").json()["status"] == "ok"
        checked = h.post("/api/health-check", json={"models": ["u", "p"]}).json()["results"]
        assert [(r["model"], r["status"]) for r in checked] == [("u", "ok"), ("p", "ok")]
        rec = h.get("/api/recommendations", params={"task_type": "math", "context_tokens": 2000,
                                                    "cost_preference": "balanced"}).json()
        assert rec["recommended_tier"] == "premium" and rec["recommended_model"] == "p"
        cheap = h.get("/api/recommendations", params={"task_type": "chat", "cost_preference": "low"}).json()
        assert cheap["recommended_model"] == "u"
        bad = h.get("/api/recommendations", params={"task_type": "poetry"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "task_type"


def test_usage_decisions_and_feedback(gw):
    with http(base_url=gw.url) as h:
        by_tier = h.get("/api/usage", params={"by": "tier", "since": "today"}).json()
        assert by_tier["total"]["calls"] == 4 and {r["key"] for r in by_tier["rows"]} >= {"utility", "premium"}
        assert by_tier["total"]["routing_saved_usd"] > 0
        assert h.get("/api/usage", params={"by": "conversation"}).json()["total"]["calls"] == 4
        assert h.get("/api/usage", params={"by": "nope"}).status_code == 400
        assert h.get("/api/usage", params={"since": "yesterday-ish"}).status_code == 400
        dec = h.get("/api/decisions", params={"limit": 2}).json()["decisions"]
        assert len(dec) == 2 and dec[0]["id"] > dec[1]["id"] and dec[0]["reasons"]
        fb = h.post("/api/feedback", json={"call_id": dec[0]["id"], "good": False})
        assert fb.status_code == 200 and fb.json()["verdict"] == "bad"
        assert h.post("/api/feedback", json={"call_id": 10**9, "good": True}).status_code == 400


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_dashboard_in_headless_chromium_matches_api_usage(gw, tmp_path):
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'ud'}"]
    out = subprocess.run([*flags, "--virtual-time-budget=8000", "--dump-dom", f"{gw.url}/"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert 'data-loaded="1"' in out, out[-2000:]
    with http(base_url=gw.url) as h:
        today = h.get("/api/usage", params={"by": "tier", "since": "today"}).json()["total"]
        month = h.get("/api/usage", params={"by": "tier", "since": "month"}).json()["total"]
        models = h.get("/api/usage", params={"by": "model", "since": "month"}).json()["rows"]

    def attr(elem_id: str, name: str) -> float:
        m = re.search(rf'id="{elem_id}"[^>]*data-{name}="([^"]*)"|data-{name}="([^"]*)"[^>]*id="{elem_id}"', out)
        assert m, elem_id
        return float(m.group(1) or m.group(2))

    assert attr("spend-today", "usd") == pytest.approx(today["cost_usd"])
    assert attr("spend-month", "usd") == pytest.approx(month["cost_usd"])
    assert attr("saved-month", "usd") == pytest.approx(month["routing_saved_usd"])
    assert attr("calls-month", "n") == month["calls"] == 4
    shown = {m.group(1): (int(m.group(2)), float(m.group(3)))
             for m in re.finditer(r'data-model="([^"]+)" data-calls="(\d+)" data-cost="([^"]+)"', out)}
    assert shown == {r["key"]: (r["calls"], pytest.approx(r["cost_usd"])) for r in models}
    assert re.search(r'data-tier="premium"[^>]*data-calls="1"', out)  # the tier-mix chart has the hard prompt
    assert "% of $5.00" in out  # spend against the daily budget
    assert "complexity" in out  # recent decisions show their reasons


@pytest.fixture(scope="module")
def gw_arms(gw_upstream, tmp_path_factory):
    """A gateway running an A/B routing experiment whose challenger sends nearly everything to premium; a few
    verdicts recorded through the API."""

    tmp = tmp_path_factory.mktemp("gwarms")
    ab = {"name": "t", "mode": "ab", "share": 0.5,
          "challenger": {"routing": {"thresholds": {"low": 0.01, "high": 0.02}}}}
    g = Gateway(settings_for(gw_upstream.url, tmp, routing={"experiments": [ab]}), tmp)
    c = openai_client(g.url, "x")
    for i in range(8):
        c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "thanks!"}],
                                  extra_headers={"X-Conversation-Id": f"arm{i}"})
    rows(g.db, 8)
    with http(base_url=g.url) as h:
        for d, good in zip(h.get("/api/decisions", params={"limit": 3}).json()["decisions"], (True, False, False),
                           strict=True):
            assert h.post("/api/feedback", json={"call_id": d["id"], "good": good}).status_code == 200
    yield g
    g.stop()


def test_usage_by_arm_compares_the_experiment_arms(gw_arms):
    with http(base_url=gw_arms.url) as h:
        arms = {r["key"]: r for r in h.get("/api/usage", params={"by": "arm"}).json()["rows"]}
    assert set(arms) == {"t:control", "t:challenger"}  # each conversation went to one arm, both arms ran
    assert sum(r["calls"] for r in arms.values()) == 8
    # the challenger's thresholds send "thanks!" to premium: it costs more per call than the control
    per_call = {k: r["cost_usd"] / r["calls"] for k, r in arms.items()}
    assert per_call["t:challenger"] > per_call["t:control"]
    assert sum(r["good_verdicts"] for r in arms.values()) == 1 and sum(r["bad_verdicts"] for r in arms.values()) == 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_dashboard_arms_panel_matches_api_usage_by_arm(gw_arms, tmp_path):
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'ud'}"]
    out = subprocess.run([*flags, "--virtual-time-budget=8000", "--dump-dom", f"{gw_arms.url}/"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert 'data-loaded="1"' in out, out[-2000:]
    with http(base_url=gw_arms.url) as h:
        api = h.get("/api/usage", params={"by": "arm", "since": "month"}).json()["rows"]
    shown = {m.group(1): (int(m.group(2)), float(m.group(3)), int(m.group(4)), int(m.group(5)), int(m.group(6)))
             for m in re.finditer(r'data-arm="([^"]+)" data-calls="(\d+)" data-cost="([^"]+)" '
                                  r'data-escalations="(\d+)" data-good="(\d+)" data-bad="(\d+)"', out)}
    assert shown == {r["key"]: (r["calls"], pytest.approx(r["cost_usd"]), r["escalations"], r["good_verdicts"],
                                r["bad_verdicts"]) for r in api if r["key"] is not None}
    assert set(shown) == {"t:control", "t:challenger"}
    assert 'id="arms-none" style="display: none;"' in out  # the "no experiment" line is hidden
