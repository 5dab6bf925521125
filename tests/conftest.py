import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's ~/.agent-router (settings, ledger)."""
    monkeypatch.setenv("AGENT_ROUTER_HOME", str(tmp_path_factory.mktemp("agent-router-home")))
    monkeypatch.delenv("AGENT_ROUTER_SETTINGS", raising=False)
