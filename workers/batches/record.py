"""The durable record of a tier batch in batch mode, and the outcomes of its steps.

A tier batch (the rows of one chunk routed to one tier) in batch mode is a small state
machine written to the object store at every step, so any worker — or ``reconcile`` after
every worker and Redis died — can pick it up where it stopped:

- the **record** (``_job/batches/c<chunk>-<tier>.json``, :class:`TierBatch`): the staged
  rows, and per round the provider batches planned, submitted (their ids), ended and
  collected. A provider batch is written here *planned* (its rows and tag) before it is
  submitted and again with its id right after, so a redelivered message submits nothing
  twice (a crash between the two is found again by its tag: ``BatchApi.find``);
- the **outcomes** of each step (``_job/batches/c<chunk>-<tier>/<step>.parquet``): the final
  :class:`~workers.calls.Served` of every row the step settled (a collected provider batch,
  cache hits and rows served in realtime at submission, an expired batch's rows served in
  realtime). Written under deterministic names before the record says the step is done.

Redis keeps a summary of every provider batch of a job (``keys.job_batches``) for
``status`` and the metrics; the object store is the source of truth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pyarrow as pa
import redis
from pydantic import BaseModel, Field

from routing.cost import ZERO
from routing.policy import Policy
from routing.schema import MONEY
from workers import connections, keys, layout
from workers.provider import Completion
from workers.served import Outcome, Served
from workers.settings import Settings
from workers.storage import Storage


class ProviderBatch(BaseModel):
    """One provider batch of a round: planned, then submitted, ended and collected."""

    key: str  # "n<round>-a<attempt>-f<file>": unique in the tier batch
    round: int
    attempt: int
    tier: str  # the tier whose primary model serves it
    refs: list[str]  # the rows ("c<chunk>/r<input row>"), in request order
    batch_id: str | None = None
    submitted_at: float | None = None
    submit_errors: int = 0
    error: str | None = None  # why it could not be submitted, or why the provider failed it
    status: str = "planned"  # the provider's status word once submitted
    counts: dict[str, int] = Field(default_factory=dict)
    files: list[str] | None = None  # where an ended batch's results are (OpenAI file ids)
    ended: bool = False
    cancel_requested: bool = False
    collected: bool = False


class Round(BaseModel):
    """One round of a tier batch on one tier: round 1 on the routed tier, round 2 on the
    tier a cascade escalates to."""

    round: int
    tier: str
    reserved_at: float  # when its budget was reserved (the budget scopes' day and month)
    refs: list[str]
    done: bool = False


class TierBatch(BaseModel):
    """The record of one tier batch in batch mode (see the module doc)."""

    chunk: int
    tier: str  # the routed tier: the result part's name
    staged: str  # the routed rows, as Parquet (prompt text included)
    created_at: float = Field(default_factory=time.time)
    nonce: str = ""  # this record's own: in its batches' tags, so a job id run again never
    # adopts a batch of the earlier run (set once, when the record is made)
    rounds: list[Round] = Field(default_factory=list)
    batches: list[ProviderBatch] = Field(default_factory=list)
    published: bool = False

    def pending(self) -> list[ProviderBatch]:
        """Provider batches submitted or planned and not yet collected."""
        return [b for b in self.batches if not b.collected]

    def open_rounds(self) -> list[Round]:
        return [r for r in self.rounds if not r.done]


def load(storage: Storage, uri: str) -> TierBatch | None:
    data = storage.read_bytes_if_any(uri)
    return None if data is None else TierBatch.model_validate_json(data)


def save(storage: Storage, uri: str, record: TierBatch) -> None:
    storage.write_bytes(uri, record.model_dump_json().encode())


# ---------------------------------------------------------------- Redis summary


def index(settings: Settings) -> redis.Redis | None:
    """The job-state Redis that keeps the provider batch summaries (none for a local run)."""
    return connections.state_client(settings) if settings.distributed else None


def publish_summary(
    client: redis.Redis | None, job_id: str, chunk: int, b: ProviderBatch, provider: str
) -> None:
    """Record one provider batch's state in ``keys.job_batches`` (for status and metrics)."""
    if client is None or b.batch_id is None:
        return
    summary = {
        "chunk": chunk,
        "tier": b.tier,
        "round": b.round,
        "attempt": b.attempt,
        "provider": provider,
        "status": b.status,
        "counts": b.counts,
        "requests": len(b.refs),
        "submitted_at": b.submitted_at,
        "ended": b.ended,
        "collected": b.collected,
    }
    client.hset(keys.job_batches(job_id), b.batch_id, json.dumps(summary))


def summaries(client: redis.Redis, job_id: str) -> dict[str, dict[str, Any]]:
    """Every provider batch of a job: id → summary."""
    raw = client.hgetall(keys.job_batches(job_id))
    return {str(k): json.loads(v) for k, v in raw.items()}


# ---------------------------------------------------------------- outcomes

INTERMEDIATE = "snappy"  # the engine's own files (staged rows, outcomes): cheap to write

_OUTCOME_SCHEMA = pa.schema(
    [
        ("ref", pa.string()),
        ("outcome", pa.string()),
        ("text", pa.string()),
        ("finish_reason", pa.string()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("reasoning_tokens", pa.int64()),
        ("cached_input_tokens", pa.int64()),
        ("cache_write_tokens", pa.int64()),
        ("latency_ms", pa.float64()),
        ("attempts", pa.int32()),
        ("error", pa.string()),
        ("status", pa.int32()),
        ("tier", pa.string()),
        ("model", pa.string()),
        ("cost", MONEY),
        ("calls", pa.int32()),
        ("fallback_from", pa.string()),
        ("escalated_from", pa.string()),
        ("confidence", pa.float64()),
        ("confidence_source", pa.string()),
        ("cache_hit", pa.bool_()),
        ("notes", pa.list_(pa.string())),
        ("mode", pa.string()),
        ("batch_id", pa.string()),
        ("round", pa.int32()),
        ("batch_saved", MONEY),
    ]
)


_FROM_DONE = (  # the completion's fields kept as they are
    "text",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "latency_ms",
    "attempts",
    "error",
    "status",
)
_FROM_SERVED = (  # the outcome's fields kept as they are
    "cost",
    "calls",
    "fallback_from",
    "escalated_from",
    "confidence",
    "confidence_source",
    "cache_hit",
    "mode",
    "batch_id",
    "round",
    "batch_saved",
)


def write_outcomes(storage: Storage, uri: str, served: dict[str, Served]) -> None:
    """The outcomes as a Parquet file of :data:`_OUTCOME_SCHEMA` (built column by column)."""
    out, done = list(served.values()), [s.done for s in served.values()]
    columns: dict[str, list[Any]] = {
        "ref": list(served),
        "outcome": [s.outcome.name for s in out],
        "tier": [s.tier.name for s in out],
        "model": [s.model.name for s in out],
        "notes": [list(s.notes) for s in out],
    }
    columns.update((f, [getattr(d, f) for d in done]) for f in _FROM_DONE)
    columns.update((f, [getattr(s, f) for s in out]) for f in _FROM_SERVED)
    table = pa.Table.from_pydict(columns, schema=_OUTCOME_SCHEMA)
    storage.write_parquet(uri, table, compression=INTERMEDIATE)


def _served(row: dict[str, Any], policy: Policy) -> Served:
    tier = policy.tier(row["tier"])
    model = next(m for m in tier.models if m.name == row["model"])
    outcome = Outcome[row["outcome"]]
    done = Completion(
        ok=outcome is Outcome.OK,
        text=row["text"],
        finish_reason=row["finish_reason"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        reasoning_tokens=row.get("reasoning_tokens"),  # outcomes written before these: none
        cached_input_tokens=row.get("cached_input_tokens"),
        cache_write_tokens=row.get("cache_write_tokens"),
        latency_ms=row["latency_ms"],
        attempts=row["attempts"],
        error=row["error"],
        status=row["status"],
    )
    return Served(
        outcome,
        done,
        tier,
        model,
        cost=Decimal(row["cost"] if row["cost"] is not None else ZERO),
        calls=row["calls"],
        fallback_from=row["fallback_from"],
        escalated_from=row["escalated_from"],
        confidence=row["confidence"],
        confidence_source=row.get("confidence_source"),  # outcomes written before it: none
        cache_hit=row["cache_hit"],
        notes=list(row["notes"] or []),
        mode=row["mode"],
        batch_id=row["batch_id"],
        round=row["round"],
        batch_saved=Decimal(row["batch_saved"] if row["batch_saved"] is not None else ZERO),
    )


def outcomes_uri(root: str, record: TierBatch, round_: int, step: str) -> str:
    """Where a step of ``round_`` writes its outcomes (``n<round>-<step>``)."""
    return layout.batch_outcomes(root, record.chunk, record.tier, f"n{round_:03d}-{step}")


def _round_of(uri: str) -> int:
    return int(uri.rsplit("/", 1)[-1].split("-", 1)[0].removeprefix("n"))


def read_outcomes(
    storage: Storage,
    root: str,
    record: TierBatch,
    policy: Policy,
    upto: int | None = None,
    known: Mapping[str, dict[str, Served]] | None = None,
) -> dict[str, Served]:
    """Every outcome the record's steps wrote (of rounds ≤ ``upto``); a row's outcome of a
    later round (an escalation, merged with the earlier answer) wins. ``known``: outcomes
    this process wrote (uri → outcomes), taken as they are instead of read back — the same
    objects: an outcome changed after it was written is written again, in a later round."""
    known = known or {}
    found: dict[str, Served] = {}
    prefix = outcomes_uri(root, record, 0, "x").rsplit("/", 1)[0]
    listed = set(storage.list_files(prefix, ".parquet"))
    for uri in sorted(listed | {u for u in known if u.startswith(prefix + "/")}, key=_round_of):
        if upto is not None and _round_of(uri) > upto:
            continue
        if uri in known:
            found.update(known[uri])
            continue
        for row in storage.read_parquet_file(uri).to_pylist():
            found[row["ref"]] = _served(row, policy)
    return found
