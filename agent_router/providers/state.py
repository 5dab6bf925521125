"""The state providers share: health, rate-limit counters, key positions, learned limits. One protocol, two
stores: `MemoryState` (this process) and `RedisState` (every process using one Redis, with a `MemoryState`
fallback while Redis is away), `SqliteState` (every process on this machine using one WAL file, same
fallback). `open_state(settings)` gives the one the settings ask for.

Everything is a float under a string key, with an optional time to live, so Redis maps one-to-one
(GET / SET PX / INCRBYFLOAT + PEXPIRE / DEL). Keys never hold secrets: API keys are named by their
environment variable. Key names used:

- ``health:{alias}:failures``, ``health:{alias}:cooldown_until``, ``health:{alias}:probe``
- ``rl:{alias}:{rpm|input_tpm|output_tpm}:{minute}`` (per-minute counters), ``learned:{alias}:{metric}``
- ``block:{alias}:{key_env}`` (rate-limited until), ``keys:{group}:pos``, ``keybad:{key_env}``, ``stt:rr``

Many agents on many machines share one provider account, so a shared store also admits rate-limited calls
atomically (`acquire`): a sliding log where an admission at time t counts against every window that holds t,
so at most `limit` units are admitted in any `window_s`-long interval across all processes, timed by the
Redis server's clock. Each Redis operation is one command or Lua script. When Redis cannot be reached, the
operation runs on the local fallback (per-process limits, so N processes may admit up to N times a limit
while it is away), a warning is logged once per outage, and Redis is tried again after `redis.retry_after_s`;
the first success logs that shared state is back. `SqliteState` does the same on one machine: each admission
is one BEGIN IMMEDIATE transaction timed by the clock read once the write lock is held, and a failing file
(locked past its timeout, disk full, removed) falls back the same way.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import AgentRouterError

log = logging.getLogger("agent_router.providers.state")


class SharedStateError(AgentRouterError):
    """Shared state is configured but cannot be set up (missing environment variable or package)."""


@dataclass(frozen=True)
class Admission:
    """The answer to one rate-limit request."""

    allowed: bool
    retry_after_s: float  # 0 when allowed; else how long until enough of the window has passed
    at: float  # the admission (or refusal) time in seconds since the epoch, by the deciding clock
    used: int  # units counted in the window after this decision
    shared: bool  # True when the shared store decided (all processes), False when this process did alone


class StateStore(Protocol):
    """What health, limits, key rotation and transcription use; MemoryState, RedisState and SqliteState
    provide it."""

    @property
    def shared(self) -> bool:
        """True when other processes see the same state (then the limiter admits through `acquire`)."""
        ...

    def get(self, key: str) -> float | None:
        """The value, or None when absent or expired."""
        ...

    def set(self, key: str, value: float, ttl_s: float | None = None) -> None:
        """Store a value, expiring after `ttl_s` seconds when given."""
        ...

    def incr(self, key: str, amount: float = 1.0, ttl_s: float | None = None) -> float:
        """Add `amount` (absent counts as 0) and return the new value; `ttl_s` applies when the key is new."""
        ...

    def delete(self, key: str) -> None:
        """Remove the key if present."""
        ...

    def acquire(self, key: str, limit: int, window_s: float, amount: int = 1) -> Admission:
        """Admit `amount` units under `limit` per sliding `window_s`, recording them if admitted. An amount
        larger than the whole limit is admitted alone into an empty window, else never."""
        ...


class MemoryState:
    """StateStore in this process's memory; thread-safe. The default, and Redis's fallback. Expired keys are
    dropped when touched or on a periodic sweep."""

    shared = False

    def __init__(self, clock: Any = time.time) -> None:
        self._data: dict[str, tuple[float, float | None]] = {}
        self._logs: dict[str, deque[tuple[float, int]]] = {}  # acquire's sliding logs
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._ops = 0

    def _live(self, key: str, now: float) -> tuple[float, float | None] | None:
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] <= now:
            del self._data[key]
            return None
        return item

    def _sweep(self, now: float) -> None:
        self._ops += 1
        if self._ops % 4096 == 0:  # bounded memory: per-minute counters would otherwise pile up
            self._sweep_expired(now)

    def _sweep_expired(self, now: float) -> None:
        for k in [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]:
            del self._data[k]

    def get(self, key: str) -> float | None:
        # Without the lock while nothing expires: a dict read is atomic, and most keys asked for per call
        # (learned limits, health) are absent.
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] is not None:
            with self._lock:
                item = self._live(key, self._clock())
            return None if item is None else item[0]
        return item[0]

    def set(self, key: str, value: float, ttl_s: float | None = None) -> None:
        with self._lock:
            now = self._clock()
            self._sweep(now)
            self._data[key] = (float(value), None if ttl_s is None else now + ttl_s)

    def incr(self, key: str, amount: float = 1.0, ttl_s: float | None = None) -> float:
        # _sweep and _live written out: three of these run per call (the rate-limit counters)
        with self._lock:
            now = self._clock()
            data = self._data
            self._ops += 1
            if self._ops % 4096 == 0:
                self._sweep_expired(now)
            item = data.get(key)
            if item is None or (item[1] is not None and item[1] <= now):
                item = (0.0, None if ttl_s is None else now + ttl_s)
            value = item[0] + amount
            data[key] = (value, item[1])
            return value

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def acquire(self, key: str, limit: int, window_s: float, amount: int = 1) -> Admission:
        with self._lock:
            now = self._clock()
            q = self._logs.setdefault(key, deque())
            while q and q[0][0] <= now - window_s:
                self._used[key] -= q.popleft()[1]
            used = self._used.get(key, 0)
            if used + amount > limit and used > 0:
                need, freed, retry = used + amount - limit, 0, window_s
                for t, a in q:
                    freed += a
                    if freed >= need:
                        retry = t + window_s - now
                        break
                return Admission(False, max(retry, 0.0), now, used, False)
            q.append((now, amount))
            self._used[key] = used + amount
            return Admission(True, 0.0, now, used + amount, False)


# --- Redis -------------------------------------------------------------------------------------------------
# KEYS: log (zset of "id:amount" scored by admission time in microseconds), sum (units in the log).
# ARGV: limit, window (us), amount, member id.
# TIME is read inside the script so every process is judged by the server's one clock.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local cutoff = now - window
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if #expired > 0 then
  local gone = 0
  for _, m in ipairs(expired) do gone = gone + tonumber(string.match(m, ':(%d+)$')) end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  redis.call('DECRBY', KEYS[2], gone)
end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used < 0 or redis.call('ZCARD', KEYS[1]) == 0 then used = 0 end
if used + amount > limit and used > 0 then
  local need = used + amount - limit
  local freed = 0
  local retry = window
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
    if freed >= need then
      retry = tonumber(entries[i + 1]) + window - now
      break
    end
  end
  return {0, retry, now, used}
end
redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. amount)
redis.call('SET', KEYS[2], used + amount)
local ttl = math.floor(window / 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {1, 0, now, used + amount}
"""

# INCRBYFLOAT, with the time to live applied only when the key is new (as MemoryState.incr does).
_INCR_LUA = """
local new = redis.call('EXISTS', KEYS[1]) == 0
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if new and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
"""


def _safe_where(url: str) -> str:
    """host:port/db of a Redis URL, never its password."""
    try:
        u = urlsplit(url)
        return f"{u.hostname or '?'}:{u.port or 6379}{u.path or ''}"
    except ValueError:
        return "<unparseable URL>"


class _Fallback:
    """A shared store's outage handling: an operation that fails runs on a local MemoryState instead (logged
    once per outage), the shared store is tried again after `retry_after_s`, and its return is logged."""

    what = "shared state"
    where = ""
    _errors: tuple[type[BaseException], ...] = ()

    def _init_fallback(self, retry_after_s: float, local: MemoryState | None) -> None:
        self.retry_after_s = retry_after_s
        self.local = local or MemoryState()
        self._flock = threading.Lock()
        self._down_since: float | None = None  # monotonic time of the failure that started this outage
        self._next_try = 0.0

    def _detail(self, e: BaseException) -> str:
        return type(e).__name__  # Redis's messages may name the server's address; the type says enough

    @property
    def shared(self) -> bool:
        """True while the shared store answers (or has not been tried since it came back into reach)."""
        return self._down_since is None

    def _run(self, op: Any, fallback: Any) -> Any:
        """op() on the shared store; on a failure fallback() on local state. Logs once per outage."""
        now = time.monotonic()
        if self._down_since is not None and now < self._next_try:
            return fallback()
        try:
            result = op()
        except self._errors as e:
            with self._flock:
                first = self._down_since is None
                if first:
                    self._down_since = now
                self._next_try = now + self.retry_after_s
            if first:
                log.warning("%s at %s unavailable (%s); using per-process limits and health until it is back",
                            self.what, self.where, self._detail(e))
            return fallback()
        if self._down_since is not None:
            with self._flock:
                was = self._down_since
                self._down_since = None
            if was is not None:
                log.warning("%s at %s answers again after %.1fs; limits and health are shared again",
                            self.what, self.where, now - was)
        return result


class RedisState(_Fallback):
    """StateStore on a Redis server, with a MemoryState as the fallback while Redis is unreachable."""

    what = "Redis"

    def __init__(self, url: str, *, prefix: str = "agent_router", timeout_s: float = 0.5,
                 retry_after_s: float = 2.0, local: MemoryState | None = None) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise SharedStateError(
                "redis.url_env is set but the redis package is not installed; install the [redis] extra "
                "(pip install 'agent-router[redis]')") from None
        # Any Redis failure (refused, timeout, loading, a read-only replica after a failover, out of memory)
        # falls back to local state: shared limits are an optimisation, never a reason for a call to fail.
        self._errors = (redis.exceptions.RedisError, OSError)
        self.where = _safe_where(url)
        try:
            # No client-side retries: a dead server must cost one quick failure, then the local fallback.
            self.client = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0), retry_on_timeout=False, decode_responses=True,
            )
        except ValueError as e:
            raise SharedStateError(f"redis URL for {self.where} is invalid: {e}") from None
        self.prefix = prefix
        self._init_fallback(retry_after_s, local)
        self._acquire = self.client.register_script(_ACQUIRE_LUA)
        self._incr = self.client.register_script(_INCR_LUA)

    def _k(self, kind: str, key: str) -> str:
        # {key} is a hash tag: both keys of a rate window land on one Redis Cluster slot.
        return f"{self.prefix}:{kind}:{{{key}}}"

    # -- operations --------------------------------------------------------------------------------------
    def acquire(self, key: str, limit: int, window_s: float, amount: int = 1) -> Admission:
        def op() -> Admission:
            res = self._acquire(
                keys=[self._k("rl", key) + ":log", self._k("rl", key) + ":sum"],
                args=[int(limit), max(1, int(window_s * 1_000_000)), int(amount), uuid.uuid4().hex],
            )
            ok, retry_us, now_us, used = (int(x) for x in res)
            return Admission(bool(ok), max(retry_us, 0) / 1e6, now_us / 1e6, used, True)

        return self._run(op, lambda: self.local.acquire(key, limit, window_s, amount))

    def get(self, key: str) -> float | None:
        def op() -> float | None:
            v = self.client.get(self._k("kv", key))
            return None if v is None else float(v)

        return self._run(op, lambda: self.local.get(key))

    def set(self, key: str, value: float, ttl_s: float | None = None) -> None:
        px = None if ttl_s is None else max(1, int(ttl_s * 1000))
        self._run(lambda: self.client.set(self._k("kv", key), repr(float(value)), px=px),
                  lambda: self.local.set(key, value, ttl_s))

    def incr(self, key: str, amount: float = 1.0, ttl_s: float | None = None) -> float:
        px = 0 if ttl_s is None else max(1, int(ttl_s * 1000))
        return self._run(lambda: float(self._incr(keys=[self._k("kv", key)], args=[repr(float(amount)), px])),
                         lambda: self.local.incr(key, amount, ttl_s))

    def delete(self, key: str) -> None:
        self._run(lambda: self.client.delete(self._k("kv", key)), lambda: self.local.delete(key))

    def close(self) -> None:
        self.client.close()


# --- SQLite -------------------------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value REAL NOT NULL, expires REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS admissions (key TEXT NOT NULL, at REAL NOT NULL, amount INTEGER NOT NULL,
                                       expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS admissions_key ON admissions (key, at);
CREATE TABLE IF NOT EXISTS sums (key TEXT PRIMARY KEY, used INTEGER NOT NULL, expires REAL NOT NULL) WITHOUT ROWID;
"""
# INCR with the time to live applied only when the key is new or had expired (as MemoryState.incr does).
_INCR_SQL = """
INSERT INTO kv (key, value, expires) VALUES (?1, ?2, ?3)
ON CONFLICT (key) DO UPDATE SET
  value = CASE WHEN kv.expires IS NOT NULL AND kv.expires <= ?4 THEN excluded.value ELSE kv.value + excluded.value END,
  expires = CASE WHEN kv.expires IS NOT NULL AND kv.expires <= ?4 THEN excluded.expires ELSE kv.expires END
RETURNING value
"""


class SqliteState(_Fallback):
    """StateStore in one SQLite file (WAL) that every process of this machine opens: `agent-router serve
    --workers N` shares per-key rates, provider limits and health through it. Single statements are atomic on
    their own; an admission is one BEGIN IMMEDIATE transaction. Expired rows are purged every `PURGE_S`, so the
    file stays the size of what is live. A failing file falls back to per-process state (see _Fallback)."""

    what = "shared state file"
    PURGE_S = 30.0

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 2.0, retry_after_s: float = 2.0,
                 clock: Any = time.time, local: MemoryState | None = None) -> None:
        self.path = Path(path).expanduser()
        self.where = str(self.path)
        self._errors = (sqlite3.Error, OSError)
        self._clock = clock
        self._lock = threading.Lock()  # one connection, used by the event loop and the ledger thread in turn
        self._next_purge = 0.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None,
                                        check_same_thread=False)
            from ..ledger.stores.sqlite import while_busy

            def setup() -> None:  # processes opening one new file at once race to switch it to WAL mode
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")  # counters, not records: no fsync per commit
                self.conn.execute("PRAGMA journal_size_limit = 4194304")
                self.conn.executescript(_SCHEMA)

            try:
                while_busy(setup, timeout_s)
            except BaseException:
                self.conn.close()
                raise
        except (sqlite3.Error, OSError) as e:
            raise SharedStateError(f"shared state file {self.path}: cannot open ({_one_line(e)})") from None
        self._init_fallback(retry_after_s, local or MemoryState(clock))

    def _detail(self, e: BaseException) -> str:
        return f"{type(e).__name__}: {_one_line(e)}"

    def _purge(self, now: float) -> None:
        """Drop expired rows (inside the caller's lock), at most once per PURGE_S in this process."""
        if now < self._next_purge:
            return
        self._next_purge = now + self.PURGE_S
        self.conn.execute("DELETE FROM kv WHERE expires <= ?", (now,))
        # A window's sum outlives its last admission by the window, so a key without a live sum has no live rows.
        self.conn.execute("DELETE FROM sums WHERE expires <= ?", (now,))
        self.conn.execute("DELETE FROM admissions WHERE expires <= ? AND key NOT IN (SELECT key FROM sums)", (now,))

    def get(self, key: str) -> float | None:
        def op() -> float | None:
            with self._lock:
                row = self.conn.execute("SELECT value FROM kv WHERE key = ? AND (expires IS NULL OR expires > ?)",
                                        (key, self._clock())).fetchone()
            return None if row is None else float(row[0])

        return self._run(op, lambda: self.local.get(key))

    def set(self, key: str, value: float, ttl_s: float | None = None) -> None:
        def op() -> None:
            with self._lock:
                now = self._clock()
                self._purge(now)
                self.conn.execute("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                                  (key, float(value), None if ttl_s is None else now + ttl_s))

        self._run(op, lambda: self.local.set(key, value, ttl_s))

    def incr(self, key: str, amount: float = 1.0, ttl_s: float | None = None) -> float:
        def op() -> float:
            with self._lock:
                now = self._clock()
                self._purge(now)
                row = self.conn.execute(_INCR_SQL, (key, float(amount), None if ttl_s is None else now + ttl_s,
                                                    now)).fetchone()
            return float(row[0])

        return self._run(op, lambda: self.local.incr(key, amount, ttl_s))

    def delete(self, key: str) -> None:
        def op() -> None:
            with self._lock:
                self.conn.execute("DELETE FROM kv WHERE key = ?", (key,))

        self._run(op, lambda: self.local.delete(key))

    def acquire(self, key: str, limit: int, window_s: float, amount: int = 1) -> Admission:
        # The log of admissions in the window and its running sum (as the Redis script keeps them): an admission
        # reads one sum and deletes only what left the window, whatever the number of rows in it.
        def op() -> Admission:
            with self._lock:
                c = self.conn
                c.execute("BEGIN IMMEDIATE")
                try:
                    now = self._clock()  # read once the write lock is held: admissions are in time order
                    self._purge(now)
                    since = now - window_s
                    gone = sum(a for (a,) in c.execute(
                        "DELETE FROM admissions WHERE key = ? AND at <= ? RETURNING amount", (key, since)))
                    row = c.execute("SELECT used FROM sums WHERE key = ?", (key,)).fetchone()
                    used = max(0, int(row[0]) - gone) if row else 0
                    if used + amount > limit and used > 0:
                        need, freed, retry = used + amount - limit, 0, window_s
                        for at, a in c.execute("SELECT at, amount FROM admissions WHERE key = ? ORDER BY at",
                                               (key,)):
                            freed += a
                            if freed >= need:
                                retry = at + window_s - now
                                break
                        if gone:
                            c.execute("UPDATE sums SET used = ? WHERE key = ?", (used, key))
                        c.execute("COMMIT")
                        return Admission(False, max(retry, 0.0), now, used, True)
                    c.execute("INSERT INTO admissions (key, at, amount, expires) VALUES (?, ?, ?, ?)",
                              (key, now, int(amount), now + window_s))
                    c.execute("INSERT INTO sums (key, used, expires) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                              "SET used = excluded.used, expires = excluded.expires",
                              (key, used + amount, now + window_s))
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
            return Admission(True, 0.0, now, used + amount, True)

        return self._run(op, lambda: self.local.acquire(key, limit, window_s, amount))

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _one_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def state_path(settings: Any) -> Path:
    """The sqlite state file: `state.path`, else beside the SQLite ledger (<ledger>.state), else
    $AGENT_ROUTER_HOME/state.db."""
    if settings.state.path:
        return Path(settings.state.path).expanduser()
    from ..ledger.core import default_path
    from ..settings import default_home

    if settings.ledger.backend == "sqlite":
        led = default_path(settings)
        return led.with_name(led.name + ".state")
    return default_home() / "state.db"


def open_state(settings: Any, clock: Any = time.time) -> MemoryState | RedisState | SqliteState:
    """The state store the settings ask for: RedisState when `redis.url_env` is set, SqliteState when
    `state.backend` is 'sqlite', else MemoryState (on `clock`, which tests replace with a fake one)."""
    rs = settings.redis
    if not rs.url_env:
        if settings.state.backend == "sqlite":
            return SqliteState(state_path(settings), clock=clock)
        return MemoryState(clock)
    url = os.environ.get(rs.url_env)
    if not url:
        raise SharedStateError(
            f"settings redis.url_env names the environment variable {rs.url_env}, which is not set; set it "
            "to the Redis URL (redis://host:port/db) or remove redis.url_env to keep limits per process")
    return RedisState(url, prefix=rs.key_prefix, timeout_s=rs.timeout_s, retry_after_s=rs.retry_after_s)
