"""The per-process resources every stage is handed (:class:`Runtime`), and where a stage
sends what it produces (:class:`Sink`).

The Celery tasks (workers/tasks.py) and the local executor (workers/local.py) each build
one Runtime per process and pass it down to the stages (workers/stages.py) and their
helpers (dedupe, prompt ids, reconcile, finalize); they depend on this module, not on the
stages that call them. The Runtime owns the process's per-process state: the policies and
scorers read once, the guards (workers/guards/) and the job-wide claim backends
(workers/claims.py); and it references the process's resources (``process``:
workers/process.py — the I/O loop, the Redis clients, the routing memos), which outlive a
Runtime and which a forked child resets in place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import redis

from routing.classify import Scorer
from routing.errors import PolicyError
from routing.plan import JobContext
from routing.policy import Policy, parse_policy
from workers import connections, layout
from workers.claims import (
    ClaimStore,
    IdClaims,
    MemoryClaims,
    RedisClaims,
    RedisIdClaims,
)
from workers.classifier import job_scorer
from workers.guards.bundle import Guards
from workers.jobstate import JobTracker
from workers.memos import RoutingMemos, process_memos
from workers.process import ProcessResources, this_process
from workers.settings import Settings
from workers.storage import Storage
from workers.verifier import AnswerCheck

_KEPT_JOBS = 8  # jobs whose verifiers and judged pairs a process keeps loaded
_K = TypeVar("_K")
_V = TypeVar("_V")


def _kept(cache: dict[_K, _V], key: _K, make: Callable[[], _V]) -> _V:
    """``cache[key]``, made on first use; the oldest entry goes past :data:`_KEPT_JOBS`."""
    if key not in cache:
        while len(cache) >= _KEPT_JOBS:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


class Sink(Protocol):
    """Where routed batches and the finalize signal go."""

    def dispatch(self, ctx: JobContext, batch: dict[str, Any]) -> None: ...
    def finalize(self, ctx: JobContext) -> None: ...
    def poll(self, ctx: JobContext, chunk: int, tier: str, delay_s: float) -> None:
        """Look at a tier batch in batch mode again in ``delay_s`` (workers/batches/)."""
        ...


@dataclass
class Runtime:
    """Per-process resources, built once and passed to every stage."""

    settings: Settings
    storage: Storage
    tracker: JobTracker
    scorer: Scorer | None = None  # overrides the policy's classifier (tests, benchmarks)
    _policies: dict[str, Policy] = field(default_factory=dict)
    _scorers: dict[str, Scorer] = field(default_factory=dict)
    _guards: dict[str, Guards] = field(default_factory=dict)
    _checks: dict[tuple[str, str], AnswerCheck] = field(default_factory=dict)
    _pairs: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    process: ProcessResources = field(default_factory=this_process, repr=False)
    _dedupe: ClaimStore | None = None
    _ids: IdClaims | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def memos(self) -> RoutingMemos:
        """The process's routing memos (text, decision): shared by every Runtime of it."""
        return process_memos(self.process)

    def guards(self, policy: Policy) -> Guards:
        """Budget ledger, breakers, rate limits and retry budget (per policy, per process)."""
        if policy.version not in self._guards:
            self._guards[policy.version] = Guards.for_policy(self.settings, policy)
        return self._guards[policy.version]

    def dedupe_claims(self) -> ClaimStore:
        """Job-wide fingerprint claims (workers/dedupe.py): in the job-state Redis for a
        fleet; in memory for the local executor (one per Runtime, i.e. per run)."""
        with self._lock:
            if self._dedupe is None:
                self._dedupe = (
                    RedisClaims(self._state_client())
                    if self.settings.distributed
                    else MemoryClaims()
                )
            return self._dedupe

    def id_claims(self) -> IdClaims:
        """Job-wide prompt-id claims (workers/prompt_ids.py), as :meth:`dedupe_claims`."""
        with self._lock:
            if self._ids is None:
                self._ids = (
                    RedisIdClaims(self._state_client())
                    if self.settings.distributed
                    else MemoryClaims()
                )
            return self._ids

    def _state_client(self) -> redis.Redis:
        return connections.state_client(self.settings, decode_responses=False, process=self.process)

    def scorer_for(self, ctx: JobContext, policy: Policy) -> Scorer:
        """The job's scorer, loaded once per process (a job's model copy never changes)."""
        if self.scorer is not None:
            return self.scorer
        key = ctx.classifier_uri or policy.classifier.kind
        if key not in self._scorers:
            self._scorers[key] = job_scorer(self.storage, ctx, policy)
        return self._scorers[key]

    def answer_check(self, ctx: JobContext, policy: Policy) -> AnswerCheck:
        """How the job's cascade tiers score answers (its verifier copies load on first use);
        the last few jobs' are kept per process."""
        key = (ctx.job_root, policy.version)
        with self._lock:
            return _kept(self._checks, key, lambda: AnswerCheck(self.storage, ctx))

    def judged_pairs(self, ctx: JobContext) -> frozenset[tuple[str, str]]:
        """The (prompt_id, model) pairs judged before the job (``_job/explored.parquet``,
        written by the planner; ``workers/explore.py`` skips them), read once per process."""

        def read() -> frozenset[tuple[str, str]]:
            data = self.storage.read_bytes_if_any(layout.explored(ctx.job_root))
            if data is None:
                return frozenset()
            table = pq.read_table(pa.BufferReader(data))
            ids, models = table.column("prompt_id").to_pylist(), table.column("model").to_pylist()
            return frozenset(zip(ids, models, strict=True))

        with self._lock:
            return _kept(self._pairs, ctx.job_root, read)

    def policy(self, ctx: JobContext) -> Policy:
        """The job's policy, read once per process from the copy stored with the job."""
        if ctx.policy_version not in self._policies:
            text = self.storage.read_bytes(ctx.policy_uri).decode()
            policy = parse_policy(text, ctx.policy_uri)
            if policy.version != ctx.policy_version:
                raise PolicyError(
                    f"{ctx.policy_uri}: version {policy.version} != job's {ctx.policy_version}"
                )
            self._policies[ctx.policy_version] = policy
        return self._policies[ctx.policy_version]
