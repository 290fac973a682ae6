"""The budget ledger: reserve an estimate before a provider call, settle the actual usage
after it, release the reservation when the call fails.

Every call is charged to a few scopes (tenant per UTC day and month, job, job and tier:
:func:`routing.resilience.budget_scopes`). A scope counts USD and tokens, settled and reserved; a
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

Two backends implement :class:`Ledger`: ``RedisLedger`` (``workers/guards/ledger_redis.py``:
atomic Lua, shared by every worker) and :class:`MemoryLedger` here (the local executor,
tests). The serving engine awaits
``reserve``, ``settle`` and ``release`` on this process's I/O loop (``redis.asyncio``, never
a blocking call there); ``usage`` is a synchronous read for operators — metrics, status,
tests — made outside that loop.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Protocol

from routing.resilience import Scope

PICO = 12  # amounts are integers in units of 10**-PICO USD
RECORD_TTL_S = 7 * 86400  # how long a settled/released key is remembered (idempotency)


@dataclass(frozen=True)
class Usage:
    settled_usd: Decimal
    reserved_usd: Decimal
    settled_tokens: int
    reserved_tokens: int


@dataclass(frozen=True)
class Hold:
    """One key's amount in a call on many keys (a provider batch's rows)."""

    key: str
    usd: Decimal
    tokens: int


class Ledger(Protocol):
    async def reserve(
        self,
        key: str,
        scopes: Sequence[Scope],
        usd: Decimal,
        tokens: int,
        ttl_s: float | None = None,
    ) -> bool:
        """Reserve on every scope or none; False when a capped scope's settled + reserved +
        this amount would exceed its cap (USD or tokens). Idempotent per key: a key with a
        live reservation or a settlement returns True and adds nothing. ``ttl_s`` overrides
        ``reservation_ttl_s`` for this reservation (a provider batch is held up to its
        deadline)."""
        ...

    async def reserve_many(
        self, holds: Sequence[Hold], scopes: Sequence[Scope], ttl_s: float | None = None
    ) -> list[bool]:
        """:meth:`reserve` of each hold on the same scopes, in order (each fits or not after
        the ones before it), in one atomic step per part of the list."""
        ...

    async def settle(
        self, key: str, usd: Decimal, tokens: int, scopes: Sequence[Scope] | None = None
    ) -> None:
        """Replace the key's reservation, or its previous settlement (the last wins), by
        the actual usage, on the scopes stored at reserve time, else on ``scopes``. May
        exceed a cap. KeyError only when the key is unknown and ``scopes`` is None."""
        ...

    async def settle_many(self, holds: Sequence[Hold], scopes: Sequence[Scope]) -> None:
        """:meth:`settle` of each hold (its actual usage), the scopes given for all."""
        ...

    async def release(self, key: str, scopes: Sequence[Scope] | None = None) -> None:
        """Drop an unsettled reservation (no-op when settled, released or unknown);
        ``scopes``, the ones it was reserved on, save a read."""
        ...

    def usage(self, scope_id: str) -> Usage:
        """A scope's totals now (synchronous: for operators, never on the I/O loop)."""
        ...


# ---------------------------------------------------------------- units


def to_pico(usd: Decimal, rounding: str = ROUND_HALF_EVEN) -> int:
    """USD → integer pico-USD (reserve: ROUND_CEILING, settle: half-even, cap: floor)."""
    if not usd.is_finite() or usd < 0:
        raise ValueError(f"amount must be a finite USD amount ≥ 0, got {usd}")
    return int(usd.scaleb(PICO).to_integral_value(rounding))


def from_pico(amount: int) -> Decimal:
    return Decimal(amount).scaleb(-PICO)


def validate(scopes: Sequence[Scope], tokens: int) -> None:
    """A hold's tokens are ≥ 0 and its scopes distinct."""
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
    expiries: list[tuple[float, str]] = field(default_factory=list)  # heap: (exp, key)

    def add(self, kind: str, usd: int, tokens: int) -> None:
        setattr(self, f"{kind}_usd", getattr(self, f"{kind}_usd") + usd)
        setattr(self, f"{kind}_tokens", getattr(self, f"{kind}_tokens") + tokens)

    def hold(self, key: str, expires: float, usd: int, tokens: int) -> None:
        self.add("reserved", usd, tokens)
        self.pending[key] = (expires, usd, tokens)
        heapq.heappush(self.expiries, (expires, key))

    def purge(self, now: float) -> None:
        """Drop the reservations expired by ``now`` (O(expired · log n): a batch holds
        thousands at once). Heap entries of keys settled or released since are skipped."""
        while self.expiries and self.expiries[0][0] <= now:
            expires, key = heapq.heappop(self.expiries)
            held = self.pending.get(key)
            if held is not None and held[0] == expires:
                del self.pending[key]
                self.add("reserved", -held[1], -held[2])

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

    async def reserve(
        self,
        key: str,
        scopes: Sequence[Scope],
        usd: Decimal,
        tokens: int,
        ttl_s: float | None = None,
    ) -> bool:
        validate(scopes, tokens)
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
            expires = now + (self._ttl if ttl_s is None else ttl_s)
            for c in counters:
                c.hold(key, expires, amount, tokens)
            ids = tuple(s.id for s in scopes)
            self._records[key] = _Record("reserved", amount, tokens, ids, expires)
            return True

    async def reserve_many(
        self, holds: Sequence[Hold], scopes: Sequence[Scope], ttl_s: float | None = None
    ) -> list[bool]:
        return [await self.reserve(h.key, scopes, h.usd, h.tokens, ttl_s) for h in holds]

    async def settle(
        self, key: str, usd: Decimal, tokens: int, scopes: Sequence[Scope] | None = None
    ) -> None:
        validate(scopes or (), tokens)
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

    async def settle_many(self, holds: Sequence[Hold], scopes: Sequence[Scope]) -> None:
        for h in holds:
            await self.settle(h.key, h.usd, h.tokens, scopes)

    async def release(self, key: str, scopes: Sequence[Scope] | None = None) -> None:
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
