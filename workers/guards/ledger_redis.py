"""The budget ledger in Redis (:mod:`workers.guards.ledger` has the contract, the units and
the in-memory ledger): every operation one atomic Lua call (``workers/scripts/ledger_*.lua``),
shared by every worker of the fleet."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import redis

from routing.resilience import Scope
from workers import connections, keys, luasource
from workers.aio import LoopRedis
from workers.guards.ledger import RECORD_TTL_S, Hold, Usage, from_pico, to_pico, validate
from workers.guards.lua import Script

MANY_PER_CALL = 500  # keys per Lua call of reserve_many / settle_many (bounds its run time)


_Placement = tuple[list[str], list[int]]  # scope ids, their TTLs


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class RedisLedger:
    """The ledger in Redis, shared by every worker; each operation is one Lua call.

    ``reserve`` / ``settle`` / ``release`` run on ``aio`` (this process's ``redis.asyncio``
    client of the running loop); ``usage`` on ``client`` (synchronous, for operators: a
    ledger made from ``client`` alone can only read).

    Every key a script touches is declared in KEYS, so settle and release must know the
    scopes the key was reserved on: they first try the scopes they were given (one round
    trip when they match, or when the key is unknown), else read the stored ones; the
    script checks them and asks for a retry when the stored ones differ."""

    _RETRIES = 8
    _RESERVE = Script.load("ledger_reserve")
    _SETTLE = Script.load("ledger_settle")
    _RELEASE = Script.load("ledger_release")

    def __init__(
        self,
        client: redis.Redis | None,
        prefix: str = keys.LEDGER,
        reservation_ttl_s: float = 3600,
        *,
        record_ttl_s: int = RECORD_TTL_S,
        aio: LoopRedis | None = None,
    ) -> None:
        self._r = client
        self._aio = aio
        self._prefix = prefix
        self._ttl_ms = int(reservation_ttl_s * 1000)
        self._record_ttl = max(record_ttl_s, int(-(-reservation_ttl_s // 1)))
        usage = luasource.load("ledger_usage")
        self._usage = client.register_script(usage) if client is not None else None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisLedger:
        return cls(connections.client(url), aio=LoopRedis(url), **kwargs)

    def record_key(self, key: str) -> str:
        """Hash: one key's reservation or settlement (state, usd, tokens, exp, member,
        scopes and ttls as JSON lists)."""
        return keys.ledger_record(key, self._prefix)

    def scope_key(self, scope_id: str) -> str:
        """Hash: a scope's settled / reserved / total USD (pico) and tokens."""
        return keys.ledger_scope(scope_id, self._prefix)

    def pending_key(self, scope_id: str) -> str:
        """Sorted set: a scope's live reservations ("usd|tokens|key") by expiry (ms)."""
        return keys.ledger_pending(scope_id, self._prefix)

    def _keys(self, key: str, scope_ids: Sequence[str]) -> list[str]:
        """``ledger_release``'s KEYS: the record, the scopes' hashes, their pending sets."""
        return [self.record_key(key), *self._scope_keys(scope_ids)]

    def _scope_keys(self, scope_ids: Sequence[str]) -> list[str]:
        return [
            *(self.scope_key(s) for s in scope_ids),
            *(self.pending_key(s) for s in scope_ids),
        ]

    def _client(self) -> redis.asyncio.Redis:
        if self._aio is None:
            raise RuntimeError("this RedisLedger was made without aio=: it can only read usage")
        return self._aio.client()

    async def _stored(self, key: str) -> _Placement | None:
        raw = await self._client().hmget(self.record_key(key), ["scopes", "ttls"])
        ids, ttls = (_text(v) for v in raw)
        return None if ids is None or ttls is None else (json.loads(ids), json.loads(ttls))

    async def reserve(
        self,
        key: str,
        scopes: Sequence[Scope],
        usd: Decimal,
        tokens: int,
        ttl_s: float | None = None,
    ) -> bool:
        (fits,) = await self.reserve_many([Hold(key, usd, tokens)], scopes, ttl_s)
        return fits

    async def reserve_many(
        self, holds: Sequence[Hold], scopes: Sequence[Scope], ttl_s: float | None = None
    ) -> list[bool]:
        for h in holds:
            validate(scopes, h.tokens)
        amounts = [to_pico(h.usd, ROUND_CEILING) for h in holds]
        ids = [s.id for s in scopes]
        ttl_ms, record_ttl = self._ttl_ms, self._record_ttl
        if ttl_s is not None:
            ttl_ms, record_ttl = int(ttl_s * 1000), max(record_ttl, int(-(-ttl_s // 1)))
        head: list[Any] = [ttl_ms, record_ttl, _json(ids), _json([s.ttl_s for s in scopes])]
        for s in scopes:
            cap = "" if s.usd is None else to_pico(s.usd, ROUND_FLOOR)
            head += [cap, "" if s.tokens is None else s.tokens, s.ttl_s]
        scope_keys = self._scope_keys(ids)
        fits: list[bool] = []
        for lo in range(0, len(holds), MANY_PER_CALL):
            part = range(lo, min(lo + MANY_PER_CALL, len(holds)))
            args: list[Any] = [len(scopes), len(part), *head]
            for i in part:
                usd, tokens = amounts[i], holds[i].tokens
                args += [usd, tokens, f"{usd}|{tokens}|{holds[i].key}"]
            keys = [*scope_keys, *(self.record_key(holds[i].key) for i in part)]
            fits += [int(v) == 1 for v in await self._RESERVE.run(self._client(), keys, args)]
        return fits

    async def settle(
        self, key: str, usd: Decimal, tokens: int, scopes: Sequence[Scope] | None = None
    ) -> None:
        validate(scopes or (), tokens)
        hold, given = Hold(key, usd, tokens), _placement(scopes)
        guess = given
        for _ in range(self._RETRIES):
            if guess is None:
                guess = await self._stored(key) or given
            if guess is None:
                raise KeyError(f"unknown ledger key {key!r} and no scopes given")
            if await self._settle_on(guess, [hold]) == [1]:
                return
            guess = None
        raise RuntimeError(f"ledger key {key!r} kept changing during settle")

    async def settle_many(self, holds: Sequence[Hold], scopes: Sequence[Scope]) -> None:
        for h in holds:
            validate(scopes, h.tokens)
        placement = ([s.id for s in scopes], [s.ttl_s for s in scopes])
        moved: list[Hold] = []  # reserved on other scopes: settled one by one
        for lo in range(0, len(holds), MANY_PER_CALL):
            part = holds[lo : lo + MANY_PER_CALL]
            done = await self._settle_on(placement, part)
            moved += [h for h, d in zip(part, done, strict=True) if d != 1]
        for h in moved:
            await self.settle(h.key, h.usd, h.tokens, scopes)

    async def _settle_on(self, placement: _Placement, holds: Sequence[Hold]) -> list[int]:
        """One ``ledger_settle`` call on ``placement``'s scopes: 1 per key settled, -1 per
        key whose record names other scopes."""
        ids, ttls = placement
        args: list[Any] = [len(ids), len(holds), _json(ids), _json(ttls), self._record_ttl, *ttls]
        for h in holds:
            args += [to_pico(h.usd), h.tokens]
        keys = [*self._scope_keys(ids), *(self.record_key(h.key) for h in holds)]
        return [int(v) for v in await self._SETTLE.run(self._client(), keys, args)]

    async def release(self, key: str, scopes: Sequence[Scope] | None = None) -> None:
        guess = _placement(scopes)
        for _ in range(self._RETRIES):
            if guess is None:
                guess = await self._stored(key)
                if guess is None:
                    return
            ids = guess[0]
            args = [len(ids), _json(ids)]
            if int(await self._RELEASE.run(self._client(), self._keys(key, ids), args)) >= 0:
                return
            guess = None
        raise RuntimeError(f"ledger key {key!r} kept changing during release")

    def usage(self, scope_id: str) -> Usage:
        if self._usage is None:
            raise RuntimeError("this RedisLedger was made without a synchronous client")
        keys = [self.scope_key(scope_id), self.pending_key(scope_id)]
        su, ru, st, rt = (int(_text(v) or 0) for v in self._usage(keys=keys, args=[]))
        return Usage(from_pico(su), from_pico(ru), st, rt)


def _placement(scopes: Sequence[Scope] | None) -> _Placement | None:
    return None if scopes is None else ([s.id for s in scopes], [s.ttl_s for s in scopes])
