"""Virtual keys: made by an admin, stored as SHA-256 hashes in the ledger database (table `gateway_keys`), each
with a budget, a request rate and the highest tier it may reach. The master key (from the environment) is an
admin key and a client key without limits. Key values never reach the ledger, logs or errors: rows name the
key by its `name` (ledger column agent_id)."""

from __future__ import annotations

import hashlib
import hmac
import secrets as pysecrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import secrets
from ..providers.limits import Limiter
from ..settings import TIERS
from .errors import BadRequest, NotFound

MASTER = "master"
PREFIX = "sk-ar-"
CACHE_S = 2.0  # a revoked key stops working within this many seconds in every worker


@dataclass
class ClientKey:
    name: str
    budget_usd: float | None = None
    spent_usd: float = 0.0
    rpm: int | None = None
    max_tier: str | None = None
    admin: bool = False
    stored: bool = False  # a row of gateway_keys (not the master key, nor the keyless local client): spend counted

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "budget_usd": self.budget_usd, "spent_usd": round(self.spent_usd, 8),
                "rpm": self.rpm, "max_tier": self.max_tier, "admin": self.admin}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """Looks keys up (cached briefly), makes, lists and revokes them, and counts their spend and rate."""

    def __init__(self, ledger: Any, master_key: str | None, state: Any):
        self.ledger = ledger
        self.store = ledger.store
        self.master = master_key or None
        if self.master:
            secrets.remember(self.master)
        self.limiter = Limiter(state, max_wait_s=0.0)
        self._cache: dict[str, tuple[float, ClientKey | None]] = {}
        self._any: tuple[float, bool] = (0.0, False)

    def configured(self) -> bool:
        """Whether clients must present a key: a master key is set or an active virtual key exists."""
        if self.master:
            return True
        at, known = self._any
        now = time.monotonic()
        if now - at < CACHE_S:
            return known
        rows = self.store.read("SELECT 1 AS x FROM gateway_keys WHERE revoked IS NULL LIMIT 1")
        self._any = (now, bool(rows))
        return bool(rows)

    def lookup(self, presented: str) -> ClientKey | None:
        if self.master and hmac.compare_digest(presented.encode(), self.master.encode()):
            return ClientKey(MASTER, admin=True)
        h = digest(presented)
        now = time.monotonic()
        hit = self._cache.get(h)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        rows = self.store.read(
            self.store.sql("SELECT name, budget_usd, spent_usd, rpm, max_tier, admin FROM gateway_keys"
                           " WHERE key_hash = ? AND revoked IS NULL"), [h])
        key = None
        if rows:
            r = rows[0]
            key = ClientKey(r["name"], r["budget_usd"], float(r["spent_usd"] or 0.0), r["rpm"], r["max_tier"],
                            bool(r["admin"]), stored=True)
            if hit is None:
                secrets.remember(presented)  # a valid key is masked in every log line from now on
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[h] = (now, key)
        return key

    def create(self, name: str, budget_usd: float | None = None, rpm: int | None = None,
               max_tier: str | None = None, admin: bool = False) -> tuple[str, ClientKey]:
        if not isinstance(name, str) or not name.strip() or len(name) > 100 or name == MASTER:
            raise BadRequest("name: 1 to 100 characters, not 'master', is required", param="name")
        if budget_usd is not None and (not isinstance(budget_usd, int | float) or budget_usd < 0):
            raise BadRequest("budget_usd: a number >= 0 is required", param="budget_usd")
        if rpm is not None and (not isinstance(rpm, int) or isinstance(rpm, bool) or rpm <= 0):
            raise BadRequest("rpm: a positive whole number is required", param="rpm")
        if max_tier is not None and max_tier not in TIERS:
            raise BadRequest(f"max_tier: one of {', '.join(TIERS)} is required", param="max_tier")
        value = PREFIX + pysecrets.token_urlsafe(24)
        secrets.remember(value)
        now = datetime.now(UTC).isoformat()
        taken = self.store.read(self.store.sql("SELECT 1 AS x FROM gateway_keys WHERE name = ?"), [name])
        if taken:
            raise BadRequest(f"name: a key named {name!r} exists already", param="name")
        sql = self.store.sql(
            "INSERT INTO gateway_keys (name, key_hash, prefix, budget_usd, spent_usd, rpm, max_tier, admin, created)"
            " VALUES (?, ?, ?, ?, 0.0, ?, ?, ?, ?)")
        args = (name, digest(value), value[: len(PREFIX) + 4], budget_usd, rpm, max_tier, int(admin), now)
        self.store.write(lambda s: s.conn.execute(sql, args))
        self._any = (0.0, False)
        return value, ClientKey(name, budget_usd, 0.0, rpm, max_tier, admin, stored=True)

    def list(self) -> list[dict[str, Any]]:
        rows = self.store.read("SELECT name, prefix, budget_usd, spent_usd, rpm, max_tier, admin, created, revoked"
                               " FROM gateway_keys ORDER BY id")
        return [{**r, "admin": bool(r["admin"])} for r in rows]

    def revoke(self, name: str) -> None:
        now = datetime.now(UTC).isoformat()
        sql = self.store.sql("UPDATE gateway_keys SET revoked = ? WHERE name = ? AND revoked IS NULL")

        def tx(s: Any) -> int:
            return s.conn.execute(sql, (now, name)).rowcount

        if not self.store.write(tx):
            raise NotFound(f"no active key named {name!r}", param="name", code="key_not_found")
        self._cache.clear()
        self._any = (0.0, False)

    def add_spend(self, name: str, usd: float) -> None:
        """Count a call's cost against its key, less what `reserve` counted already (on the ledger thread)."""
        if name != MASTER and usd:
            self.store.write(self.spend_in({name: usd}))

    def spend_in(self, spend: dict[str, float]) -> Any:
        """`add_spend` for several keys as one function of a store, to run inside a transaction already open
        (the ledger writer's, with the calls' rows: `Ledger.record_many(rows, also=...)`)."""
        sql = self.store.sql("UPDATE gateway_keys SET spent_usd = spent_usd + ? WHERE name = ?")
        args = [(float(usd), name) for name, usd in spend.items() if name != MASTER and usd]

        def tx(s: Any) -> None:
            for a in args:
                s.conn.execute(sql, a)

        return tx

    def reserve(self, name: str, usd: float) -> bool:
        """Count a call's estimate against its key now, if it fits the key's budget: one conditional UPDATE, so
        concurrent requests on every worker and machine sharing the ledger cannot all take the same headroom.
        The call's real cost replaces the estimate when its row is written (`add_spend(cost - estimate)`)."""
        sql = self.store.sql("UPDATE gateway_keys SET spent_usd = spent_usd + ? WHERE name = ? AND revoked IS NULL"
                             " AND (budget_usd IS NULL OR spent_usd + ? <= budget_usd)")
        return bool(self.store.write(lambda s: s.conn.execute(sql, (float(usd), name, float(usd))).rowcount))

    def spent(self, name: str) -> float:
        rows = self.store.read(self.store.sql("SELECT spent_usd FROM gateway_keys WHERE name = ?"), [name])
        return float(rows[0]["spent_usd"] or 0.0) if rows else 0.0

    def rate_wait(self, key: ClientKey) -> float:
        """Seconds until this key may send again (0: now, and the request is counted)."""
        if not key.rpm:
            return 0.0
        alias = f"key:{key.name}"
        wait = self.limiter.wait_s(alias, {"rpm": float(key.rpm)}, 0)
        if wait == 0 and not self.limiter.state.shared:  # a shared state admitted (and counted) atomically
            self.limiter.add(alias, rpm=1)
        return wait
