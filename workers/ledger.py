"""The budget ledger: reserve an estimate before a provider call, settle the actual usage
after it, release the reservation when the call fails.

Every call is charged to a few :class:`Scope` s (tenant per UTC day and month, job, job and
tier; see :func:`budget_scopes`). A scope counts USD and tokens, settled and reserved; a
capped scope refuses a reservation that would take settled + reserved past its cap.
Settling may go past a cap (the provider has already charged) and is always recorded.

Money is counted in integer **pico-USD** (1e-12 USD, the quantum of :mod:`routing.cost`):
a reservation is rounded up to the next pico-USD, a settlement to the nearest (half-even,
as ``routing.cost.call_cost``, so the ledger's sums equal the cost column's exactly), a
cap down. Redis keeps each total as a 64-bit integer (``HINCRBY``): exact up to
9,223,372 USD per scope. Lua numbers are doubles, so the scripts never do arithmetic on
amounts: they add with ``HINCRBY`` on string arguments and compare decimal strings.

A reservation expires ``reservation_ttl_s`` after it was made (Redis server time): it then
stops counting against caps. Each scope keeps its live reservations in a sorted set scored
by expiry; every script that reads or checks a scope first drops the expired ones and takes
their amounts off the scope's reserved totals (lazy, exact, no sweeper process).

Two backends implement :class:`Ledger`: :class:`RedisLedger` (atomic Lua, shared by every
worker) and :class:`MemoryLedger` (the local executor, tests).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

import redis

from routing.resilience import BudgetLimit, BudgetSpec

PICO = 12  # amounts are integers in units of 10**-PICO USD
PERIOD_MARGIN_S = 86400  # a tenant period's counters outlive the period by a day
JOB_SCOPE_TTL_S = 7 * 86400  # as Settings.job_ttl_s; refreshed on every write
RECORD_TTL_S = 7 * 86400  # how long a settled/released key is remembered (idempotency)


@dataclass(frozen=True)
class Scope:
    """A counter a call is charged to, with its caps (``None`` = tracked, not capped)."""

    id: str  # e.g. "tenant:acme:day:2026-11-28", "job:J1", "job:J1:tier:expert"
    usd: Decimal | None
    tokens: int | None  # cap on input + output tokens
    ttl_s: int  # expiry of the scope's counters (period length + a margin)

    def __post_init__(self) -> None:
        if self.ttl_s <= 0 or (self.usd is not None and self.usd < 0):
            raise ValueError(f"scope {self.id!r}: ttl_s must be > 0 and usd ≥ 0")
        if self.tokens is not None and self.tokens < 0:
            raise ValueError(f"scope {self.id!r}: tokens must be ≥ 0")


@dataclass(frozen=True)
class Usage:
    settled_usd: Decimal
    reserved_usd: Decimal
    settled_tokens: int
    reserved_tokens: int


class Ledger(Protocol):
    def reserve(self, key: str, scopes: Sequence[Scope], usd: Decimal, tokens: int) -> bool:
        """Reserve on every scope or none; False when a capped scope's settled + reserved +
        this amount would exceed its cap (USD or tokens). Idempotent per key: a key with a
        live reservation or a settlement returns True and adds nothing."""
        ...

    def settle(
        self, key: str, usd: Decimal, tokens: int, scopes: Sequence[Scope] | None = None
    ) -> None:
        """Replace the key's reservation, or its previous settlement (the last wins), by
        the actual usage, on the scopes stored at reserve time, else on ``scopes``. May
        exceed a cap. KeyError only when the key is unknown and ``scopes`` is None."""
        ...

    def release(self, key: str) -> None:
        """Drop an unsettled reservation (no-op when settled, released or unknown)."""
        ...

    def usage(self, scope_id: str) -> Usage: ...


# ---------------------------------------------------------------- scopes and units


def budget_scopes(
    spec: BudgetSpec,
    tenant: str,
    job_id: str,
    tier: str,
    now: datetime,
    *,
    job_ttl_s: int = JOB_SCOPE_TTL_S,
) -> list[Scope]:
    """The four scopes a call is charged to, capped or not (uncapped ones still track
    usage): tenant per UTC day, tenant per UTC month (tenant caps fall back to ``"*"``),
    the job, the job and tier. ``now`` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("budget_scopes needs a timezone-aware `now` (e.g. datetime.now(UTC))")
    now = now.astimezone(UTC)
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    month = datetime(now.year, now.month, 1, tzinfo=UTC)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)

    def until(end: datetime) -> int:
        return int(-(-(end - now).total_seconds() // 1)) + PERIOD_MARGIN_S

    def scope(scope_id: str, limit: BudgetLimit, ttl_s: int) -> Scope:
        return Scope(scope_id, limit.usd, limit.tokens, ttl_s)

    return [
        scope(
            f"tenant:{tenant}:day:{day:%Y-%m-%d}",
            spec.for_tenant(spec.tenant_day, tenant),
            until(day + timedelta(days=1)),
        ),
        scope(
            f"tenant:{tenant}:month:{month:%Y-%m}",
            spec.for_tenant(spec.tenant_month, tenant),
            until(next_month),
        ),
        scope(f"job:{job_id}", spec.job, job_ttl_s),
        scope(f"job:{job_id}:tier:{tier}", spec.tier.get(tier, BudgetLimit()), job_ttl_s),
    ]


def to_pico(usd: Decimal, rounding: str = ROUND_HALF_EVEN) -> int:
    """USD → integer pico-USD (reserve: ROUND_CEILING, settle: half-even, cap: floor)."""
    if not usd.is_finite() or usd < 0:
        raise ValueError(f"amount must be a finite USD amount ≥ 0, got {usd}")
    return int(usd.scaleb(PICO).to_integral_value(rounding))


def from_pico(amount: int) -> Decimal:
    return Decimal(amount).scaleb(-PICO)


def _check(scopes: Sequence[Scope], tokens: int) -> None:
    if tokens < 0:
        raise ValueError(f"tokens must be ≥ 0, got {tokens}")
    ids = [s.id for s in scopes]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate scopes: {ids}")


# ---------------------------------------------------------------- in memory


@dataclass
class _Counters:
    settled_usd: int = 0
    reserved_usd: int = 0
    settled_tokens: int = 0
    reserved_tokens: int = 0
    pending: dict[str, tuple[float, int, int]] = field(default_factory=dict)  # key → exp, $, t

    def add(self, kind: str, usd: int, tokens: int) -> None:
        setattr(self, f"{kind}_usd", getattr(self, f"{kind}_usd") + usd)
        setattr(self, f"{kind}_tokens", getattr(self, f"{kind}_tokens") + tokens)

    def purge(self, now: float) -> None:
        for key, (expires, usd, tokens) in list(self.pending.items()):
            if expires <= now:
                del self.pending[key]
                self.add("reserved", -usd, -tokens)

    def unpend(self, key: str) -> None:
        if key in self.pending:
            _, usd, tokens = self.pending.pop(key)
            self.add("reserved", -usd, -tokens)


@dataclass
class _Record:
    state: str  # reserved | settled | released
    usd: int
    tokens: int
    scopes: tuple[str, ...]
    expires: float = 0.0


class MemoryLedger:
    """In-process ledger with the same semantics as the Redis one (thread-safe). Scope
    counters never expire here: the local executor's process is short-lived."""

    def __init__(
        self, reservation_ttl_s: float = 3600, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = reservation_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._scopes: dict[str, _Counters] = {}
        self._records: dict[str, _Record] = {}

    def _counters(self, scope_id: str, now: float) -> _Counters:
        counters = self._scopes.setdefault(scope_id, _Counters())
        counters.purge(now)
        return counters

    def reserve(self, key: str, scopes: Sequence[Scope], usd: Decimal, tokens: int) -> bool:
        _check(scopes, tokens)
        amount = to_pico(usd, ROUND_CEILING)
        with self._lock:
            now = self._clock()
            rec = self._records.get(key)
            if rec and (rec.state == "settled" or (rec.state == "reserved" and rec.expires > now)):
                return True
            counters = [self._counters(s.id, now) for s in scopes]
            for s, c in zip(scopes, counters, strict=True):
                total_usd = c.settled_usd + c.reserved_usd + amount
                total_tokens = c.settled_tokens + c.reserved_tokens + tokens
                if (s.usd is not None and total_usd > to_pico(s.usd, ROUND_FLOOR)) or (
                    s.tokens is not None and total_tokens > s.tokens
                ):
                    return False
            expires = now + self._ttl
            for c in counters:
                c.add("reserved", amount, tokens)
                c.pending[key] = (expires, amount, tokens)
            ids = tuple(s.id for s in scopes)
            self._records[key] = _Record("reserved", amount, tokens, ids, expires)
            return True

    def settle(
        self, key: str, usd: Decimal, tokens: int, scopes: Sequence[Scope] | None = None
    ) -> None:
        _check(scopes or (), tokens)
        amount = to_pico(usd)
        with self._lock:
            now = self._clock()
            rec = self._records.get(key)
            if rec is None:
                if scopes is None:
                    raise KeyError(f"unknown ledger key {key!r} and no scopes given")
                rec = _Record("released", 0, 0, tuple(s.id for s in scopes))
            for scope_id in rec.scopes:
                c = self._counters(scope_id, now)
                if rec.state == "reserved":
                    c.unpend(key)
                elif rec.state == "settled":
                    c.add("settled", -rec.usd, -rec.tokens)
                c.add("settled", amount, tokens)
            self._records[key] = _Record("settled", amount, tokens, rec.scopes)

    def release(self, key: str) -> None:
        with self._lock:
            rec = self._records.get(key)
            if rec is None or rec.state != "reserved":
                return
            for scope_id in rec.scopes:
                self._counters(scope_id, self._clock()).unpend(key)
            rec.state = "released"

    def usage(self, scope_id: str) -> Usage:
        with self._lock:
            c = self._scopes.get(scope_id) or _Counters()
            c.purge(self._clock())
            return Usage(
                from_pico(c.settled_usd),
                from_pico(c.reserved_usd),
                c.settled_tokens,
                c.reserved_tokens,
            )


# ---------------------------------------------------------------- Redis

# Shared helpers, prepended to every script. A scope hash holds settled_usd, reserved_usd,
# settled_tokens, reserved_tokens and total_usd / total_tokens (= settled + reserved), all
# integer strings. A pending member is "<usd pico>|<tokens>|<key>", scored by expiry (ms).
_HELPERS = """
local function neg(s) if s == '0' then return '0' end return '-' .. s end
local function exceeds(total, cap)
  if string.byte(total, 1) == 45 then return false end
  if #total ~= #cap then return #total > #cap end
  for i = 1, #total do
    local a, b = string.byte(total, i), string.byte(cap, i)
    if a ~= b then return a > b end
  end
  return false
end
local function add(h, kind, usd, tokens)
  redis.call('HINCRBY', h, kind .. '_usd', usd)
  redis.call('HINCRBY', h, kind .. '_tokens', tokens)
  redis.call('HINCRBY', h, 'total_usd', usd)
  redis.call('HINCRBY', h, 'total_tokens', tokens)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function purge(h, z, now)
  local cutoff = string.format('%d', now)
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', cutoff)
  for _, m in ipairs(expired) do
    local usd, tokens = string.match(m, '^(%d+)|(%d+)|')
    add(h, 'reserved', neg(usd), neg(tokens))
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', cutoff) end
end
local function unpend(h, z, member, usd, tokens)
  if member and redis.call('ZREM', z, member) == 1 then
    add(h, 'reserved', neg(usd), neg(tokens))
  end
end
local function touch(h, z, ttl)
  redis.call('EXPIRE', h, ttl)
  redis.call('EXPIRE', z, ttl)
end
"""

# KEYS[1] reservation record hash; KEYS[1+i] scope i hash, KEYS[1+n+i] scope i pending zset
# ARGV[1] n scopes, ARGV[2] usd (pico, ceil), ARGV[3] tokens, ARGV[4] reservation TTL ms,
# ARGV[5] record TTL s, ARGV[6] scope ids JSON, ARGV[7] scope TTLs JSON, ARGV[8] pending
# member, then per scope i: ARGV[6+3i] USD cap (pico, '' = none), ARGV[7+3i] token cap
# ('' = none), ARGV[8+3i] TTL s
# Returns 1 when reserved now or already (a live reservation, or settled), 0 when over a cap.
# Each total is raised, compared as a decimal string with the cap, then put back; on
# success add() raises it for good.
_RESERVE_LUA = (
    _HELPERS
    + """
local now = now_ms()
local rec = redis.call('HMGET', KEYS[1], 'state', 'exp')
if rec[1] == 'settled' or (rec[1] == 'reserved' and tonumber(rec[2]) > now) then return 1 end
local n = tonumber(ARGV[1])
for i = 1, n do purge(KEYS[1 + i], KEYS[1 + n + i], now) end
local over, done = false, 0
for i = 1, n do
  local h, usd_cap, tok_cap = KEYS[1 + i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  redis.call('HINCRBY', h, 'total_usd', ARGV[2])
  redis.call('HINCRBY', h, 'total_tokens', ARGV[3])
  done = i
  if (usd_cap ~= '' and exceeds(redis.call('HGET', h, 'total_usd'), usd_cap))
    or (tok_cap ~= '' and exceeds(redis.call('HGET', h, 'total_tokens'), tok_cap)) then
    over = true
    break
  end
end
for i = 1, done do
  redis.call('HINCRBY', KEYS[1 + i], 'total_usd', neg(ARGV[2]))
  redis.call('HINCRBY', KEYS[1 + i], 'total_tokens', neg(ARGV[3]))
  redis.call('EXPIRE', KEYS[1 + i], ARGV[8 + 3 * i])
end
if over then return 0 end
local exp = string.format('%d', now + tonumber(ARGV[4]))
for i = 1, n do
  add(KEYS[1 + i], 'reserved', ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[1 + n + i], exp, ARGV[8])
  touch(KEYS[1 + i], KEYS[1 + n + i], ARGV[8 + 3 * i])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'reserved', 'usd', ARGV[2], 'tokens', ARGV[3],
  'exp', exp, 'member', ARGV[8], 'scopes', ARGV[6], 'ttls', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
)

# KEYS as for reserve, built from the scope ids of ARGV[2]
# ARGV[1] n scopes, ARGV[2] scope ids JSON, ARGV[3] scope TTLs JSON, ARGV[4] usd (pico),
# ARGV[5] tokens, ARGV[6] record TTL s, ARGV[6+i] scope i TTL s
# Returns 1 when settled (on the record's scopes, or on ARGV[2] when there is no record),
# -1 when the record's scopes are not ARGV[2] (the caller reads them and retries).
_SETTLE_LUA = (
    _HELPERS
    + """
local rec = redis.call('HMGET', KEYS[1], 'scopes', 'state', 'usd', 'tokens', 'member')
if rec[1] and rec[1] ~= ARGV[2] then return -1 end
local n = tonumber(ARGV[1])
for i = 1, n do
  local h, z = KEYS[1 + i], KEYS[1 + n + i]
  if rec[2] == 'reserved' then unpend(h, z, rec[5], rec[3], rec[4])
  elseif rec[2] == 'settled' then add(h, 'settled', neg(rec[3]), neg(rec[4])) end
  add(h, 'settled', ARGV[4], ARGV[5])
  touch(h, z, ARGV[6 + i])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'settled', 'usd', ARGV[4], 'tokens', ARGV[5],
  'scopes', ARGV[2], 'ttls', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""
)

# KEYS as for reserve, built from the scope ids of ARGV[2]
# ARGV[1] n scopes, ARGV[2] the record's scope ids JSON as read by the caller
# Returns 1 when released, 0 when there was nothing to release (no record, settled,
# released), -1 when the record's scopes are not ARGV[2] (the caller retries).
_RELEASE_LUA = (
    _HELPERS
    + """
local rec = redis.call('HMGET', KEYS[1], 'scopes', 'state', 'usd', 'tokens', 'member')
if not rec[1] then return 0 end
if rec[1] ~= ARGV[2] then return -1 end
if rec[2] ~= 'reserved' then return 0 end
local n = tonumber(ARGV[1])
for i = 1, n do unpend(KEYS[1 + i], KEYS[1 + n + i], rec[5], rec[3], rec[4]) end
redis.call('HSET', KEYS[1], 'state', 'released')
redis.call('HDEL', KEYS[1], 'member', 'exp')
return 1
"""
)

# KEYS[1] scope hash, KEYS[2] scope pending zset
# Returns {settled_usd, reserved_usd, settled_tokens, reserved_tokens} after dropping
# expired reservations (integer strings, or false for 0).
_USAGE_LUA = (
    _HELPERS
    + """
purge(KEYS[1], KEYS[2], now_ms())
return redis.call('HMGET', KEYS[1], 'settled_usd', 'reserved_usd', 'settled_tokens',
  'reserved_tokens')
"""
)

_Placement = tuple[list[str], list[int]]  # scope ids, their TTLs


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class RedisLedger:
    """The ledger in Redis, shared by every worker; each operation is one Lua call.

    Every key a script touches is declared in KEYS, so settle and release must know the
    scopes the key was reserved on: settle first tries the scopes it was given (one round
    trip when they match, or when the key is unknown), release reads them; the script
    checks them and asks for a retry when the stored ones differ."""

    _RETRIES = 8

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "br:ledger:",
        reservation_ttl_s: float = 3600,
        *,
        record_ttl_s: int = RECORD_TTL_S,
    ) -> None:
        self._r = client
        self._prefix = prefix
        self._ttl_ms = int(reservation_ttl_s * 1000)
        self._record_ttl = max(record_ttl_s, int(-(-reservation_ttl_s // 1)))
        self._reserve = client.register_script(_RESERVE_LUA)
        self._settle = client.register_script(_SETTLE_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._usage = client.register_script(_USAGE_LUA)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisLedger:
        return cls(redis.Redis.from_url(url, decode_responses=True), **kwargs)

    def record_key(self, key: str) -> str:
        """Hash: one key's reservation or settlement (state, usd, tokens, exp, member,
        scopes and ttls as JSON lists)."""
        return f"{self._prefix}res:{key}"

    def scope_key(self, scope_id: str) -> str:
        """Hash: a scope's settled / reserved / total USD (pico) and tokens."""
        return f"{self._prefix}scope:{scope_id}"

    def pending_key(self, scope_id: str) -> str:
        """Sorted set: a scope's live reservations ("usd|tokens|key") by expiry (ms)."""
        return f"{self._prefix}pending:{scope_id}"

    def _keys(self, key: str, scope_ids: Sequence[str]) -> list[str]:
        return [
            self.record_key(key),
            *(self.scope_key(s) for s in scope_ids),
            *(self.pending_key(s) for s in scope_ids),
        ]

    def _stored(self, key: str) -> _Placement | None:
        ids, ttls = (_text(v) for v in self._r.hmget(self.record_key(key), ["scopes", "ttls"]))
        return None if ids is None or ttls is None else (json.loads(ids), json.loads(ttls))

    def reserve(self, key: str, scopes: Sequence[Scope], usd: Decimal, tokens: int) -> bool:
        _check(scopes, tokens)
        amount = to_pico(usd, ROUND_CEILING)
        ids = [s.id for s in scopes]
        args: list[Any] = [len(scopes), amount, tokens, self._ttl_ms, self._record_ttl]
        args += [_json(ids), _json([s.ttl_s for s in scopes]), f"{amount}|{tokens}|{key}"]
        for s in scopes:
            cap = "" if s.usd is None else to_pico(s.usd, ROUND_FLOOR)
            args += [cap, "" if s.tokens is None else s.tokens, s.ttl_s]
        return bool(int(self._reserve(keys=self._keys(key, ids), args=args)) == 1)

    def settle(
        self, key: str, usd: Decimal, tokens: int, scopes: Sequence[Scope] | None = None
    ) -> None:
        _check(scopes or (), tokens)
        amount = to_pico(usd)
        given = None if scopes is None else ([s.id for s in scopes], [s.ttl_s for s in scopes])
        guess = given
        for _ in range(self._RETRIES):
            if guess is None:
                guess = self._stored(key) or given
            if guess is None:
                raise KeyError(f"unknown ledger key {key!r} and no scopes given")
            ids, ttls = guess
            args: list[Any] = [len(ids), _json(ids), _json(ttls), amount, tokens]
            args += [self._record_ttl, *ttls]
            if int(self._settle(keys=self._keys(key, ids), args=args)) == 1:
                return
            guess = None
        raise RuntimeError(f"ledger key {key!r} kept changing during settle")

    def release(self, key: str) -> None:
        for _ in range(self._RETRIES):
            stored = self._stored(key)
            if stored is None:
                return
            ids = stored[0]
            if int(self._release(keys=self._keys(key, ids), args=[len(ids), _json(ids)])) >= 0:
                return
        raise RuntimeError(f"ledger key {key!r} kept changing during release")

    def usage(self, scope_id: str) -> Usage:
        keys = [self.scope_key(scope_id), self.pending_key(scope_id)]
        su, ru, st, rt = (int(_text(v) or 0) for v in self._usage(keys=keys, args=[]))
        return Usage(from_pico(su), from_pico(ru), st, rt)
