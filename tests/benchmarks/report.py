"""Report over a month of nightly jobs: ``python -m tests.benchmarks.report [--jobs 30]
[--rows 1000000]``.

In a temporary folder (removed at the end) it writes ``--jobs`` finished jobs of
``--rows`` generated result rows each (tenants, tiers, models, statuses, tokens, exact
``decimal(24,12)`` costs at the default policy's prices, latency, cache hits, duplicates,
escalations), one job per night from 2026-11-01, then times, one after the other:

- **rollup**: per job, what the finalizer does — read the result columns it needs and
  ``workers.rollup.write`` (build + hive-partitioned Parquet under ``cost/``);
- **report**: ``producer.report.query.load`` + ``producer.report.data.build`` over the
  output root (in-process), and ``batch-router report ROOT --json`` as a user runs it
  (a subprocess: interpreter start and imports included; the issue's target is < 10 s);
- **raw scan**, for comparison: a polars lazy scan of every job's raw result rows that
  sums rows, tokens, cost and baseline by tenant, tier, model and status.

The report's totals are checked against the raw scan's (exact, decimal). Prints one JSON
line: rows, jobs, seconds of each phase, and report time / raw scan time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from producer.report import data as report_data
from producer.report import query as report_query
from routing.policy import Policy, load_policy
from routing.schema import MONEY
from workers import layout, rollup
from workers.settings import S3Settings
from workers.storage import Storage

ROOT = Path(__file__).resolve().parents[2]
TENANTS = ("acme", "globex", "initech")
STATUSES = (("ok", 0.95), ("failed", 0.01), ("rejected", 0.03), ("over_budget", 0.01))
TIER_SHARES = (0.6, 0.25, 0.15)  # fast, balanced, expert
PICO = 10**12


def _money(pico: np.ndarray) -> pa.Array:
    """Exact ``decimal(24,12)`` from non-negative integer pico-dollars (int128 buffer)."""
    words = np.zeros((len(pico), 2), dtype=np.int64)
    words[:, 0] = pico
    return pa.Array.from_buffers(MONEY, len(pico), [None, pa.py_buffer(words.tobytes())])


def _strings(values: tuple[str, ...], index: np.ndarray, mask: np.ndarray | None) -> pa.Array:
    dictionary = pa.DictionaryArray.from_arrays(
        pa.array(index.astype(np.int32), mask=mask), pa.array(values)
    )
    return dictionary.cast(pa.string())


def results(job: int, rows: int, policy: Policy) -> pa.Table:
    """One job's result rows (no response text: the report never reads it)."""
    rng = np.random.default_rng(job)
    tiers = policy.tiers
    names = tuple(t.name for t in tiers)
    models = tuple(t.models[0].name for t in tiers)
    status = rng.choice(len(STATUSES), rows, p=[p for _, p in STATUSES])
    ok, rejected = status == 0, status == 2
    tier = rng.choice(len(tiers), rows, p=TIER_SHARES)
    tokens_in = np.where(ok, rng.integers(20, 4000, rows), 0)
    tokens_out = np.where(ok, rng.integers(1, 1500, rows), 0)
    price_in = np.array([int(t.models[0].input_per_token * PICO) for t in tiers])[tier]
    price_out = np.array([int(t.models[0].output_per_token * PICO) for t in tiers])[tier]
    top = tiers[-1].models[0]
    base_in, base_out = int(top.input_per_token * PICO), int(top.output_per_token * PICO)
    duplicate = ok & (rng.random(rows) < 0.1)
    cost = np.where(duplicate, 0, tokens_in * price_in + tokens_out * price_out)
    tenant = TENANTS[job % len(TENANTS)]
    return pa.table(
        {
            "job_id": pa.array([f"night-{job:02d}"] * rows),
            "prompt_id": pa.array([f"p{job:02d}-{i:07d}" for i in range(rows)]),
            "tenant": pa.array([tenant] * rows),
            "status": _strings(tuple(s for s, _ in STATUSES), status, None),
            "tier": _strings(names, tier, rejected),
            "model": _strings(models, tier, rejected),
            "input_tokens": pa.array(tokens_in, mask=~ok),
            "output_tokens": pa.array(tokens_out, mask=~ok),
            "cost_usd": _money(cost),
            "baseline_cost_usd": _money(tokens_in * base_in + tokens_out * base_out),
            "latency_ms": pa.array(rng.lognormal(6.0, 0.9, rows), mask=~ok | duplicate),
            "dedupe_of": pa.array(np.where(duplicate, "p-canonical", None), pa.string()),
            "cache_hit": pa.array(ok & ~duplicate & (rng.random(rows) < 0.15), mask=~ok),
            "escalated_from": _strings(names, np.zeros(rows, np.int64), ~ok | (tier == 0)),
        }
    )


def write_jobs(out: Path, jobs: int, rows: int, policy: Policy) -> list[dict[str, Any]]:
    storage = Storage(S3Settings())
    timings = []
    for job in range(jobs):
        root = out / f"job_id=night-{job:02d}"
        table = results(job, rows, policy)
        (root / "results").mkdir(parents=True)
        pq.write_table(table, root / "results" / "part-c000000-all.parquet")
        del table
        created = f"{date(2026, 11, 1) + timedelta(days=job)}T02:15:00+00:00"
        started = time.perf_counter()
        part = storage.read_parquet(layout.result_part(str(root), 0, "all"), rollup.INPUTS)
        read = time.perf_counter()
        rollup.write(storage, str(root), part, created, policy, TENANTS[job % len(TENANTS)])
        done = time.perf_counter()
        (root / "_SUCCESS").write_bytes(b"")
        timings.append({"read_s": read - started, "rollup_s": done - read})
        print(f"job {job + 1}/{jobs}: rollup {done - read:.2f}s", file=sys.stderr)
    return timings


def raw_scan(out: Path) -> pl.DataFrame:
    return (
        pl.scan_parquet(str(out / "job_id=*" / "results" / "*.parquet"))
        .group_by("tenant", "tier", "model", "status")
        .agg(
            pl.len(),
            pl.col("input_tokens", "output_tokens", "cost_usd", "baseline_cost_usd").sum(),
        )
        .collect()
    )


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - started


def in_process_report(out: Path) -> dict[str, Any]:
    jobs, frame = report_query.load(Storage(S3Settings()), [str(out)], report_query.Filters())
    return report_data.build(frame, len(jobs.job_roots), {})


def cli_report(out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "producer", "report", str(out), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=out)
    return dict(json.loads(proc.stdout))


def git_rev() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        cmd = ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    return "unknown"


def _size(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=1_000_000, help="result rows per job")
    args = parser.parse_args()
    policy = load_policy()
    with tempfile.TemporaryDirectory(prefix="br-report-bench-") as tmp:
        out = Path(tmp) / "out"
        started = time.perf_counter()
        rollups = write_jobs(out, args.jobs, args.rows, policy)
        total_s = time.perf_counter() - started
        report, report_s = timed(in_process_report, out)
        cli, cli_s = timed(cli_report, out)
        raw, raw_s = timed(raw_scan, out)
        raw_cost = raw["cost_usd"].sum()
        assert report["totals"]["rows"] == raw["len"].sum() == args.jobs * args.rows
        assert Decimal(report["totals"]["cost_usd"]) == raw_cost, (report["totals"], raw_cost)
        assert cli["totals"] == report["totals"]
        line = {
            "benchmark": "report",
            "git_rev": git_rev(),
            "jobs": args.jobs,
            "rows_per_job": args.rows,
            "rows": args.jobs * args.rows,
            "generate_and_rollup_s": round(total_s, 2),
            "rollup_s_per_job_mean": round(sum(r["rollup_s"] for r in rollups) / len(rollups), 3),
            "rollup_s_per_job_max": round(max(r["rollup_s"] for r in rollups), 3),
            "read_s_per_job_mean": round(sum(r["read_s"] for r in rollups) / len(rollups), 3),
            "report_s": round(report_s, 3),
            "report_cli_s": round(cli_s, 3),
            "raw_scan_s": round(raw_s, 3),
            "report_to_raw_scan": round(report_s / raw_s, 4),
            "report_cli_to_raw_scan": round(cli_s / raw_s, 4),
            "rollup_bytes": _size(out, "job_id=*/cost/day=*/tenant=*/*.parquet"),
            "raw_bytes": _size(out, "job_id=*/results/*.parquet"),
            "totals_match": True,
            "target_report_s": 10,
        }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
