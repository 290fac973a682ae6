"""Provider batch mode against realtime mode on the same fleet and the same prompts.

    python -m tests.benchmarks.batch                    # 100,000 distinct prompts
    python -m tests.benchmarks.batch --prompts 10000    # quick run while developing
    python -m tests.benchmarks.batch --prompts 20000 --profile DIR   # py-spy of the batch job

It starts the services of ``tests/benchmarks/pipeline.py`` (private Redis, SeaweedFS, the
simulated provider, one prefork ``celery worker`` per queue group), uploads N *distinct*
prompts (corpus prompts made unique by a numbered suffix: no dedupe, one request each), and
runs the same input twice, one job after the other on the same workers: (a) the default
policy (every tier realtime: one HTTP call per prompt), (b) the default policy with every
tier ``mode: batch`` (JSONL files through the OpenAI Batches API of the simulator). Printed
as one JSON line: the cost ratio, worker CPU seconds per 1,000 prompts in each mode and their
ratio, and the HTTP requests each mode made to the provider. ``--profile DIR`` records
``py-spy`` of every worker during (b) and prints where time went (sampled wall time of busy
threads: on this 2-core machine it over-weights code that waits in native I/O; the numbers
come from an unprofiled run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.benchmarks import pipeline as pipe

WORKER_PREFIX = "worker-"


def distinct_input(n: int, corpus: Path, seed: int) -> tuple[Any, str]:
    """``n`` corpus prompts (sampled with repeats), each made unique by a numbered suffix."""
    import pyarrow as pa

    table, source = pipe.make_input(n, corpus, seed)
    texts = [f"{p}\n\n(request {i})" for i, p in enumerate(table.column("prompt").to_pylist())]
    prompts = pa.array(texts, pa.large_string())
    return table.set_column(table.schema.get_field_index("prompt"), "prompt", prompts), source


NO_CACHE = {"enabled": False}  # else the second job is answered from the first one's cache


def realtime_policy() -> Any:
    """The default policy, response cache off."""
    from tests import policies

    return policies.build(cache=NO_CACHE, source="bench-realtime-policy.yaml")


def batch_policy(poll_s: float) -> Any:
    """The default policy with every tier in batch mode, polled every ``poll_s``, response
    cache off."""
    from tests import policies

    return policies.build(
        tiers=policies.every_tier(mode="batch", batch={"poll_s": poll_s}),
        cache=NO_CACHE,
        source="bench-batch-policy.yaml",
    )


def provider_counters(sim_url: str) -> dict[str, int]:
    stats = pipe.sim_stats(sim_url)
    batches = stats.get("openai_batches", {})
    return {
        "realtime_requests": int(stats["requests"]),
        "batch_http_requests": int(batches.get("http_requests", 0)),
        "batches_created": int(batches.get("batches_created", 0)),
        "batch_requests_submitted": int(batches.get("requests_submitted", 0)),
        "duplicate_requests": int(batches.get("duplicate_requests", 0)),
    }


def run_mode(
    name: str, settings: Any, ends: pipe.Endpoints, fleet: pipe.Fleet, input_uri: str,
    policy: Any, deadline: float,
) -> dict[str, Any]:  # fmt: skip
    """One job: wall time, worker CPU, provider traffic and the manifest's money."""
    from workers import layout
    from workers.storage import Storage

    before, cpu_before = provider_counters(ends.sim), pipe.cpu_by_process(fleet.procs)
    real = pipe.run_pipeline(settings, input_uri, deadline, policy)
    cpu_after, after = pipe.cpu_by_process(fleet.procs), provider_counters(ends.sim)
    cpu = {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after}
    workers = sum(v for k, v in cpu.items() if k.startswith(WORKER_PREFIX))
    root = real["plan"].context.job_root
    manifest = json.loads(Storage(settings.s3).read_bytes(layout.manifest(root)))
    rows = real["plan"].rows_total
    traffic = {k: after[k] - before[k] for k in after}
    pipe.log(f"{name}: {rows} rows in {real['seconds']:.1f} s, worker CPU {workers:.1f} s, "
             f"cost {manifest['totals']['cost_usd']}, traffic {traffic}")  # fmt: skip
    return {
        "rows": rows,
        "seconds": real["seconds"],
        "worker_cpu_s": workers,
        "cpu_s": cpu,
        "traffic": traffic,
        "cost_usd": Decimal(manifest["totals"]["cost_usd"]),
        "baseline_cost_usd": Decimal(manifest["totals"]["baseline_cost_usd"]),
        "batch_saved_usd": Decimal(manifest["totals"]["batch_saved_usd"]),
        "rows_by_status": manifest["rows_by_status"],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.batch",
        description="Provider batch mode vs realtime mode: cost, worker CPU, HTTP requests.",
    )
    p.add_argument("--prompts", type=int, default=100_000, help="distinct prompts in the job")
    p.add_argument("--rows-per-chunk", type=int, default=2000, help="rows per chunk reference")
    p.add_argument("--poll-s", type=float, default=1.0, help="batch tiers' poll_s")
    p.add_argument("--timeout", type=float, default=3600, help="abort after this many s")
    p.add_argument("--corpus", type=Path, default=pipe.CORPUS, help="prompt corpus (Parquet)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, store data)")
    p.add_argument("--profile", type=Path, help="py-spy raw profiles of the batch job here")
    p.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second")
    args = p.parse_args(argv)
    if args.prompts < 10 or args.rows_per_chunk < 1 or args.poll_s <= 0:
        p.error("--prompts must be >= 10, --rows-per-chunk >= 1 and --poll-s > 0")
    return args


def per_thousand(seconds: float, rows: int) -> float:
    return round(seconds / rows * 1000, 4)


def benchmark(args: argparse.Namespace, fleet: pipe.Fleet, deadline: float) -> dict[str, Any]:
    groups = pipe.worker_groups(pipe.default_concurrency())
    load_start = os.getloadavg()[0]
    table, source = distinct_input(args.prompts, args.corpus, args.seed)
    ends = pipe.start_services(fleet, groups, args.rows_per_chunk)
    input_uri = pipe.upload_input(table, ends, fleet.workdir, args.rows_per_chunk)
    settings = pipe.driver_settings(ends, args.rows_per_chunk)
    realtime = run_mode("realtime", settings, ends, fleet, input_uri, realtime_policy(), deadline)
    if args.profile:
        pipe.start_spies(fleet, args.profile, args.profile_rate)
    batch = run_mode("batch", settings, ends, fleet, input_uri, batch_policy(args.poll_s), deadline)
    if args.profile:
        fleet.stop_spies()
        for path in sorted(args.profile.glob("*.txt")):
            pipe.log("\n".join(pipe.summarise_profile(path)))
    rt_cpu = per_thousand(realtime["worker_cpu_s"], realtime["rows"])
    b_cpu = per_thousand(batch["worker_cpu_s"], batch["rows"])
    rt_http = realtime["traffic"]["realtime_requests"] + realtime["traffic"]["batch_http_requests"]
    b_http = batch["traffic"]["realtime_requests"] + batch["traffic"]["batch_http_requests"]
    return {
        "benchmark": "batch",
        "prompts": args.prompts,
        "cost_ratio": float(batch["cost_usd"] / realtime["cost_usd"]),
        "worker_cpu_s_per_1k_realtime": rt_cpu,
        "worker_cpu_s_per_1k_batch": b_cpu,
        "worker_cpu_ratio": round(b_cpu / rt_cpu, 4),
        "http_requests_realtime": rt_http,
        "http_requests_batch": b_http,
        "git_rev": pipe.git_rev(),
        "cost_usd_realtime": str(realtime["cost_usd"]),
        "cost_usd_batch": str(batch["cost_usd"]),
        "baseline_cost_usd": str(realtime["baseline_cost_usd"]),
        "batch_saved_usd": str(batch["batch_saved_usd"]),
        "provider_batches": batch["traffic"]["batches_created"],
        "batch_requests_submitted": batch["traffic"]["batch_requests_submitted"],
        "duplicate_requests": batch["traffic"]["duplicate_requests"],
        "job_s_realtime": round(realtime["seconds"], 1),
        "job_s_batch": round(batch["seconds"], 1),
        "cpu_s_realtime": realtime["cpu_s"],
        "cpu_s_batch": batch["cpu_s"],
        "rows_by_status_realtime": realtime["rows_by_status"],
        "rows_by_status_batch": batch["rows_by_status"],
        "rows_per_chunk": args.rows_per_chunk,
        "poll_s": args.poll_s,
        "profiled": bool(args.profile),
        "data": source.split(":", 1)[0],
        "loadavg_1m_start": round(load_start, 2),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    fleet = pipe.Fleet(workdir)
    signal.signal(signal.SIGTERM, pipe._on_term)
    signal.signal(signal.SIGALRM, pipe._on_alarm)
    signal.alarm(int(args.timeout))
    deadline = time.monotonic() + args.timeout
    ok = False
    try:
        print(json.dumps(benchmark(args, fleet, deadline)), flush=True)
        ok = True
    except (Exception, KeyboardInterrupt) as exc:
        pipe.log(f"FAILED: {type(exc).__name__}: {exc}")
        for proc in fleet.procs:
            if proc.name.startswith(WORKER_PREFIX):
                pipe.log(f"--- {proc.name} log tail ---\n{proc.log_tail(2000)}")
    finally:
        signal.alarm(0)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        fleet.stop()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            pipe.log(f"work dir kept: {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
