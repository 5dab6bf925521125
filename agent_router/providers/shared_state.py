"""Rate limits, cooldowns, health and key rotation, shared by every process through Redis when configured.

Many agents on many machines share one provider account: its requests-per-minute and tokens-per-minute
limits, a model's cooldown after repeated failures, the position in a key rotation, and limits learned from
429 responses must be one state for all of them. `open_state(settings)` gives:

- `LocalState` when `redis.url_env` is unset: the same operations, in this process's memory;
- `RedisState` otherwise: each operation is one atomic Redis command or Lua script. When Redis cannot be
  reached, the operation runs on a `LocalState` instead (per-process limits, so N processes may admit up to
  N times a limit while it is away), a warning is logged once per outage, and Redis is tried again after
  `redis.retry_after_s`; the first success logs that shared state is back.

Both also provide the providers' key/value StateStore (get / set / incr / delete), so a `ProviderClient`
given `open_state(settings)` shares its health, cooldowns, key rotation, learned limits and rate counters.

Rate windows are sliding logs: an admission at time t counts against every window that contains t, so at
most `limit` units are admitted in any `window_s`-long interval, across all processes, timed by the Redis
server's clock (no clock skew between machines).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import AgentRouterError
from .state import MemoryState

log = logging.getLogger("agent_router.providers.shared_state")


class SharedStateError(AgentRouterError):
    """Shared state is configured but cannot be set up (missing environment variable or package)."""


@dataclass(frozen=True)
class Admission:
    """The answer to one rate-limit request."""

    allowed: bool
    retry_after_s: float  # 0 when allowed; else how long until enough of the window has passed
    at: float  # the admission (or refusal) time in seconds since the epoch, by the deciding clock
    used: int  # units counted in the window after this decision
    shared: bool  # True when Redis decided (all processes), False when this process did alone


class StateStore(Protocol):
    """The operations provider limits and health need; LocalState and RedisState both provide them."""

    shared: bool

    def acquire(self, key: str, limit: int, window_s: float, amount: int = 1) -> Admission:
        """Admit `amount` units under `limit` per sliding `window_s`, recording them if admitted."""
        ...

    def consume(self, key: str, window_s: float, amount: int) -> None:
        """Record `amount` units without checking (e.g. output tokens known only after the call)."""
        ...

    def set_cooldown(self, key: str, seconds: float) -> None:
        """Mark `key` (a model, a key) as cooling down for `seconds`; a longer running cooldown is kept."""
        ...

    def cooldown_left(self, key: str) -> float:
        """Seconds of cooldown left for `key`; 0.0 when none."""
        ...

    def clear_cooldown(self, key: str) -> None: ...

    def add_failure(self, key: str, ttl_s: float) -> int:
        """Count one more consecutive failure of `key` (forgotten `ttl_s` after the last); the new count."""
        ...

    def reset_failures(self, key: str) -> None: ...

    def failures(self, key: str) -> int: ...

    def rotate(self, key: str, n: int) -> int:
        """The next position 0..n-1 of a rotation shared by all processes (round robin over n keys)."""
        ...

    def set_value(self, key: str, value: float, ttl_s: float | None = None) -> None:
        """Remember a number (e.g. a limit learned from a 429), optionally for `ttl_s` seconds."""
        ...

    def get_value(self, key: str) -> float | None: ...

    # The providers' key/value StateStore (agent_router.providers.state): health, key positions, counters.
    def get(self, key: str) -> float | None: ...

    def set(self, key: str, value: float, ttl_s: float | None = None) -> None: ...

    def incr(self, key: str, amount: float = 1.0, ttl_s: float | None = None) -> float: ...

    def delete(self, key: str) -> None: ...


# --- in-process state --------------------------------------------------------------------------------------
class LocalState:
    """All operations in this process's memory; thread-safe. The default, and Redis's fallback."""

    shared = False

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._logs: dict[str, deque[tuple[float, int]]] = {}
        self._used: dict[str, int] = {}
        self._until: dict[str, float] = {}  # cooldown end times
        self._fails: dict[str, tuple[int, float]] = {}  # count, expiry
        self._rot: dict[str, int] = {}
        self._values: dict[str, tuple[float, float | None]] = {}
        self.kv = MemoryState(clock)  # the providers' key/value operations

    def _trim(self, key: str, now: float, window_s: float) -> deque[tuple[float, int]]:
        q = self._logs.setdefault(key, deque())
        while q and q[0][0] <= now - window_s:
            self._used[key] -= q.popleft()[1]
        return q

    def acquire(self, key: str, limit: int, window_s: float, amount: int = 1) -> Admission:
        with self._lock:
            now = self._clock()
            q = self._trim(key, now, window_s)
            used = self._used.get(key, 0)
            # An amount larger than the whole limit is admitted alone into an empty window, else never.
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

    def consume(self, key: str, window_s: float, amount: int) -> None:
        with self._lock:
            now = self._clock()
            self._trim(key, now, window_s).append((now, amount))
            self._used[key] = self._used.get(key, 0) + amount

    def set_cooldown(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._until[key] = max(until, self._until.get(key, 0.0))

    def cooldown_left(self, key: str) -> float:
        with self._lock:
            return max(0.0, self._until.get(key, 0.0) - self._clock())

    def clear_cooldown(self, key: str) -> None:
        with self._lock:
            self._until.pop(key, None)

    def add_failure(self, key: str, ttl_s: float) -> int:
        with self._lock:
            now = self._clock()
            n, exp = self._fails.get(key, (0, 0.0))
            n = n + 1 if exp > now else 1
            self._fails[key] = (n, now + ttl_s)
            return n

    def reset_failures(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)

    def failures(self, key: str) -> int:
        with self._lock:
            n, exp = self._fails.get(key, (0, 0.0))
            return n if exp > self._clock() else 0

    def rotate(self, key: str, n: int) -> int:
        if n <= 0:
            raise ValueError("rotate: n must be positive")
        with self._lock:
            i = self._rot.get(key, 0)
            self._rot[key] = i + 1
            return i % n

    def set_value(self, key: str, value: float, ttl_s: float | None = None) -> None:
        with self._lock:
            self._values[key] = (float(value), None if ttl_s is None else self._clock() + ttl_s)

    def get_value(self, key: str) -> float | None:
        with self._lock:
            v = self._values.get(key)
            if v is None or (v[1] is not None and v[1] <= self._clock()):
                return None
            return v[0]

    def get(self, key: str) -> float | None:
        return self.kv.get(key)

    def set(self, key: str, value: float, ttl_s: float | None = None) -> None:
        self.kv.set(key, value, ttl_s)

    def incr(self, key: str, amount: float = 1.0, ttl_s: float | None = None) -> float:
        return self.kv.incr(key, amount, ttl_s)

    def delete(self, key: str) -> None:
        self.kv.delete(key)


# --- Redis -------------------------------------------------------------------------------------------------
# KEYS: log (zset of "id:amount" scored by admission time in microseconds), sum (units in the log).
# ARGV: limit, window (us), amount, member id, force (1 = record without checking).
# TIME is read inside the script so every process is judged by the server's one clock.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local force = ARGV[5] == '1'
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
if not force and used + amount > limit and used > 0 then
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

# Keep the later of the running and the new cooldown end. ARGV: milliseconds.
_COOLDOWN_LUA = """
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
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


class RedisState:
    """StateStore on a Redis server, with LocalState as the fallback while Redis is unreachable."""

    def __init__(self, url: str, *, prefix: str = "agent_router", timeout_s: float = 0.5,
                 retry_after_s: float = 2.0, local: LocalState | None = None) -> None:
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
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
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
        self.retry_after_s = retry_after_s
        self.local = local or LocalState()
        self._acquire = self.client.register_script(_ACQUIRE_LUA)
        self._cooldown = self.client.register_script(_COOLDOWN_LUA)
        self._incr = self.client.register_script(_INCR_LUA)
        self._lock = threading.Lock()
        self._down_since: float | None = None  # monotonic time of the failure that started this outage
        self._next_try = 0.0

    # -- availability ------------------------------------------------------------------------------------
    @property
    def shared(self) -> bool:  # type: ignore[override]
        """True while Redis answers (or has not been tried since it came back into reach)."""
        return self._down_since is None

    def _run(self, op: Any, fallback: Any) -> Any:
        """op() on Redis; on a connection failure fallback() on local state. Logs once per outage."""
        now = time.monotonic()
        if self._down_since is not None and now < self._next_try:
            return fallback()
        try:
            result = op()
        except self._errors as e:
            with self._lock:
                first = self._down_since is None
                if first:
                    self._down_since = now
                self._next_try = now + self.retry_after_s
            if first:
                log.warning("Redis at %s unavailable (%s); using per-process limits and health until "
                            "it is back", self.where, type(e).__name__)
            return fallback()
        if self._down_since is not None:
            with self._lock:
                was = self._down_since
                self._down_since = None
            if was is not None:
                log.warning("Redis at %s answers again after %.1fs; limits and health are shared again",
                            self.where, now - was)
        return result

    def _k(self, kind: str, key: str) -> str:
        # {key} is a hash tag: both keys of a rate window land on one Redis Cluster slot.
        return f"{self.prefix}:{kind}:{{{key}}}"

    # -- operations --------------------------------------------------------------------------------------
    def _window(self, key: str, limit: int, window_s: float, amount: int, force: bool) -> Admission:
        res = self._acquire(
            keys=[self._k("rl", key) + ":log", self._k("rl", key) + ":sum"],
            args=[int(limit), max(1, int(window_s * 1_000_000)), int(amount), uuid.uuid4().hex,
                  "1" if force else "0"],
        )
        ok, retry_us, now_us, used = (int(x) for x in res)
        return Admission(bool(ok), max(retry_us, 0) / 1e6, now_us / 1e6, used, True)

    def acquire(self, key: str, limit: int, window_s: float, amount: int = 1) -> Admission:
        return self._run(lambda: self._window(key, limit, window_s, amount, False),
                         lambda: self.local.acquire(key, limit, window_s, amount))

    def consume(self, key: str, window_s: float, amount: int) -> None:
        self._run(lambda: self._window(key, 0, window_s, amount, True),
                  lambda: self.local.consume(key, window_s, amount))

    def set_cooldown(self, key: str, seconds: float) -> None:
        ms = max(1, int(seconds * 1000))
        self._run(lambda: self._cooldown(keys=[self._k("cd", key)], args=[ms]),
                  lambda: self.local.set_cooldown(key, seconds))

    def cooldown_left(self, key: str) -> float:
        def op() -> float:
            ms = int(self.client.pttl(self._k("cd", key)))
            return ms / 1000 if ms > 0 else 0.0

        return self._run(op, lambda: self.local.cooldown_left(key))

    def clear_cooldown(self, key: str) -> None:
        self._run(lambda: self.client.delete(self._k("cd", key)), lambda: self.local.clear_cooldown(key))

    def add_failure(self, key: str, ttl_s: float) -> int:
        def op() -> int:
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(self._k("fail", key))
            pipe.pexpire(self._k("fail", key), max(1, int(ttl_s * 1000)))
            return int(pipe.execute()[0])

        return self._run(op, lambda: self.local.add_failure(key, ttl_s))

    def reset_failures(self, key: str) -> None:
        self._run(lambda: self.client.delete(self._k("fail", key)), lambda: self.local.reset_failures(key))

    def failures(self, key: str) -> int:
        return self._run(lambda: int(self.client.get(self._k("fail", key)) or 0),
                         lambda: self.local.failures(key))

    def rotate(self, key: str, n: int) -> int:
        if n <= 0:
            raise ValueError("rotate: n must be positive")
        return self._run(lambda: (int(self.client.incr(self._k("rot", key))) - 1) % n,
                         lambda: self.local.rotate(key, n))

    def set_value(self, key: str, value: float, ttl_s: float | None = None) -> None:
        px = None if ttl_s is None else max(1, int(ttl_s * 1000))
        self._run(lambda: self.client.set(self._k("val", key), repr(float(value)), px=px),
                  lambda: self.local.set_value(key, value, ttl_s))

    def get_value(self, key: str) -> float | None:
        def op() -> float | None:
            v = self.client.get(self._k("val", key))
            return None if v is None else float(v)

        return self._run(op, lambda: self.local.get_value(key))

    # -- the providers' key/value StateStore ---------------------------------------------------------------
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


def open_state(settings: Any) -> StateStore:
    """The state store the settings ask for: RedisState when `redis.url_env` is set, else LocalState."""
    rs = settings.redis
    if not rs.url_env:
        return LocalState()
    url = os.environ.get(rs.url_env)
    if not url:
        raise SharedStateError(
            f"settings redis.url_env names the environment variable {rs.url_env}, which is not set; set it "
            "to the Redis URL (redis://host:port/db) or remove redis.url_env to keep limits per process")
    return RedisState(url, prefix=rs.key_prefix, timeout_s=rs.timeout_s, retry_after_s=rs.retry_after_s)
