"""Job-wide exact dedupe: a prompt is sent once per job, whichever chunks it is in.

At ingest (:func:`hold_duplicates`), each in-chunk canonical row *claims* its fingerprint
(:mod:`routing.dedupe`, stable across hosts) for the job: ``SET key claimant NX EX ttl`` in
Redis (one Lua call per chunk), or in memory for the local executor (workers/claims.py; the
Runtime owns the backend). The claimant is ``<chunk>:<prompt_id>``, so a redelivered ingest
of the same chunk finds its own claims and makes the same split. Rows whose fingerprint
another chunk holds — with their in-chunk duplicates — are *held*: not dispatched, written
to the chunk's decision record ``_job/dedupe/c<chunk>.parquet`` with the holder's claimant
(keys and non-text routing marks only: :data:`RECORD_COLUMNS`, no prompt). The record is
written for every chunk (empty when nothing is held) before the chunk's parts are
registered; an ingest that finds its record replays it instead of claiming again, so the
split survives redelivery and ``reconcile`` even when Redis lost the claims.

At finalize (:func:`fill_duplicates`, before anything is counted), each chunk's held rows
become a result part ``results/part-c<chunk>-dedupe.parquet`` with its own audit object
(their text and carried columns read again from the input chunk; ``minimise`` applied):
the answering row's outcome (the recorded holder's, else one found by fingerprint, see
:class:`_Holders`) (status, answer, tokens, tier, model, error — a canonical row
that failed, went over budget or was rejected gives its duplicates the same outcome),
``dedupe_of`` = its ``prompt_id``, cost 0, latency 0, attempts 0 and the
canonical row's baseline (routing.cost). A part already written is not written again, so
finalize stays idempotent and nothing written before is rewritten.

Redis key: ``br:job:{<job_id>}:dedupe:<fingerprint>`` → claimant, TTL ``job_ttl_s``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from routing import carried, results
from routing.cost import ZERO
from routing.errors import InputError
from routing.minimise import minimise
from routing.plan import JobContext, JobPlan
from routing.policy import Policy
from routing.router import FINGERPRINT
from workers import audit, keys, layout
from workers.chunks import part_counts, read_chunk
from workers.storage import join

if TYPE_CHECKING:
    from workers.runtime import Runtime, Sink

PART = "dedupe"  # the held rows' result part, and their tracker part at ingest
# What a decision record keeps of a held row (besides HOLDER): keys and the row's own
# routing marks — no text, metadata or passthrough column (those are read again from the
# input chunk at finalize, so no prompt is stored outside the minimised result parts).
RECORD_COLUMNS = (
    "prompt_id",
    FINGERPRINT,
    "input_row",
    "tenant",
    "near_dup_of",
    "pii_kinds",
    "gaming_flags",
    "classifier_version",
    "arm",  # the held row's own experiment arm (routing/arms.py)
)
HOLDER = "__br_dedupe_holder"  # decision record: the claimant that answers the row
HELD_STATUS = "duplicate"  # tracker count of held rows until finalize fills them


def claim_key(job_id: str, fingerprint: str) -> str:
    return keys.job_dedupe_claim(job_id, fingerprint)


def record_uri(root: str, chunk: int) -> str:
    """The chunk's decision record: the rows it holds for other chunks' answers."""
    return join(root, "_job", "dedupe", f"c{chunk:06d}.parquet")


# ---------------------------------------------------------------- ingest


def _split(rt: Runtime, ctx: JobContext, chunk: int, routed: pa.Table) -> list[str | None]:
    """Per row, the claimant of another chunk that answers it (None: this chunk does)."""
    ids = routed.column("prompt_id").to_pylist()
    fps = routed.column(FINGERPRINT).to_pylist()
    first = routed.column("dedupe_of").to_pylist()
    fp_of = {pid: fp for pid, fp, d in zip(ids, fps, first, strict=True) if d is None}
    items = [
        (fp, f"{chunk}:{pid}") for pid, fp, d in zip(ids, fps, first, strict=True) if d is None
    ]
    holders = rt.dedupe_claims().claim(ctx.job_id, items, rt.settings.job_ttl_s)
    taken = {fp: h for (fp, me), h in zip(items, holders, strict=True) if h != me}
    return [taken.get(fp_of.get(d or pid, "")) for pid, d in zip(ids, first, strict=True)]


def hold_duplicates(
    rt: Runtime, ctx: JobContext, chunk: int, routed: pa.Table, policy: Policy
) -> tuple[pa.Table, int]:
    """The routed rows this chunk sends, and how many it holds for other chunks' answers
    (written to its decision record). Without ``dedupe.job_wide``: all rows, 0."""
    if not policy.dedupe.job_wide:
        return routed, 0
    uri = record_uri(ctx.job_root, chunk)
    replay = _replay(rt, uri, routed)
    if replay is not None:  # redelivered / reconciled: the recorded split
        return routed.filter(pc.invert(replay)), int(pc.sum(replay).as_py() or 0)
    holders = _split(rt, ctx, chunk, routed)
    mask = pa.array([h is not None for h in holders], pa.bool_())
    kept = [c for c in RECORD_COLUMNS if c in routed.column_names]
    held = routed.select(kept).append_column(HOLDER, pa.array(holders, pa.string()))
    rt.storage.write_parquet(uri, held.filter(mask))
    return routed.filter(pc.invert(mask)), int(pc.sum(mask).as_py() or 0)


def _replay(rt: Runtime, uri: str, routed: pa.Table) -> pa.Array | None:
    """The held-rows mask of the chunk's decision record, if it has one that describes
    these rows (same prompt ids and fingerprints; else it is from another run: ignored)."""
    if not rt.storage.exists(uri):
        return None
    record = rt.storage.read_parquet(uri, columns=["prompt_id", FINGERPRINT])
    held = dict(zip(*(record.column(c).to_pylist() for c in record.column_names), strict=True))
    ids, fps = routed.column("prompt_id").to_pylist(), routed.column(FINGERPRINT).to_pylist()
    mine = {pid: fp for pid, fp in zip(ids, fps, strict=True) if pid in held}
    if mine != held:
        return None
    return pa.array([pid in held for pid in ids], pa.bool_())


def tracked(held: int) -> list[str]:
    """The extra part of a chunk that holds rows (tracker and chunk manifest: reconcile
    re-ingests the chunk with ``only=[dedupe]`` until finalize has written it)."""
    return [PART] if held else []


def held_counts(held: int) -> dict[str, Any]:
    """The tracker counts of a chunk's ``dedupe`` part until finalize fills it."""
    return {"rows": {HELD_STATUS: held}, "cost_usd": "0", "baseline_cost_usd": "0"}


def complete_held(rt: Runtime, ctx: JobContext, chunk: int, held: int, sink: Sink) -> None:
    """Record the held rows as the chunk's ``dedupe`` part (they are filled at finalize)."""
    if not held:
        return
    if rt.tracker.complete(ctx.job_id, chunk, PART, held_counts(held), ctx.total_chunks):
        sink.finalize(ctx)


# ---------------------------------------------------------------- finalize

# Outcome columns a held row takes from its canonical row.
_COPIED = (
    "status",
    "tier",
    "model",
    "provider",
    "response",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "baseline_cost_usd",
    "escalated_from",
    "cache_hit",
    "complexity_score",
    "confidence",
    "confidence_source",
    "route_reason",
    "error",
    "fallback_from",
    "mode",
    "batch_id",
    "round",
)


def _chunk_of(uri: str) -> int:
    return int(uri.rsplit("/", 1)[-1].removeprefix("c").removesuffix(".parquet"))


def _canonical_rows(rt: Runtime, root: str, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """``<chunk>:<prompt_id>`` → outcome, for the ``wanted`` rows found in tier parts
    (only those rows are converted to Python)."""
    by_chunk: dict[int, list[str]] = {}
    for claimant in wanted:
        head, _, pid = claimant.partition(":")
        by_chunk.setdefault(int(head), []).append(pid)
    found: dict[str, dict[str, Any]] = {}
    for uri in rt.storage.list_files(layout.results_dir(root), ".parquet"):
        name = uri.rsplit("/", 1)[-1].removesuffix(".parquet")
        head, _, part = name.removeprefix("part-c").partition("-")
        if not head.isdigit() or int(head) not in by_chunk or part in (PART, "rejected"):
            continue
        ids = pa.array(by_chunk[int(head)], pa.string())
        table = rt.storage.read_parquet(uri, columns=["prompt_id", *_COPIED])
        table = table.filter(pc.fill_null(pc.is_in(table.column("prompt_id"), ids), False))
        for row in table.to_pylist():
            found[f"{int(head)}:{row['prompt_id']}"] = row
    return found


class _Holders:
    """Who answers a held row. The recorded holder normally; if Redis lost the claims
    before a claimant wrote its record, that holder's row may itself be held (or have no
    result): then its own holder, or any holder recorded for the same fingerprint, that
    has a result."""

    def __init__(self, records: list[pa.Table], chunks: list[int]) -> None:
        self.held_by: dict[str, str] = {}
        self.by_fp: dict[str, list[str]] = {}
        for chunk, record in zip(chunks, records, strict=True):
            cols = (record.column(c).to_pylist() for c in ("prompt_id", FINGERPRINT, HOLDER))
            for pid, fp, holder in zip(*cols, strict=True):
                self.held_by[f"{chunk}:{pid}"] = holder
                self.by_fp.setdefault(fp, []).append(holder)

    def _chain(self, holder: str) -> list[str]:
        chain = [holder]
        while chain[-1] in self.held_by and self.held_by[chain[-1]] not in chain:
            chain.append(self.held_by[chain[-1]])
        return chain

    def candidates(self, holder: str, fp: str) -> list[str]:
        """The recorded holder first, then the rows that might answer in its place."""
        out = dict.fromkeys(self._chain(holder))
        for other in self.by_fp.get(fp, []):
            out.update(dict.fromkeys(self._chain(other)))
        return [h for h in out if h not in self.held_by]  # a held row has no own answer


def _answering(held: pa.Table, who: _Holders, canon: dict[str, dict[str, Any]]) -> list[str]:
    """Per held row, the claimant whose outcome it takes (the recorded holder when none
    of the candidates has a result: the row fails naming it)."""
    recorded = held.column(HOLDER).to_pylist()
    fps = held.column(FINGERPRINT).to_pylist()
    out = []
    for holder, fp in zip(recorded, fps, strict=True):
        found = [h for h in who.candidates(holder, fp) if h in canon]
        out.append(found[0] if found else holder)
    return out


def _filled(
    held: pa.Table, holders: list[str], canon: dict[str, dict[str, Any]], ctx: JobContext
) -> pa.Table:
    n = held.num_rows
    rows = [canon.get(h) for h in holders]
    values: dict[str, list[Any]] = {c: [r[c] if r else None for r in rows] for c in _COPIED}
    missing = [r is None for r in rows]
    values["status"] = [
        "failed" if m else s for m, s in zip(missing, values["status"], strict=True)
    ]
    values["error"] = [
        f"canonical row {h} has no result" if m else e
        for m, h, e in zip(missing, holders, values["error"], strict=True)
    ]
    values["baseline_cost_usd"] = [ZERO if b is None else b for b in values["baseline_cost_usd"]]
    values.update(
        job_id=[ctx.job_id] * n,
        policy_version=[ctx.policy_version] * n,
        dedupe_of=[h.split(":", 1)[1] for h in holders],
        cost_usd=[ZERO] * n,
        batch_saved_usd=[ZERO] * n,
        latency_ms=[0.0] * n,
        attempts=[0] * n,
    )
    return results.assemble(held, values)


def _written(rt: Runtime, part: str, held: pa.Table) -> bool:
    """Whether ``part`` exists and holds exactly the held rows (finalize ran before)."""
    if not rt.storage.exists(part):
        return False
    ids = rt.storage.read_parquet(part, columns=["prompt_id"]).column("prompt_id")
    return bool(ids.to_pylist() == held.column("prompt_id").to_pylist())


def _with_input(rt: Runtime, plan: JobPlan, chunk: int, held: pa.Table) -> pa.Table:
    """The held rows with their input columns (prompt, system, metadata, passthrough)
    read again from the input chunk, by ``input_row``; the record's columns win."""
    if "input_row" not in held.column_names:  # a record written before it kept no text
        return held
    ref = next(c for c in plan.chunks if c.chunk == chunk)
    source = carried.apply(read_chunk(rt.storage, ref), plan.context.carried_columns)
    index = {row: i for i, row in enumerate(source.column("input_row").to_pylist())}
    wanted = held.column("input_row").to_pylist()
    missing = [r for r in wanted if r not in index]
    if missing:
        raise InputError(f"{ref.uri}: input rows {missing[:5]} of chunk {chunk} are gone")
    base = source.take(pa.array([index[r] for r in wanted], pa.int64()))
    for name in held.column_names:
        if name in base.column_names:
            base = base.set_column(base.column_names.index(name), name, held.column(name))
        else:
            base = base.append_column(name, held.column(name))
    return base


def fill_duplicates(rt: Runtime, ctx: JobContext, policy: Policy) -> int:
    """Write the ``dedupe`` result part (and its audit object) of every chunk that holds
    rows and does not have it yet; return the rows written."""
    root = ctx.job_root
    records = rt.storage.list_files(join(root, "_job", "dedupe"), ".parquet")
    chunks = [_chunk_of(uri) for uri in records]
    tables = [rt.storage.read_parquet(uri) for uri in records]
    todo = [
        (chunk, held)
        for chunk, held in zip(chunks, tables, strict=True)
        if held.num_rows and not _written(rt, layout.result_part(root, chunk, PART), held)
    ]
    if not todo:
        return 0
    plan = JobPlan.model_validate(json.loads(rt.storage.read_bytes(layout.plan(root))))
    who = _Holders(tables, chunks)
    wanted = {
        c
        for _, held in todo
        for h, fp in zip(
            held.column(HOLDER).to_pylist(), held.column(FINGERPRINT).to_pylist(), strict=True
        )
        for c in who.candidates(h, fp)
    }
    canon = _canonical_rows(rt, root, wanted)
    for chunk, held in todo:
        table = _filled(
            _with_input(rt, plan, chunk, held), _answering(held, who, canon), canon, ctx
        )
        audit.append_part(rt.storage, ctx, chunk, PART, table)  # before the part it describes
        table = minimise(table, policy.minimise)
        rt.storage.write_parquet(layout.result_part(root, chunk, PART), table)
        # the part's real counts replace the ingest's "duplicate" ones (finalize is running:
        # the trigger's answer does not matter)
        rt.tracker.complete(ctx.job_id, chunk, PART, part_counts(table), ctx.total_chunks)
    return sum(held.num_rows for _, held in todo)
