"""Real PostgreSQL and Redis servers for tests: 127.0.0.1, random free ports, throwaway data directories.

The servers come from the Debian packages (`apt-get install -y postgresql redis-server`). Tests that need a
server skip, naming the missing binary and that apt line, only when the binaries are absent. `initdb` refuses
to run as root, so as root the cluster is created and run as the `postgres` system user the package adds.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import multiprocessing
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import scale_workers
from .cached import built_once

APT_LINE = "apt-get update && apt-get install -y postgresql redis-server"
INITDB_ARGS = ("-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions")
# Separate processes with their own connections, as agents on other machines have. "fork" because a fresh
# interpreter spends ~2 s of CPU importing pydantic and the price table, which would dominate the tests.
PROCS = multiprocessing.get_context("fork")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{what} exited with {proc.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


# --- PostgreSQL --------------------------------------------------------------------------------------------
def postgres_bindir() -> Path | None:
    """The directory with initdb and postgres: PATH first, then Debian's /usr/lib/postgresql/<ver>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(Path(d).parent.name.split(".")[0]))
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists() and (Path(d) / "postgres").exists():
            return Path(d)
    return None


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port> with trust auth for user `postgres`."""

    def __init__(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise FileNotFoundError("initdb/postgres")
        self.bindir = bindir
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="ar-pg-"))
        self.data = self.tmp / "data"
        self.log = self.tmp / "postgres.log"
        self.proc: subprocess.Popen | None = None
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise FileNotFoundError("the 'postgres' system user") from None
            self.user = "postgres"
            shutil.chown(self.tmp, user="postgres", group="postgres")
            os.chmod(self.tmp, 0o700)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self.user, cwd=self.tmp)

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self._copy_cluster()
        logf = open(self.log, "ab")  # noqa: SIM115 - closed when the server stops
        if self.user:
            shutil.chown(self.log, user="postgres", group="postgres")
        # fsync off and a small shared_buffers: a throwaway test cluster, speed over durability.
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.tmp), "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=100", "-c", "shared_buffers=32MB"],
            stdout=logf, stderr=subprocess.STDOUT, user=self.user, cwd=self.tmp,
        )
        logf.close()
        _wait_port(self.port, self.proc, "postgres", self.log)
        self._wait_ready()
        return self

    def _copy_cluster(self) -> None:
        """`self.data` as a copy of a cluster `initdb` made once per initdb binary and kept across runs
        (tests/cached.py): a copy takes a few ms of CPU, initdb ~0.4 s in every worker that starts a server."""
        initdb = str(self.bindir / "initdb")
        version = subprocess.run([initdb, "--version"], capture_output=True, text=True, check=True).stdout
        st = os.stat(initdb)
        key = hashlib.sha256(f"{initdb}\0{version}\0{st.st_size}\0{st.st_mtime_ns}\0{INITDB_ARGS}".encode())

        def build(tmp: Path) -> None:
            work = Path(tempfile.mkdtemp(prefix="ar-pg-initdb-"))  # the postgres user may not enter the cache
            try:
                if self.user:
                    shutil.chown(work, user=self.user, group=self.user)
                self._run(initdb, "-D", str(work / "data"), *INITDB_ARGS)
                shutil.copytree(work / "data", tmp, symlinks=True)
            finally:
                shutil.rmtree(work, ignore_errors=True)

        cluster = built_once(f"pg-cluster-{key.hexdigest()[:16]}", build)
        shutil.copytree(cluster, self.data, symlinks=True, ignore=shutil.ignore_patterns("ok"))
        os.chmod(self.data, 0o700)  # PostgreSQL refuses a data folder others can read
        if self.user:
            for folder, _dirs, files in os.walk(self.data):  # each folder, then its files
                for name in [folder, *(os.path.join(folder, n) for n in files)]:
                    shutil.chown(name, user=self.user, group=self.user)

    def _wait_ready(self, timeout: float = 30.0) -> None:
        # The port opens before the cluster accepts queries ("the database system is starting up").
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2) as c:
                    c.execute("select 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        """A fresh database on this server; returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute(f'drop database if exists "{name}"')
            c.execute(f'create database "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: PostgreSQL's "fast" shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- Redis -------------------------------------------------------------------------------------------------
def redis_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


class RedisServer:
    """A throwaway redis-server on 127.0.0.1:<free port>, no persistence. Can be stopped and started again
    on the same port, to test what clients do while it is away."""

    def __init__(self) -> None:
        binary = redis_binary()
        if binary is None:
            raise FileNotFoundError("redis-server")
        self.binary = binary
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="ar-redis-"))
        self.log = self.tmp / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        logf = open(self.log, "ab")  # noqa: SIM115 - closed right after the child has it
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp), "--protected-mode", "yes", "--daemonize", "no"],
            stdout=logf, stderr=subprocess.STDOUT, cwd=self.tmp,
        )
        logf.close()
        _wait_port(self.port, self.proc, "redis-server", self.log)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- pytest fixtures ---------------------------------------------------------------------------------------
def _skip_missing(what: str) -> None:
    pytest.skip(f"{what} not installed; to run these tests install it: {APT_LINE}")


def _serve(client: str, module: str, extra: str, server_cls: Callable[[], Any]) -> Iterator[Any]:
    """Start a server of `server_cls` for a fixture and clean it up; skip, saying what to install, when its
    Python client or its binaries are missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        pytest.skip(f"{client} not installed; install the [{extra}] extra: pip install -e '.[{extra}]'")
    try:
        server = server_cls()
    except FileNotFoundError as e:
        _skip_missing(str(e))
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; tests take a fresh database each through `pg_dsn`."""
    yield from _serve("psycopg", "psycopg", "postgres", PostgresServer)


@pytest.fixture
def pg_dsn(pg_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """DSN of a fresh, empty database on the session's server."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    return pg_server.create_database(name)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server per test (tests stop and restart it)."""
    yield from _serve("redis-py", "redis", "redis", RedisServer)


# --- many processes ------------------------------------------------------------------------------------
def run_workers(n: int, fn_name: str, args_for, on_start=None, timeout: float = 60.0,
                collect: bool = True) -> list:
    """Run scale_workers.<fn_name> in n processes that start together; their results in order.

    `on_start()` runs in this process once all workers are ready (e.g. to stop a server mid-run).
    collect=False: the workers end without a result (they crash on purpose); their exit codes instead."""
    barrier = PROCS.Barrier(n + 1)
    results = PROCS.Queue()
    procs = [PROCS.Process(target=scale_workers.entry, args=(i, fn_name, args_for(i), barrier, results))
             for i in range(n)]
    for p in procs:
        p.start()
    got: dict[int, tuple[bool, object]] = {}
    try:
        barrier.wait(timeout=timeout)
        if on_start:
            on_start()
        if collect:
            got = {i: (ok, out) for i, ok, out in (results.get(timeout=timeout) for _ in procs)}
    finally:
        for p in procs:
            p.join(timeout=timeout if not collect else 10)
            if p.is_alive():
                p.kill()
    if not collect:
        return [p.exitcode for p in procs]
    failed = [out for ok, out in got.values() if not ok]
    assert not failed, failed[0]
    return [got[i][1] for i in range(n)]
