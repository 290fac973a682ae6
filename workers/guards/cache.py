"""The cross-job response cache: answers reused without a provider call.

Key: SHA-256 of the model (provider, name), the generation parameters (``max_tokens``,
whether logprobs were asked) and the normalised system prompt and prompt
(:func:`normalise`: Unicode NFKC, whitespace runs collapsed to one space, stripped), under
the tenant's namespace (percent-encoded, so no tenant name spells the shared namespace
``*``, a name no tenant may take anyway: routing.names) unless the policy shares the cache
across tenants. Value: the answer
(text, finish reason, token usage, logprobs) as JSON, with the policy's TTL. A hit is served
with ``cache_hit = true`` and costs nothing; the report counts what it saved.

The serving engine reads a whole tier batch's keys at once (:meth:`ResponseCache.get_many`:
one ``MGET``) before its calls, and awaits both operations on its I/O loop.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from routing.names import SHARED_CACHE, encoded
from routing.policy import CacheSpec, ModelSpec
from workers import keys
from workers.aio import LoopRedis

_SPACE = re.compile(r"\s+")
SHARED = SHARED_CACHE


def normalise(text: str | None) -> str:
    """NFKC, whitespace runs collapsed to one space, stripped (case is kept)."""
    if not text:
        return ""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def cache_key(
    spec: CacheSpec,
    tenant: str,
    model: ModelSpec,
    max_tokens: int,
    logprobs: bool,
    system: str | None,
    prompt: str,
) -> str:
    namespace = SHARED if spec.shared_across_tenants else encoded(tenant)
    body = json.dumps(
        [model.provider, model.name, max_tokens, logprobs, normalise(system), normalise(prompt)],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return keys.cache_entry(namespace, hashlib.sha256(body.encode()).hexdigest())


class ResponseCache(Protocol):
    async def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """The cached value of each key (``None``: none, or expired), in order."""
        ...

    async def put(self, key: str, value: dict[str, Any], ttl_s: int) -> None: ...

    async def put_many(self, items: Sequence[tuple[str, dict[str, Any]]], ttl_s: int) -> None:
        """:meth:`put` of every (key, value), in one round trip."""
        ...


class MemoryCache:
    """Per process (the local executor): bounded LRU with expiry."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._data: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    async def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        with self._lock:
            return [self._get(key) for key in keys]

    def _get(self, key: str) -> dict[str, Any] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[1]

    async def put(self, key: str, value: dict[str, Any], ttl_s: int) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + ttl_s, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    async def put_many(self, items: Sequence[tuple[str, dict[str, Any]]], ttl_s: int) -> None:
        for key, value in items:
            await self.put(key, value, ttl_s)


class RedisCache:
    """``SET key json EX ttl`` / ``MGET keys``, shared by every worker and every job."""

    def __init__(self, aio: LoopRedis) -> None:
        self._aio = aio

    async def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        if not keys:
            return []
        raw = await self._aio.client().mget(list(keys))
        return [None if value is None else dict(json.loads(value)) for value in raw]

    async def put(self, key: str, value: dict[str, Any], ttl_s: int) -> None:
        text = json.dumps(value, separators=(",", ":"))
        await self._aio.client().set(key, text, ex=ttl_s)

    async def put_many(self, items: Sequence[tuple[str, dict[str, Any]]], ttl_s: int) -> None:
        if not items:
            return
        async with self._aio.client().pipeline(transaction=False) as pipe:
            for key, value in items:
                pipe.set(key, json.dumps(value, separators=(",", ":")), ex=ttl_s)
            await pipe.execute()
