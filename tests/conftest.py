"""Fixtures every test file can use by name (no imports): the fixture modules below are pytest plugins.

Helpers (constants, builders) are imported from the `tests` package: `from .ledger_fixtures import settings`.
"""

import atexit
import contextlib
import gc
import logging
import os
import shutil
import sys
import tempfile

import pytest

# Compiled bytecode is cached (__pycache__, gitignored) even where PYTHONDONTWRITEBYTECODE is set, as on the
# development machine: otherwise every xdist worker, every `agent-router serve` and every CLI subprocess the tests
# start compiles the package (and pytest re-rewrites every test module) from source, ~2 s of CPU per worker.
# Set before the package and the test modules are imported; subprocesses inherit the environment.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# One BLAS thread per test process: two workers already fill both cores, and OpenBLAS's own threads on top of
# them (or of the other processes of a busy machine) made the numpy-heavy tests several times slower. Set before
# anything imports numpy; subprocesses the tests start inherit it.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# Temporary files (every tmp_path, the PostgreSQL and Redis data folders, ledgers, the gateways' logs) in memory
# when the machine has a tmpfs at /dev/shm and $TMPDIR does not say otherwise: on a disk file system creating and
# deleting the run's tens of thousands of files cost ~1 s of kernel CPU. Set by the process that starts the run,
# before pytest picks its temporary folder; xdist workers and subprocesses inherit it. The Agent Zero tests keep
# their hard links to their cache on its own file system (tests/test_agent_zero_docker.py, `scratch`).
if not os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("TMPDIR") and os.path.isdir("/dev/shm"):
    with contextlib.suppress(OSError):  # no usable /dev/shm: the system's temporary folder
        _shm = os.statvfs("/dev/shm")
        if os.access("/dev/shm", os.W_OK | os.X_OK) and _shm.f_bavail * _shm.f_frsize > 2 << 30:
            os.environ["TMPDIR"] = "/dev/shm"
            tempfile.tempdir = None  # tempfile.gettempdir() reads $TMPDIR again

# One folder of derived-data caches (agent_router.home.cache_dir: tiktoken's decoded ranks, genai-prices lookups,
# entry points) for the whole run: every test has its own $AGENT_ROUTER_HOME (ledger, settings), but without this
# each `agent-router serve` and CLI subprocess would decode cl100k and look prices up again in an empty home.
# Made by the process that starts the run; xdist workers and subprocesses inherit it; removed at its exit.
if not os.environ.get("PYTEST_XDIST_WORKER"):
    _derived = tempfile.mkdtemp(prefix="agent-router-test-cache-")
    os.environ["AGENT_ROUTER_CACHE"] = _derived
    atexit.register(shutil.rmtree, _derived, ignore_errors=True)


# An xdist worker whose session ended leaves without the interpreter's teardown. Deleting the modules and objects
# a worker built over hundreds of tests (up to ~330,000 objects: numpy, tiktoken's ranks, servers' state) took
# ~0.9 s after its last test, and the run waits for its slowest worker. Registered here, before any test runs, so
# every exit handler registered later (temporary folders, multiprocessing, the tests' own) runs first; logging is
# shut down and the streams flushed by hand. A worker that did not finish its session exits the usual way.
_session_done = False


def _leave_without_teardown() -> None:
    if _session_done:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


if os.environ.get("PYTEST_XDIST_WORKER"):
    atexit.register(_leave_without_teardown)

# The collector's youngest generation runs after 7,000 net allocations instead of 700: the tests allocate in bulk
# (parsed bodies, rows, random conversations) and keep little, and at 700 the young and the full collections they
# triggered took ~2.3 s of the workers' CPU in a full run; at 7,000, ~1.4 s. Objects are still all collected.
gc.set_threshold(7000, *gc.get_threshold()[1:])


def pytest_unconfigure(config):
    global _session_done
    _session_done = bool(os.environ.get("PYTEST_XDIST_WORKER"))


pytest_plugins = [
    "tests.providers_fixtures",  # llm (a local model server), clock (a FakeClock)
    "tests.scale_fixtures",  # pg_server, pg_dsn, redis_server
    "tests.gateway_fixtures",  # gw_upstream (a module's fake upstream for `agent-router serve`)
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


# Longest files first (wall time inside a full run on four workers, `--dist loadfile --no-loadscope-reorder`,
# pyproject), so that the file that takes longest starts at once, the ones that mostly wait on timeouts run beside
# the busy ones, and the short ones fill in at the end. Files not named here keep their collection order after these.
SLOW_FIRST = [
    "test_agent_zero_docker.py",  # several minutes to build its venv the first time, ~20 s of CPU once cached
    "test_providers.py",  # ~25 s, mostly real timeouts against hostile local servers
    "test_http1.py",  # ~6 s, mostly waiting on its own timeouts and idle sweeps: runs beside the busy ones
    "test_gateway.py",
    "test_scale_postgres.py",
    "test_scale_redis.py",
    "test_compression.py",
    "test_gateway_keys.py",
    "test_gateway_workers.py",
    "test_escalation_loop.py",
    "test_gateway_dashboard.py",
    "test_static_embeddings.py",
    "test_bad_input.py",
    "test_embeddings.py",
    "test_host_loop.py",
    "test_startup.py",
    "test_experiments.py",
    "test_plugin_loading.py",
    "test_adversarial.py",
    "test_route_fast_paths.py",
    "test_ledger.py",
    "test_signals.py",
    "test_learned_postgres.py",
    "test_ledger_reports.py",
    "test_escalation.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
