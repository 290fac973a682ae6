"""The cost rollup (workers.rollup): exact sums, the manifest's savings, latency buckets,
the hive layout, the day, and the report's scan over it (tenant/day pruning)."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from producer.report.query import Filters, find_jobs, scan
from routing.policy import Policy, load_policy
from routing.schema import COST_ROLLUP_SCHEMA, LATENCY_BUCKETS_MS, RESULT_SCHEMA
from workers import layout, rollup
from workers.finalize import savings
from workers.settings import S3Settings
from workers.storage import Storage

STORAGE = Storage(S3Settings())
MODELS = {"fast": "gpt-4o-mini", "balanced": "gpt-4.1-mini", "expert": "gpt-4.1"}
TENANTS = ["acme", "globex", "a/b c=d", None]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


def _money(rng: random.Random) -> Decimal:
    """A cost with all 12 places used: float sums of these drift, exact sums do not."""
    return Decimal(rng.randrange(0, 10**9)).scaleb(-12) + Decimal(rng.randrange(0, 50))


def results(n: int, seed: int = 7, tenants: list[str | None] | None = None) -> pa.Table:
    """``n`` result rows of every status, tier, tenant, cache and dedupe case."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        status = rng.choice(["ok"] * 8 + ["failed", "rejected", "over_budget"])
        tier = None if status == "rejected" else rng.choice(list(MODELS))
        routed = status == "ok"
        rows.append(
            {
                "tenant": rng.choice(tenants or TENANTS),
                "tier": tier,
                "model": MODELS[tier] if tier else None,
                "status": status,
                "input_tokens": rng.randrange(1, 4000) if routed else None,
                "output_tokens": rng.randrange(1, 2000) if routed else None,
                "cost_usd": _money(rng) if routed else rng.choice([None, Decimal(0)]),
                "baseline_cost_usd": _money(rng) if routed else None,
                "latency_ms": rng.expovariate(1 / 800) if routed else None,
                "dedupe_of": f"p{i - 1}" if routed and rng.random() < 0.2 else None,
                "cache_hit": rng.random() < 0.3 if routed else None,
                "escalated_from": "fast" if routed and rng.random() < 0.05 else None,
            }
        )
    fields = [RESULT_SCHEMA.field(c) for c in rollup.INPUTS]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def _total(table: pa.Table, column: str) -> Decimal:
    return sum((v for v in table.column(column).to_pylist() if v is not None), Decimal(0))


def test_rollup_sums_equal_the_row_sums_exactly(policy: Policy) -> None:
    table = results(3000)
    out = rollup.build(table, policy)
    assert out.schema.remove(0) == COST_ROLLUP_SCHEMA and out.column_names[0] == "tenant"
    for column in ("cost_usd", "baseline_cost_usd"):
        assert _total(out, column) == _total(table, column)
    assert sum(out.column("rows").to_pylist()) == table.num_rows
    for column in ("input_tokens", "output_tokens"):
        assert sum(out.column(column).to_pylist()) == sum(
            v for v in table.column(column).to_pylist() if v is not None
        )
    keys = list(zip(*(out.column(k).to_pylist() for k in rollup.KEYS), strict=True))
    assert len(keys) == len(set(keys))  # one row per tenant, tier, model, status
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    per_tenant = frame.group_by("tenant").agg(pl.col("cost_usd").sum())
    for tenant, cost in per_tenant.iter_rows():
        mine = pl.from_arrow(out).filter(pl.col("tenant").eq_missing(tenant))
        assert isinstance(mine, pl.DataFrame)
        assert mine["cost_usd"].sum() == cost


def test_rollup_savings_and_counts_match_the_manifest(policy: Policy) -> None:
    table = results(3000, seed=11)
    out = rollup.build(table, policy)
    manifest = savings(table, policy)
    assert sum(out.column("cache_hits").to_pylist()) == manifest["cache_hits"] > 0
    assert sum(out.column("duplicates").to_pylist()) == manifest["duplicates_answered"] > 0
    assert str(_total(out, "cache_saved_usd")) == manifest["cache_saved_usd"]
    assert str(_total(out, "dedupe_saved_usd")) == manifest["dedupe_saved_usd"]
    escalated = sum(v is not None for v in table.column("escalated_from").to_pylist())
    assert sum(out.column("escalated").to_pylist()) == escalated > 0


def test_rollup_latency_buckets_are_cumulative_counts(policy: Policy) -> None:
    table = results(2000, seed=3)
    out = rollup.build(table, policy)
    rows = table.to_pylist()
    latencies = [  # provider calls only: not duplicates, not cache hits
        r["latency_ms"]
        for r in rows
        if r["latency_ms"] is not None and r["dedupe_of"] is None and not r["cache_hit"]
    ]
    assert 0 < len(latencies) < sum(r["latency_ms"] is not None for r in rows)
    assert sum(out.column("latency_count").to_pylist()) == len(latencies)
    assert sum(out.column("latency_ms_sum").to_pylist()) == pytest.approx(sum(latencies))
    assert max(out.column("latency_ms_max").to_pylist(), key=lambda v: v or 0) == max(latencies)
    for bound in LATENCY_BUCKETS_MS:
        counted = sum(out.column(f"latency_le_{bound}ms").to_pylist())
        assert counted == sum(v <= bound for v in latencies)


def test_latency_counts_only_rows_that_made_a_provider_call(policy: Policy) -> None:
    """Duplicates and cache hits (latency 0) and rows that made no call (0 attempts) do
    not pull the latency down; the report's "(N calls)" is the number of calls."""
    kinds = (  # (rows, latency_ms, dedupe_of, cache_hit, attempts)
        (10, 1000.0, None, False, 1),  # provider calls
        (90, 0.0, "p0", False, 0),  # job-wide / in-chunk duplicates
        (10, 0.0, None, True, 1),  # response cache hits
        (5, 0.0, None, False, 0),  # over budget before any call
    )
    rows = [
        {
            "tenant": "acme",
            "tier": "fast",
            "model": MODELS["fast"],
            "status": "ok",
            "input_tokens": 10,
            "output_tokens": 5,
            "cost_usd": Decimal(0),
            "baseline_cost_usd": Decimal(0),
            "latency_ms": latency,
            "dedupe_of": dup,
            "cache_hit": hit,
            "escalated_from": None,
            "attempts": attempts,
        }
        for n, latency, dup, hit, attempts in kinds
        for _ in range(n)
    ]
    fields = [RESULT_SCHEMA.field(c) for c in (*rollup.INPUTS, "attempts")]
    out = rollup.build(pa.Table.from_pylist(rows, schema=pa.schema(fields)), policy)
    assert out.column("rows").to_pylist() == [115]
    assert out.column("latency_count").to_pylist() == [10]
    assert out.column("latency_ms_sum").to_pylist() == [10_000.0]
    assert out.column("latency_le_500ms").to_pylist() == [0]
    assert out.column("latency_le_1000ms").to_pylist() == [10]
    # without an attempts column (as finalize reads): duplicates and cache hits still out
    without = rollup.build(
        pa.Table.from_pylist(rows, schema=pa.schema(fields)).drop(["attempts"]), policy
    )
    assert without.column("latency_count").to_pylist() == [15]


@pytest.mark.parametrize(
    ("created_at", "day"),
    [
        ("2026-11-28T02:15:00+00:00", date(2026, 11, 28)),
        ("2026-11-28T23:30:00-02:00", date(2026, 11, 29)),  # the UTC date, not the local one
        ("2026-11-28T00:30:00+01:00", date(2026, 11, 27)),
        ("2026-11-28T23:59:59", date(2026, 11, 28)),  # naive means UTC
    ],
)
def test_day_is_the_utc_date_the_job_was_created(created_at: str, day: date) -> None:
    assert rollup.day_of(created_at) == day


def test_write_lays_out_hive_partitions(tmp_path: Path, policy: Policy) -> None:
    root = str(tmp_path / "out" / "job_id=j1")
    table = results(1500, seed=5)
    written = rollup.write(STORAGE, root, table, "2026-11-28T02:15:00+00:00", policy, "acme")
    assert written["day"] == "2026-11-28"
    assert written["parts"] == [
        "cost/day=2026-11-28/tenant=a%2Fb%20c%3Dd/part-0.parquet",
        "cost/day=2026-11-28/tenant=acme/part-0.parquet",
        "cost/day=2026-11-28/tenant=globex/part-0.parquet",
        f"cost/day=2026-11-28/tenant={layout.HIVE_NULL}/part-0.parquet",
    ]
    for part in written["parts"]:
        assert pq.read_schema(Path(root) / part).remove_metadata() == COST_ROLLUP_SCHEMA
    before = {p: (Path(root) / p).read_bytes() for p in written["parts"]}
    rollup.write(STORAGE, root, table, "2026-11-28T02:15:00+00:00", policy, "acme")
    assert {p: (Path(root) / p).read_bytes() for p in written["parts"]} == before  # a re-run

    # read back as a hive dataset: tenants decoded, the null tenant null, sums exact
    (Path(root) / "_SUCCESS").write_bytes(b"")
    back = scan(find_jobs(STORAGE, [str(tmp_path / "out")]).files, STORAGE.s3).collect()
    assert set(back["tenant"].to_list()) == set(TENANTS)
    assert set(back["job_id"].to_list()) == {"j1"} and set(back["day"]) == {date(2026, 11, 28)}
    assert back["cost_usd"].sum() == _total(table, "cost_usd")


def test_write_of_an_empty_job_leaves_an_empty_partition(tmp_path: Path, policy: Policy) -> None:
    root = str(tmp_path / "job_id=empty")
    untyped = pa.table({c: pa.nulls(0) for c in rollup.INPUTS})  # as finalize reads no parts
    written = rollup.write(STORAGE, root, untyped, "2026-11-28T02:15:00+00:00", policy, None)
    # a job without a tenant: "default", as ingest labels the rows of a non-empty one
    assert written["parts"] == ["cost/day=2026-11-28/tenant=default/part-0.parquet"]
    assert pq.read_table(Path(root) / written["parts"][0]).num_rows == 0


def _job(out: Path, job: str, created_at: str, tenant: str, policy: Policy, n: int) -> pa.Table:
    root = out / f"job_id={job}"
    table = results(n, seed=hash(job) % 1000, tenants=[tenant])
    rollup.write(STORAGE, str(root), table, created_at, policy, tenant)
    (root / "_SUCCESS").write_bytes(b"")
    return table


def test_scan_prunes_partitions_by_tenant_and_day(tmp_path: Path, policy: Policy) -> None:
    out = tmp_path / "out"
    a = _job(out, "a", "2026-11-01T02:00:00+00:00", "acme", policy, 400)
    _job(out, "b", "2026-11-02T02:00:00+00:00", "globex", policy, 300)
    c = _job(out, "c", "2026-11-03T02:00:00+00:00", "acme", policy, 200)
    (out / "job_id=running" / "cost").mkdir(parents=True)  # not finished: not reported
    jobs = find_jobs(STORAGE, [str(out)])
    assert [Path(r).name for r in jobs.job_roots] == ["job_id=a", "job_id=b", "job_id=c"]
    # globex's file is corrupt: a scan that opened it would fail, so it must be pruned
    globex = next(Path(f) for f in jobs.files if "tenant=globex" in f)
    globex.write_bytes(b"not parquet")
    acme = scan(jobs.files, STORAGE.s3).filter(Filters(tenant="acme").expr()).collect()
    assert acme["cost_usd"].sum() == _total(a, "cost_usd") + _total(c, "cost_usd")
    with pytest.raises(Exception, match=r"(?i)parquet|magic|footer"):
        scan(jobs.files, STORAGE.s3).collect()
    since = Filters(tenant="acme", since=date(2026, 11, 2), until=date(2026, 11, 3)).expr()
    only_c = scan(jobs.files, STORAGE.s3).filter(since).collect()
    assert set(only_c["job_id"]) == {"c"} and only_c["rows"].sum() == 200


def test_scan_reads_rollups_with_older_or_newer_columns(tmp_path: Path, policy: Policy) -> None:
    out = tmp_path / "out"
    a = _job(out, "a", "2026-11-01T02:00:00+00:00", "acme", policy, 300)
    b = _job(out, "b", "2026-11-02T02:00:00+00:00", "acme", policy, 200)
    files = find_jobs(STORAGE, [str(out)]).files
    older = pq.read_table(files[0]).drop(["escalated", "latency_le_50ms"])
    pq.write_table(older, files[0])  # as written before these columns existed
    newer = pq.read_table(files[1])
    pq.write_table(newer.append_column("future", pa.array([1] * newer.num_rows)), files[1])
    back = scan(files, STORAGE.s3).collect()
    assert back.columns[: len(COST_ROLLUP_SCHEMA)] == COST_ROLLUP_SCHEMA.names
    assert "future" not in back.columns
    assert back["cost_usd"].sum() == _total(a, "cost_usd") + _total(b, "cost_usd")
    assert back.filter(pl.col("job_id") == "a")["escalated"].null_count() > 0
