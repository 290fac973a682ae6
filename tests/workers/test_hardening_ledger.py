"""Money never depends on a customer's ``prompt_id`` being unique (issue 13, finding 1).

The ledger key of a paid call is the job's own (chunk, input row, tier, model), not the
prompt id; a ``prompt_id`` repeated anywhere in the job is rejected (``duplicate
prompt_id``) for every occurrence but the one that claimed it first, and that split is the
same after a redelivered ingest or a reconcile with lost claims. Local executor with its
in-memory ledger and claims, the simulated provider over HTTP."""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
import yaml

from routing.plan import JobContext
from routing.policy import LimitsSpec, Policy, parse_policy
from routing.validate import row_rejections
from tests.budget_repro import (
    CAP,
    PER_CHUNK,
    ROWS,
    assert_cap_held,
    capped_policy_data,
    money,
    repeated_ids,
)
from tests.workers.pipeline import (
    LossySink,
    make_settings,
    plan_job,
    results,
    runtime,
    write_input,
)
from workers import layout, local, stages
from workers.claims import MemoryClaims, RedisIdClaims
from workers.jobstate import MemoryJobTracker
from workers.reconcile import reconcile
from workers.runtime import Runtime
from workers.sim.server import SimServer

pytestmark = pytest.mark.security


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 13  # the simulated provider's seed (tests/workers/conftest.py)


def capped_policy(cap: Decimal = CAP, **extra: Any) -> Policy:
    return parse_policy(yaml.safe_dump(capped_policy_data(cap, **extra)), "capped.yaml")


def run_repro(tmp_path: Path, sim: SimServer, table: pa.Table, job_id: str) -> tuple:
    pol = capped_policy()
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in" / f"{job_id}.parquet", table)
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=PER_CHUNK, job_id=job_id,
                    policy=pol)  # fmt: skip
    manifest = local.run_job(rt, plan)
    out = results(rt, plan)
    ledger = rt.guards(pol).ledger.usage(f"job:{job_id}")
    return manifest, out, ledger


# ---------------------------------------------------------------- the reproduction


def test_repeated_prompt_ids_never_overspend_the_job_cap(tmp_path: Path, sim: SimServer) -> None:
    """200 different prompts, ids ``p{i % 10}``, 10 rows per chunk, a $0.003 job cap: before
    the fix 198 rows were answered for $0.0079."""
    manifest, out, ledger = run_repro(tmp_path, sim, repeated_ids(), "dup-ids")
    # each id is kept by exactly one row; every other occurrence is rejected, never sent
    kept = assert_cap_held(manifest, out, ledger)
    dup = out.filter(pl.col("error") == "duplicate prompt_id")
    assert (dup["cost_usd"] == 0).all() and dup["response"].is_null().all()
    assert sim.stats()["completions"] == kept.filter(pl.col("status") == "ok").height


def test_unique_ids_spend_up_to_the_cap(tmp_path: Path, sim: SimServer) -> None:
    """The same job with unique ids: the cap stops it (the issue's 59 ok, $0.0026)."""
    table = repeated_ids(ids=ROWS)
    manifest, out, ledger = run_repro(tmp_path, sim, table, "unique-ids")
    spent = money(out["cost_usd"].to_list())
    by_status = manifest["rows_by_status"]
    assert spent <= CAP and ledger.settled_usd == spent
    assert by_status["ok"] > 0 and by_status["over_budget"] > 0
    assert by_status["ok"] + by_status["over_budget"] == ROWS


# ---------------------------------------------------------------- the ledger key


def _batch_table(batch: dict[str, Any]) -> pa.Table:
    return pa.ipc.open_stream(io.BytesIO(base64.b64decode(batch["inline"]))).read_all()


def _with_ids(batch: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    """The inline batch with its rows' prompt_ids replaced (what a bypassed check lets by)."""
    table = _batch_table(batch)
    table = table.set_column(
        table.column_names.index("prompt_id"), "prompt_id", pa.array(ids, pa.string())
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return {**batch, "inline": base64.b64encode(sink.getvalue().to_pybytes()).decode()}


class Recording:
    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []

    def dispatch(self, ctx: JobContext, batch: dict[str, Any]) -> None:
        self.batches.append(batch)

    def finalize(self, ctx: JobContext) -> None:
        pass


def test_the_ledger_keys_calls_by_chunk_and_row_not_by_prompt_id(
    tmp_path: Path, sim: SimServer
) -> None:
    """Batches of two chunks whose rows share prompt_ids (as if the job-wide check were
    bypassed): every row is its own paid call; the cap holds and the ledger equals the
    rows' cost. A redelivered dispatch replaces its settlements instead of adding."""
    n = 40
    table = repeated_ids(rows=n, ids=n)
    cap = Decimal("0.0006")
    pol = capped_policy(cap)
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in" / "k.parquet", table)
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=n // 2, job_id="keys",
                    policy=pol)  # fmt: skip
    ctx = plan.context
    rt.tracker.register(ctx.job_id, {"total_chunks": ctx.total_chunks})
    recording = Recording()
    for chunk in plan.chunks:
        stages.ingest(rt, ctx, chunk, recording)
    first = {b["tier"]: _batch_table(b).column("prompt_id").to_pylist()
             for b in recording.batches if b["chunk"] == 0}  # fmt: skip
    batches = [
        b if b["chunk"] == 0 else _with_ids(b, first[b["tier"]][: b["rows"]])
        for b in recording.batches
        if b["chunk"] == 0 or b["rows"] <= len(first.get(b["tier"], []))
    ]
    assert any(b["chunk"] == 1 for b in batches)
    sink = stages_sink(rt)
    for batch in batches + batches:  # every dispatch delivered twice
        stages.dispatch(rt, ctx, batch, sink)

    parts = [
        rt.storage.read_parquet(layout.result_part(ctx.job_root, b["chunk"], b["tier"]))
        for b in batches
    ]
    out = pl.from_arrow(pa.concat_tables(parts))
    assert isinstance(out, pl.DataFrame)
    spent = money(out["cost_usd"].to_list())
    usage = rt.guards(pol).ledger.usage(f"job:{ctx.job_id}")
    assert spent <= cap
    assert usage.settled_usd == spent and usage.reserved_usd == 0
    assert set(out["status"]) == {"ok", "over_budget"}


class _Quiet:
    def dispatch(self, ctx: JobContext, batch: dict[str, Any]) -> None:
        raise AssertionError("dispatch does not route")

    def finalize(self, ctx: JobContext) -> None:
        pass


def stages_sink(rt: Runtime) -> _Quiet:
    return _Quiet()


# ---------------------------------------------------------------- job-wide duplicate ids


def _dup_table() -> pa.Table:
    """30 rows, 3 chunks of 10: ids a0..a9 in chunk 0, repeated in chunks 1 and 2 (plus one
    id of chunk 1 repeated in chunk 1 itself); a fresh id per chunk."""
    ids = [f"a{i}" for i in range(10)]
    ids += ["a0", "a1", "b1", "b1", "a4", "a5", "a6", "a7", "a8", "a9"]
    ids += ["c0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "b1"]
    prompts = [f"Row {i}: name a river that flows through city {i}." for i in range(30)]
    return pa.table({"prompt_id": ids, "prompt": prompts})


# rows 10-19 repeat a0-a9 but b1 (12; 13 repeats it in its chunk), rows 21-29 repeat a1-a8, b1
FIRST_RUN_REJECTED = [10, 11, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 24, 25, 26, 27, 28, 29]


def _kept(out: pl.DataFrame) -> dict[str, list[int]]:
    kept = out.filter(pl.col("error").fill_null("") != "duplicate prompt_id")
    return dict(Counter(kept["prompt_id"].to_list()))


def test_each_prompt_id_is_kept_by_one_row_of_the_job(tmp_path: Path, sim: SimServer) -> None:
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in" / "d.parquet", _dup_table())
    pol = capped_policy(Decimal("10"))
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=10, job_id="dups", policy=pol)
    manifest = local.run_job(rt, plan, threads=1)  # one thread: chunk order is ingest order
    out = results(rt, plan)
    assert out.height == 30 == manifest["rows_out"]
    assert set(_kept(out).values()) == {1}
    assert set(_kept(out)) == set(_dup_table().column("prompt_id").to_pylist())
    # one thread ingests the chunks in order: the first occurrence in (chunk, row) keeps it
    rejected = out.filter(pl.col("error") == "duplicate prompt_id")["input_row"].to_list()
    assert rejected == FIRST_RUN_REJECTED
    assert out.filter(pl.col("status") == "ok").height == 12


def test_a_redelivered_ingest_keeps_its_own_claims(tmp_path: Path, sim: SimServer) -> None:
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in" / "r.parquet", _dup_table())
    pol = capped_policy(Decimal("10"))
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=10, job_id="redeliver",
                    policy=pol)  # fmt: skip
    first = local.run_job(rt, plan, threads=1)
    before = results(rt, plan)
    sink = LossySink(rt, lose=set())
    for chunk in (plan.chunks[2], plan.chunks[0], plan.chunks[1]):  # redelivered, any order
        stages.ingest(rt, plan.context, chunk, sink)
    after = results(rt, plan)
    assert after.drop("latency_ms").equals(before.drop("latency_ms"))
    assert first["rows_by_status"] == {"ok": 12, "failed": 0, "rejected": 18, "over_budget": 0}


def test_reconcile_after_lost_claims_keeps_the_split(tmp_path: Path, sim: SimServer) -> None:
    """Every tier batch lost, then Redis (a fresh tracker: no claims): reconcile re-sends the
    tier parts with the split each chunk recorded, so no id is answered twice."""
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in" / "l.parquet", _dup_table())
    pol = capped_policy(Decimal("10"))
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=10, job_id="lost",
                    policy=pol)  # fmt: skip
    ctx = plan.context
    rt.tracker.register(ctx.job_id, {"total_chunks": ctx.total_chunks})
    lossy = LossySink(rt, lose=set(pol.tier_names))
    for chunk in plan.chunks:
        stages.ingest(rt, ctx, chunk, lossy)

    fresh = Runtime(settings=rt.settings, storage=rt.storage, tracker=MemoryJobTracker())
    sink = LossySink(fresh, lose=set())
    for chunk in reversed(plan.chunks):  # the last chunk first: it would win every claim
        sink.ingest(ctx, chunk, list(pol.tier_names))
    report = reconcile(fresh, ctx.job_root, sink)
    assert report.reingested == [] and report.state == "finalizing"
    assert rt.storage.exists(layout.success(ctx.job_root))
    out = results(fresh, plan)
    assert out.height == 30 and out["input_row"].is_unique().all()
    assert set(_kept(out).values()) == {1}
    rejected = out.filter(pl.col("error") == "duplicate prompt_id")["input_row"].to_list()
    assert rejected == FIRST_RUN_REJECTED  # the split of the first ingest, chunks 0, 1, 2
    assert out.filter(pl.col("status") == "ok").height == 12


def test_a_record_of_other_rows_is_not_replayed(tmp_path: Path, sim: SimServer) -> None:
    """A parts manifest whose recorded rows hold other ids (another run under the same job
    id) is ignored: the chunk takes the claims' answer."""
    from workers import prompt_ids

    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in" / "s.parquet", _dup_table())
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=10, job_id="stale",
                    policy=capped_policy(Decimal("10")))  # fmt: skip
    ctx, chunk = plan.context, plan.chunks[1]
    table = stages.read_chunk(rt.storage, chunk)
    reasons = row_rejections(table, LimitsSpec(), ctx.tenant)
    stale = {"chunk": 1, "parts": [], prompt_ids.RECORD_FIELD: [[12, "0" * 12]]}
    rt.storage.write_bytes(layout.chunk_parts(ctx.job_root, 1), json.dumps(stale).encode())
    got, record = prompt_ids.reject_repeats(rt, ctx, 1, table, reasons, replay=True)
    assert record == []  # chunk 1 claims first here: it keeps every id, row 12 (b1) too
    assert got.to_pylist() == [None] * 3 + ["duplicate prompt_id"] + [None] * 6  # 13: b1
    other = stages.read_chunk(rt.storage, plan.chunks[2])
    reasons = row_rejections(other, LimitsSpec(), ctx.tenant)
    got, record = prompt_ids.reject_repeats(rt, ctx, 2, other, reasons, replay=False)
    assert [r for r, _ in record] == [21, 24, 25, 26, 27, 28, 29]  # a1, a4-a9 (chunk 1's)


def test_claims_name_chunk_and_row() -> None:

    claims = MemoryClaims()
    assert claims.claim("j", [("x", "0:1"), ("y", "0:2")], 60) == ["0:1", "0:2"]
    assert claims.claim("j", [("x", "1:11"), ("y", "0:2")], 60) == ["0:1", "0:2"]
    assert claims.claim("k", [("x", "1:11")], 60) == ["1:11"]


def test_redis_id_claims_hsetnx_with_ttl(redis_url: str) -> None:
    import redis

    from workers import keys, prompt_ids

    client = redis.Redis.from_url(redis_url)
    store = RedisIdClaims(client)
    job = "id-claims-test"
    items = [(prompt_ids.digest(f"p{i}"), f"0:{i}") for i in range(2500)]  # > one Lua call
    assert store.claim(job, items, 120, buckets=40) == [me for _, me in items]
    again = [items[1][0], items[1][0], prompt_ids.digest("new")]
    got = store.claim(job, [(again[0], "3:7"), (again[1], "0:1"), (again[2], "3:8")], 120, 40)
    assert got == ["0:1", "0:1", "3:8"]
    bucket = keys.job_prompt_ids(job, int(items[1][0][:8], 16) % 40)
    assert bucket.startswith(f"br:job:{{{job}}}:ids:")
    assert client.hget(bucket, items[1][0]) == b"0:1" and 0 < client.ttl(bucket) <= 120
    assert 30 <= len(client.keys(f"br:job:{{{job}}}:ids:*")) <= 40
