"""Fixtures every test file can use by name (no imports): the fixture modules below are pytest plugins.

Helpers (constants, builders) are imported from the `tests` package: `from .ledger_fixtures import settings`.
"""

import pytest

pytest_plugins = [
    "tests.providers_fixtures",  # llm (a local model server), clock (a FakeClock)
    "tests.scale_fixtures",  # pg_server, pg_dsn, redis_server
]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's ~/.agent-router (settings, ledger)."""
    monkeypatch.setenv("AGENT_ROUTER_HOME", str(tmp_path_factory.mktemp("agent-router-home")))
    monkeypatch.delenv("AGENT_ROUTER_SETTINGS", raising=False)


def _forget_process_state() -> None:
    from agent_router.compression import compressor
    from agent_router.runtime import core as runtime

    compressor.set_utility_caller(None)  # the deprecated process-wide caller
    compressor.clear_summary_cache()
    runtime.activate(None)


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """Each test starts and ends without what an earlier one left in process globals."""
    _forget_process_state()
    yield
    _forget_process_state()
