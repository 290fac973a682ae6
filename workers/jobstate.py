"""Job progress and the exactly-once finalize trigger (no Celery chords).

A chunk registers the parts it will write (one per tier used, plus ``rejected``); each
written part is recorded idempotently (a set member, not a counter, so a redelivered
task cannot count twice). When the last part of the last chunk lands, ``complete``
returns True exactly once, and the caller enqueues the finalizer. A job ends once:
``fail`` marks it ``failed`` with its reason unless it has already ended (the first reason
wins, a succeeded job stays succeeded), and ``dead_letter`` counts a unit of work's dead
letters so the task layer can stop retrying it (workers/tasks.py).

Two backends implement :class:`JobTracker`: :class:`RedisJobTracker` (atomic Lua,
shared by every worker) and :class:`MemoryJobTracker` (the local executor, tests).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

import redis

from routing.errors import JobConflictError
from workers import connections, keys, luasource
from workers.settings import Settings


@dataclass
class JobStatus:
    job_id: str
    state: str
    total_chunks: int
    chunks_done: int
    rows_total: int
    rows_by_status: dict[str, int]
    cost_usd: float
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def rows_done(self) -> int:
        return sum(self.rows_by_status.values())

    @property
    def error(self) -> str | None:
        """Why the job failed (None unless it did, or when no reason was recorded)."""
        return self.meta.get("error") or None

    def describe(self) -> str:
        """One line: ``job <id> <state>``, and ``: <reason>`` when there is one."""
        reason = f": {self.error}" if self.state == "failed" and self.error else ""
        return f"job {self.job_id} {self.state}{reason}"

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds to go at the job's average rate so far (None: not running, nothing done
        yet, or no start time recorded)."""
        started = self.meta.get("created_at")
        if self.state != "running" or not started or self.rows_done <= 0:
            return None
        try:
            start = datetime.fromisoformat(started).timestamp()
        except ValueError:
            return None
        elapsed = (time.time() if now is None else now) - start
        if elapsed <= 0:
            return None
        left = max(self.rows_total - self.rows_done, 0)
        return left * elapsed / self.rows_done


class JobTracker(Protocol):
    def register(self, job_id: str, meta: dict[str, Any]) -> None: ...
    def expect(self, job_id: str, chunk: int, parts: list[str]) -> None: ...
    def complete(
        self, job_id: str, chunk: int, part: str, counts: dict[str, Any], total_chunks: int
    ) -> bool: ...
    def set_state(self, job_id: str, state: str, **fields: Any) -> None: ...
    def fail(self, job_id: str, error: str, **fields: Any) -> bool: ...
    def touch(self, job_id: str) -> bool:
        """A running job is still at work (``updated_at`` now): beat's stalled-job sweep
        leaves it. False when the job has ended or its state is gone."""
        ...

    def state(self, job_id: str) -> str | None: ...
    def status(self, job_id: str) -> JobStatus | None: ...
    def list_jobs(self, limit: int = 20) -> list[str]: ...
    def dead_letter(self, job_id: str, entry: dict[str, Any]) -> int: ...
    def dead_letters(self, job_id: str) -> list[dict[str, Any]]: ...


ENDED = ("succeeded", "failed")


def same_unit(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two dead letters of one unit of work: the same task, chunk and tier."""
    return all(a.get(k) == b.get(k) for k in ("task", "chunk", "tier"))


def _summarise(
    job_id: str, meta: dict[str, str], parts: list[dict[str, Any]], done: int
) -> JobStatus:
    by_status: dict[str, int] = defaultdict(int)
    cost = 0.0
    for counts in parts:
        for status, n in counts.get("rows", {}).items():
            by_status[status] += int(n)
        cost += float(counts.get("cost_usd", 0))
    return JobStatus(
        job_id=job_id,
        state=meta.get("state", "unknown"),
        total_chunks=int(meta.get("total_chunks", 0)),
        chunks_done=done,
        rows_total=int(meta.get("rows_total", 0)),
        rows_by_status=dict(by_status),
        cost_usd=cost,
        meta=meta,
    )


class MemoryJobTracker:
    """In-process tracker with the same semantics as the Redis one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meta: dict[str, dict[str, str]] = {}
        self._expected: dict[tuple[str, int], set[str]] = {}
        self._done: dict[tuple[str, int], set[str]] = defaultdict(set)
        self._chunks: dict[str, set[int]] = defaultdict(set)
        self._parts: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._dead: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def register(self, job_id: str, meta: dict[str, Any]) -> None:
        with self._lock:
            if self._meta.get(job_id, {}).get("state") == "running":
                raise JobConflictError(f"job {job_id} is already running")
            for store in (self._expected, self._done):
                for key in [k for k in store if k[0] == job_id]:
                    del store[key]
            self._chunks.pop(job_id, None)
            self._parts.pop(job_id, None)
            self._meta.pop(job_id, None)
            self._meta[job_id] = {k: str(v) for k, v in meta.items()} | {"state": "running"}

    def expect(self, job_id: str, chunk: int, parts: list[str]) -> None:
        with self._lock:
            self._expected[(job_id, chunk)] = set(parts)

    def complete(
        self, job_id: str, chunk: int, part: str, counts: dict[str, Any], total_chunks: int
    ) -> bool:
        with self._lock:
            self._parts[job_id][f"{chunk}/{part}"] = counts
            done = self._done[(job_id, chunk)]
            done.add(part)
            if done >= self._expected.get((job_id, chunk), {part}):
                self._chunks[job_id].add(chunk)
            meta = self._meta.setdefault(job_id, {})
            if len(self._chunks[job_id]) >= total_chunks and "finalize_enqueued" not in meta:
                meta["finalize_enqueued"] = "1"
                return True
            return False

    def set_state(self, job_id: str, state: str, **fields: Any) -> None:
        with self._lock:
            self._meta.setdefault(job_id, {}).update({k: str(v) for k, v in fields.items()})
            self._meta[job_id]["state"] = state

    def fail(self, job_id: str, error: str, **fields: Any) -> bool:
        with self._lock:
            meta = self._meta.setdefault(job_id, {})
            if meta.get("state") in ENDED:
                return False
            meta.update({k: str(v) for k, v in fields.items()})
            meta.update(state="failed", error=error)
            return True

    def touch(self, job_id: str) -> bool:
        with self._lock:
            meta = self._meta.get(job_id)
            if meta is None or meta.get("state") != "running":
                return False
            meta["updated_at"] = f"{time.time():.3f}"
            return True

    def state(self, job_id: str) -> str | None:
        with self._lock:
            return self._meta.get(job_id, {}).get("state")

    def status(self, job_id: str) -> JobStatus | None:
        with self._lock:
            if job_id not in self._meta:
                return None
            parts = list(self._parts[job_id].values())
            return _summarise(job_id, dict(self._meta[job_id]), parts, len(self._chunks[job_id]))

    def list_jobs(self, limit: int = 20) -> list[str]:
        """The newest ``limit`` job ids, newest first (as the Redis tracker)."""
        with self._lock:
            return list(reversed(self._meta))[:limit]

    def dead_letter(self, job_id: str, entry: dict[str, Any]) -> int:
        with self._lock:
            self._dead[job_id].append(dict(entry))
            return sum(same_unit(entry, e) for e in self._dead[job_id])

    def dead_letters(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._dead[job_id])


# The scripts: workers/scripts/jobstate_{register,fail,complete}.lua.


class RedisJobTracker:
    """Job state in Redis, shared by every worker; the completion check is one Lua call."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._r = client
        self._ttl = ttl_s
        self._complete = client.register_script(luasource.load("jobstate_complete"))
        self._register = client.register_script(luasource.load("jobstate_register"))
        self._fail = client.register_script(luasource.load("jobstate_fail"))
        self._touch = client.register_script(luasource.load("jobstate_touch"))

    @classmethod
    def from_url(cls, url: str, ttl_s: int) -> RedisJobTracker:
        return cls(connections.client(url), ttl_s)

    @classmethod
    def for_settings(cls, settings: Settings) -> RedisJobTracker:
        """On the job-state Redis of ``settings`` (TLS options included)."""
        return cls(connections.state_client(settings), settings.job_ttl_s)

    def register(self, job_id: str, meta: dict[str, Any]) -> None:
        """Start a job's state afresh; a finished job's id may be reused, a running one not
        (atomically: of two registrations racing for one id, the second is refused)."""
        job = keys.job(job_id)
        stale = list(self._r.scan_iter(match=keys.job_pattern(job_id), count=1000))
        fields = {k: str(v) for k, v in meta.items()} | {
            "state": "running",
            "updated_at": f"{time.time():.3f}",
        }
        pairs = [x for item in fields.items() for x in item]
        registered = self._register(
            keys=[job, *(k for k in stale if k != job)], args=[self._ttl, *pairs]
        )
        if not registered:
            raise JobConflictError(f"job {job_id} is already running")
        self._r.zadd(keys.jobs_index(), {job_id: time.time()})

    def expect(self, job_id: str, chunk: int, parts: list[str]) -> None:
        key = keys.chunk_expected(job_id, chunk)
        pipe = self._r.pipeline()
        pipe.delete(key)
        pipe.sadd(key, *parts)
        pipe.expire(key, self._ttl)
        pipe.execute()

    def complete(
        self, job_id: str, chunk: int, part: str, counts: dict[str, Any], total_chunks: int
    ) -> bool:
        result = self._complete(
            keys=[
                keys.chunk_expected(job_id, chunk),
                keys.chunk_done(job_id, chunk),
                keys.job_chunks_done(job_id),
                keys.job(job_id),
                keys.job_parts(job_id),
            ],
            args=[
                part,
                json.dumps(counts),
                chunk,
                total_chunks,
                f"{chunk}/{part}",
                self._ttl,
                f"{time.time():.3f}",
            ],
        )
        return bool(result == 1)

    def set_state(self, job_id: str, state: str, **fields: Any) -> None:
        mapping: dict[Any, Any] = {k: str(v) for k, v in fields.items()} | {"state": state}
        self._r.hset(keys.job(job_id), mapping=mapping)

    def fail(self, job_id: str, error: str, **fields: Any) -> bool:
        """Mark the job ``failed`` with ``error`` unless it has already ended (atomic; the
        first reason wins). True when this call failed it."""
        mapping = {k: str(v) for k, v in fields.items()} | {
            "state": "failed",
            "error": error,
            "updated_at": f"{time.time():.3f}",
        }
        pairs = [x for item in mapping.items() for x in item]
        return bool(self._fail(keys=[keys.job(job_id)], args=[self._ttl, *pairs]) == 1)

    def touch(self, job_id: str) -> bool:
        return bool(self._touch(keys=[keys.job(job_id)], args=[f"{time.time():.3f}"]) == 1)

    def state(self, job_id: str) -> str | None:
        """The job's state alone (one HGET: what a task checks before working)."""
        value = self._r.hget(keys.job(job_id), "state")
        return None if value is None else str(value)

    def status(self, job_id: str) -> JobStatus | None:
        meta = self._r.hgetall(keys.job(job_id))
        if not meta:
            return None
        parts = [json.loads(v) for v in self._r.hvals(keys.job_parts(job_id))]
        done = self._r.scard(keys.job_chunks_done(job_id))
        return _summarise(job_id, cast(dict[str, str], meta), parts, int(done))

    def list_jobs(self, limit: int = 20) -> list[str]:
        return [str(j) for j in self._r.zrevrange(keys.jobs_index(), 0, limit - 1)]

    def dead_letter(self, job_id: str, entry: dict[str, Any]) -> int:
        """Append ``entry``; return how many dead letters its unit of work (task, chunk,
        tier) now has in the job, this one included."""
        key = keys.job_dead_letters(job_id)
        pipe = self._r.pipeline()
        pipe.rpush(key, json.dumps(entry))
        pipe.expire(key, self._ttl)
        pipe.lrange(key, 0, -1)
        letters = pipe.execute()[-1]
        return sum(same_unit(entry, json.loads(e)) for e in letters)

    def dead_letters(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self._r.lrange(keys.job_dead_letters(job_id), 0, -1)]
