"""Test data derived once and kept across runs in a cache folder: `$AGENT_ROUTER_TEST_CACHE`, default
`~/.cache/agent-router-tests` (the Agent Zero tree and venvs of tests/test_agent_zero_docker.py, the static
embedding table of tests/static_embeddings_fixtures.py). Each entry's name carries a hash of what it is built
from, so a change of its inputs builds a new one."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    d = Path(os.environ.get("AGENT_ROUTER_TEST_CACHE") or Path.home() / ".cache" / "agent-router-tests")
    d.mkdir(parents=True, exist_ok=True)
    return d


def built_once(name: str, build: Callable[[Path], None]) -> Path:
    """`cache_dir() / name`, made by `build(tmp)` in a folder of its own and renamed into place, once: locked
    across processes (the suite's workers and later runs share the cache); a build cut short is redone."""
    out = cache_dir() / name
    with open(cache_dir() / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "ok").is_file():
            tmp = cache_dir() / f"{name}.building"
            shutil.rmtree(tmp, ignore_errors=True)
            build(tmp)
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
            (out / "ok").write_text("")
    return out
