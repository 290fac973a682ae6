"""The cross-job response cache: answers reused without a provider call.

Key: SHA-256 of the model (provider, name), the generation parameters (``max_tokens``,
whether logprobs were asked) and the normalised system prompt and prompt
(:func:`normalise`: Unicode NFKC, whitespace runs collapsed to one space, stripped), under
the tenant's namespace (percent-encoded, so no tenant name spells the shared namespace
``*``, a name no tenant may take anyway: routing.names) unless the policy shares the cache
across tenants. Value: the answer
(text, finish reason, token usage, logprobs) as JSON, with the policy's TTL. A hit is served
with ``cache_hit = true`` and costs nothing; the report counts what it saved.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from typing import Any, Protocol

import redis

from routing.names import SHARED_CACHE, encoded
from routing.policy import CacheSpec, ModelSpec

_SPACE = re.compile(r"\s+")
PREFIX = "br:cache:"
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
    return f"{PREFIX}{namespace}:{hashlib.sha256(body.encode()).hexdigest()}"


class ResponseCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...
    def put(self, key: str, value: dict[str, Any], ttl_s: int) -> None: ...


class MemoryCache:
    """Per process (the local executor): bounded LRU with expiry."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._data: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return item[1]

    def put(self, key: str, value: dict[str, Any], ttl_s: int) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + ttl_s, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)


class RedisCache:
    """``SET key json EX ttl`` / ``GET key``, shared by every worker and every job."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._redis.get(key)
        return None if raw is None else dict(json.loads(raw))

    def put(self, key: str, value: dict[str, Any], ttl_s: int) -> None:
        self._redis.set(key, json.dumps(value, separators=(",", ":")), ex=ttl_s)
