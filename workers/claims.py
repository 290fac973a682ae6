"""The job-wide claim backends: fingerprints for exact dedupe (workers/dedupe.py) and
prompt ids (workers/prompt_ids.py). Redis for a fleet (one Lua call per batch of
:data:`BATCH` items: workers/scripts/dedupe_claim.lua, prompt_ids_claim.lua), in memory
for the local executor. The :class:`~workers.runtime.Runtime` owns the process's backends
(``Runtime.dedupe_claims`` / ``Runtime.id_claims``); no module keeps them.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import redis

from workers import keys, luasource

BATCH = 2000  # items per Lua call


class ClaimStore(Protocol):
    def claim(self, job_id: str, items: list[tuple[str, str]], ttl_s: int) -> list[str]:
        """Claim each (fingerprint, claimant); return each fingerprint's holder."""
        ...


class MemoryClaims:
    """The local executor's claims, of fingerprints or of prompt ids (one store each per
    Runtime, shared by its threads); ``buckets`` shapes only the Redis layout of id claims."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def claim(
        self, job_id: str, items: list[tuple[str, str]], ttl_s: int, buckets: int = 1
    ) -> list[str]:
        with self._lock:
            return [self._held.setdefault((job_id, key), me) for key, me in items]


class RedisClaims:
    """``SET NX EX`` per fingerprint in one Lua call per batch, shared by every worker."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(luasource.load("dedupe_claim"))

    def claim(self, job_id: str, items: list[tuple[str, str]], ttl_s: int) -> list[str]:
        out: list[str] = []
        for i in range(0, len(items), BATCH):
            batch = items[i : i + BATCH]
            got = self._script(
                keys=[keys.job_dedupe_claim(job_id, fp) for fp, _ in batch],
                args=[ttl_s, *(me for _, me in batch)],
            )
            out.extend(v.decode() if isinstance(v, bytes) else str(v) for v in got)
        return out


class IdClaims(Protocol):
    def claim(
        self, job_id: str, items: list[tuple[str, str]], ttl_s: int, buckets: int
    ) -> list[str]:
        """Claim each (id digest, claimant) for the job; return each id's holder."""
        ...


class RedisIdClaims:
    """``HSETNX`` per id in one Lua call per batch, shared by every worker."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(luasource.load("prompt_ids_claim"))

    def claim(
        self, job_id: str, items: list[tuple[str, str]], ttl_s: int, buckets: int
    ) -> list[str]:
        out: list[str] = []
        for i in range(0, len(items), BATCH):
            batch = items[i : i + BATCH]
            args: list[Any] = [ttl_s]
            for d, me in batch:
                args += [d, me]
            got = self._script(
                keys=[keys.job_prompt_ids(job_id, int(d[:8], 16) % buckets) for d, _ in batch],
                args=args,
            )
            out.extend(v.decode() if isinstance(v, bytes) else str(v) for v in got)
        return out
