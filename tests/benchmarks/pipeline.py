"""Benchmark: the distributed pipeline against a no-op Celery reference on the same fleet.

``python -m tests.benchmarks.pipeline [--prompts 200000] [--rows-per-chunk 2000]``

It starts its own services (``tests/services.py``): a private ``redis-server`` (broker and
job state), SeaweedFS (S3), the simulated provider at zero latency, and real ``celery
worker`` processes, one per queue group: ``ingest,finalize``, ``tier.fast``,
``tier.balanced``, ``tier.expert``. It writes N prompts as Parquet to the store, then runs,
one after the other on the same broker and the same worker processes:

(a) the real pipeline: ``workers.jobs.submit.submit_job`` + ``workers.jobs.submit.wait``, timed from
    submit (planning included) until the job is ``succeeded`` (``_SUCCESS`` written);
(b) the reference: the same chunk references through no-op tasks defined in this module
    (the workers import it with ``-I``): one ``bench_noop_ingest`` per chunk on ``ingest``,
    which sends one ``bench_noop_dispatch`` to each tier queue the real ingest used for that
    chunk (read back from Redis, so message counts match exactly); completion is counted
    in Redis and the last message sends ``bench_noop_finalize`` to ``finalize``.

One JSON line goes to stdout; logs go to stderr. Every process started is stopped by PID,
also on failure, Ctrl-C, SIGTERM or when ``--timeout`` runs out. ``--profile DIR`` runs
``py-spy record`` on every worker and the provider during (a) and prints where time went
(the profiled run's throughput is lower; use an unprofiled run for the numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from celery import current_app, shared_task

from tests import services

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "data" / "prompts" / "corpus.parquet"
BUCKET = "bench"
FILE_ROWS = 50_000


def tier_names() -> tuple[str, ...]:
    """The default policy's tiers (one ``tier.<name>`` queue and worker each)."""
    from routing.policy import load_policy

    return tuple(load_policy().tier_names)


def default_concurrency() -> dict[str, int]:
    """One process per queue group: on 2 cores the run is CPU-bound with four worker
    processes plus the services, and each dispatch already keeps the tier's
    ``concurrency`` (64/32/16) provider calls in flight with asyncio."""
    return {"ingest": 1} | dict.fromkeys(tier_names(), 1)


NOOP_INGEST = "bench_noop_ingest"
NOOP_DISPATCH = "bench_noop_dispatch"
NOOP_FINALIZE = "bench_noop_finalize"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ no-op reference tasks
# Registered on whatever Celery app the importing process uses (the workers import this
# module with ``-I tests.benchmarks.pipeline``); they inherit the app's settings (JSON,
# late acks, prefetch 1, task events), so only the work inside differs from the pipeline.

_redis_client: Any = None


def _noop_redis() -> Any:
    global _redis_client
    if _redis_client is None:
        import redis

        from workers.worker import settings

        _redis_client = redis.Redis.from_url(settings.state_redis())
    return _redis_client


def _count_one(run: dict[str, Any]) -> None:
    """Count one finished message; the last one (ingests + dispatches) sends finalize."""
    if _noop_redis().incr(run["counter"]) == run["messages"]:
        current_app.send_task(NOOP_FINALIZE, args=[run], queue="finalize")


@shared_task(name=NOOP_INGEST)
def bench_noop_ingest(
    run: dict[str, Any], ctx: dict[str, Any], chunk: dict[str, Any], tiers: list[str]
) -> None:
    for tier in tiers:
        batch = {"chunk": chunk["chunk"], "tier": tier}
        current_app.send_task(NOOP_DISPATCH, args=[run, ctx, batch], queue=f"tier.{tier}")
    _count_one(run)


@shared_task(name=NOOP_DISPATCH)
def bench_noop_dispatch(run: dict[str, Any], ctx: dict[str, Any], batch: dict[str, Any]) -> None:
    _count_one(run)


@shared_task(name=NOOP_FINALIZE)
def bench_noop_finalize(run: dict[str, Any]) -> None:
    _noop_redis().rpush(run["done"], repr(time.time()))


# ------------------------------------------------------------------ processes


class Deadline(Exception):
    """The whole run took longer than ``--timeout``."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Deadline("benchmark exceeded its time limit")


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time since boot


def _descendants(root: int) -> list[tuple[int, str]]:
    """(pid, start time) of every live descendant of ``root`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            start = _proc_start_time(child)
            if start is not None:
                found.append((child, start))
                todo.append(child)
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (0 if gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, everyone's work)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(procs: list[services.Proc]) -> dict[str, float]:
    """CPU seconds used so far by each started process and its live descendants
    (the prefork pool children live as long as the worker), and by this driver."""
    out = {}
    for proc in procs:
        pids = [proc.popen.pid] + [pid for pid, _ in _descendants(proc.popen.pid)]
        out[proc.name] = sum(_cpu_seconds(pid) for pid in pids)
    times = os.times()
    out["driver"] = times.user + times.system
    return out


@dataclass
class Fleet:
    """Every process this run started, stopped in reverse order by PID."""

    workdir: Path
    procs: list[services.Proc] = field(default_factory=list)
    spies: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add(self, proc: services.Proc) -> services.Proc:
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        self.stop_spies()
        for proc in reversed(self.procs):
            orphans = _descendants(proc.popen.pid)
            with contextlib.suppress(Exception):
                proc.stop()
            for pid, start in orphans:  # e.g. prefork children of a SIGKILLed worker
                if _proc_start_time(pid) == start:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                    log(f"killed leftover pid {pid} of {proc.name}")
        self.sweep()

    def sweep(self) -> None:
        """Kill any child still alive: a service whose start helper raised before
        returning its handle is a child of this process but not in ``procs``."""
        leftovers = _descendants(os.getpid())
        for pid, start in leftovers:
            if _proc_start_time(pid) == start:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
                log(f"terminated leftover child pid {pid}")
        if leftovers:
            time.sleep(3)
        for pid, start in leftovers:
            if _proc_start_time(pid) == start:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def stop_spies(self) -> None:
        for spy in self.spies:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in self.spies:
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
        self.spies.clear()


@dataclass(frozen=True)
class Endpoints:
    redis: str
    s3: str
    sim: str

    def env(self, rows_per_chunk: int) -> dict[str, str]:
        """The environment of every worker (the deployment's configuration)."""
        return {
            "BATCH_ROUTER_BROKER_URL": self.redis,
            "BATCH_ROUTER_REDIS_URL": self.redis,
            "BATCH_ROUTER_S3__ENDPOINT_URL": self.s3,
            "BATCH_ROUTER_S3__ACCESS_KEY_ID": services.S3_KEY,
            "BATCH_ROUTER_S3__SECRET_ACCESS_KEY": services.S3_SECRET,
            "BATCH_ROUTER_PROVIDERS__SIM__BASE_URL": self.sim,
            "BATCH_ROUTER_ROWS_PER_CHUNK": str(rows_per_chunk),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }


def worker_groups(concurrency: dict[str, int]) -> dict[str, tuple[list[str], int]]:
    """Worker name → (queues, concurrency)."""
    groups = {"ingest": (["ingest", "finalize"], concurrency["ingest"])}
    for tier in tier_names():
        groups[tier] = ([f"tier.{tier}"], concurrency[tier])
    return groups


def start_worker(
    fleet: Fleet, name: str, queues: list[str], concurrency: int, env: dict[str, str]
) -> services.Proc:
    """``services.start_worker``'s command plus ``-I`` for the no-op tasks."""
    cmd = [
        sys.executable, "-m", "celery", "-A", "workers.worker", "worker", "-Q", ",".join(queues),
        "-n", f"{name}@%h", "--concurrency", str(concurrency), "--pool", "prefork",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        "-I", "tests.benchmarks.pipeline",
    ]  # fmt: skip
    log_path = fleet.workdir / f"worker-{name}.log"
    env = {**os.environ, **env}
    return fleet.add(services.start(cmd, log_path, f"worker-{name}", env=env, cwd=ROOT))


@contextlib.contextmanager
def private_tmpdir(path: Path) -> Iterator[None]:
    """Point TMPDIR (and ``tempfile``) at ``path`` while a service starts.

    ``weed mini`` puts its gRPC unix sockets in the temp folder and
    ``services.start_seaweedfs`` deletes every ``seaweedfs-*.sock`` there first, so a
    test run started meanwhile on the same machine would delete this run's sockets (and
    stall it with HTTP 500s); a private folder keeps the two apart.
    """
    path.mkdir(parents=True, exist_ok=True)
    old_env, old_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(path), str(path)
    try:
        yield
    finally:
        tempfile.tempdir = old_tempdir
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env


def start_services(fleet: Fleet, groups: dict[str, tuple[list[str], int]], rows: int) -> Endpoints:
    t0 = time.perf_counter()
    redis_url, proc = services.start_redis(fleet.workdir)
    fleet.add(proc)
    with private_tmpdir(fleet.workdir / "tmp"):
        s3, proc = services.start_seaweedfs(fleet.workdir)
    fleet.add(proc)
    sim, proc = services.start_sim_provider(fleet.workdir)  # zero latency, no errors
    fleet.add(proc)
    ends = Endpoints(redis_url, s3, sim)
    for name, (queues, concurrency) in groups.items():
        start_worker(fleet, name, queues, concurrency, ends.env(rows))
    services.wait_workers_ready(redis_url, list(groups), timeout=120)
    log(f"services ready in {time.perf_counter() - t0:.1f} s (workdir {fleet.workdir})")
    return ends


def start_spies(fleet: Fleet, out: Path, rate: int) -> None:
    """``py-spy record`` on every worker (with its pool children) and on the provider."""
    exe = shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("--profile needs py-spy on PATH")
    out.mkdir(parents=True, exist_ok=True)
    for proc in fleet.procs:
        if not proc.name.startswith(("worker-", "sim-")):
            continue
        output = out / f"{proc.name}.txt"
        cmd = [exe, "record", "--pid", str(proc.popen.pid), "--subprocesses", "--nonblocking",
               "--rate", str(rate), "--format", "raw", "--output", str(output)]  # fmt: skip
        handle = (fleet.workdir / f"py-spy-{proc.name}.log").open("wb")
        fleet.spies.append(
            subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        )
    time.sleep(1.0)  # let py-spy attach before the clock starts


# ------------------------------------------------------------------ input data


def make_input(n: int, corpus: Path, seed: int) -> tuple[Any, str]:
    """``n`` prompt rows with unique ids, sampled (with repeats) from the shared corpus,
    else generated by ``producer.sample.sample_prompts``."""
    import numpy as np
    import polars as pl

    if not corpus.is_file():
        from producer.sample import sample_prompts

        log(f"corpus not found at {corpus}: falling back to producer.sample.sample_prompts")
        return sample_prompts(n, seed), "producer.sample.sample_prompts"
    df = pl.read_parquet(corpus, columns=["prompt", "source", "kind"])
    rows = np.random.default_rng(seed).integers(0, df.height, n)
    df = df[rows].with_columns(
        pl.format("bench-{}", pl.int_range(n).cast(pl.String).str.zfill(8)).alias("prompt_id")
    )
    return df.select("prompt_id", "prompt", "source", "kind").to_arrow(), f"corpus:{corpus}"


def upload_input(table: Any, ends: Endpoints, workdir: Path, rows_per_chunk: int) -> str:
    """Parquet files of ~50,000 rows, one row group per chunk, under ``s3://bench/in/``."""
    import pyarrow.parquet as pq

    client = services.s3_client(ends.s3)
    client.create_bucket(Bucket=BUCKET)
    per_file = -(-FILE_ROWS // rows_per_chunk) * rows_per_chunk
    local = workdir / "upload.parquet"
    for i, start in enumerate(range(0, table.num_rows, per_file)):
        pq.write_table(table.slice(start, per_file), local, row_group_size=rows_per_chunk)
        client.upload_file(str(local), BUCKET, f"in/part-{i:04d}.parquet")
    local.unlink()
    return f"s3://{BUCKET}/in/"


# ------------------------------------------------------------------ the two runs


def sim_stats(sim_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(sim_url.removesuffix("/v1") + "/_sim/stats", timeout=10) as r:
        return dict(json.load(r))


def run_pipeline(
    settings: Any, input_uri: str, deadline: float, policy: Any = None
) -> dict[str, Any]:
    """Submit the job (the default policy unless ``policy``) and wait for it; wall time from
    submit to ``succeeded``."""
    from routing.policy import load_policy
    from workers.jobs.submit import submit_job, wait
    from workers.storage import Storage

    policy, job_id = policy or load_policy(), f"bench-{uuid.uuid4().hex[:8]}"
    last = [0.0]

    def progress(status: Any) -> None:
        if time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            log(f"pipeline: {status.rows_done}/{status.rows_total} rows, "
                f"{status.chunks_done}/{status.total_chunks} chunks")  # fmt: skip

    t0 = time.perf_counter()
    plan = submit_job(settings, policy, input_uri, f"s3://{BUCKET}/out/", job_id, None)
    planned = time.perf_counter() - t0
    status = wait(settings, job_id, progress, poll_s=0.25, timeout_s=deadline - time.monotonic())
    elapsed = time.perf_counter() - t0
    if status.state != "succeeded":
        raise RuntimeError(f"job {job_id} ended {status.state}: {status.meta.get('error')}")
    root = plan.context.job_root
    if not Storage(settings.s3).exists(f"{root}/_SUCCESS"):
        raise RuntimeError(f"job {job_id} succeeded but {root}/_SUCCESS is missing")
    log(f"pipeline: {plan.rows_total} rows in {elapsed:.1f} s (planning {planned:.2f} s)")
    return {"plan": plan, "seconds": elapsed, "plan_seconds": planned, "status": status}


def tiers_by_chunk(settings: Any, plan: Any) -> dict[int, list[str]]:
    """The tier queues the real ingest sent each chunk to (its registered parts)."""
    import redis

    from workers import keys

    r = redis.Redis.from_url(settings.state_redis(), decode_responses=True)
    job = plan.context.job_id
    pipe = r.pipeline()
    for chunk in plan.chunks:
        pipe.smembers(keys.chunk_expected(job, chunk.chunk))
    parts = pipe.execute()
    tiers = tier_names()
    return {c.chunk: [t for t in tiers if t in p] for c, p in zip(plan.chunks, parts, strict=True)}


def run_noop(settings: Any, plan: Any, tiers: dict[int, list[str]], deadline: float) -> float:
    """The same chunk references through no-op tasks; wall time to the no-op finalize."""
    import redis

    from workers.app import make_app

    r = redis.Redis.from_url(settings.state_redis())
    tag = uuid.uuid4().hex[:8]
    messages = len(plan.chunks) + sum(len(t) for t in tiers.values())
    run = {"counter": f"bench:{tag}:count", "done": f"bench:{tag}:done", "messages": messages}
    app = make_app(settings)
    ctx = plan.context.model_dump()
    t0 = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for chunk in plan.chunks:
            args = [run, ctx, chunk.model_dump(), tiers[chunk.chunk]]
            app.send_task(NOOP_INGEST, args=args, queue="ingest", producer=producer)
    while not r.blpop([run["done"]], timeout=5):
        if time.monotonic() > deadline:
            raise Deadline("no-op reference did not finish in time")
        log(f"noop: {int(r.get(run['counter']) or 0)}/{messages} messages")
    elapsed = time.perf_counter() - t0
    app.close()
    log(f"noop: {plan.rows_total} rows ({messages + 1} messages) in {elapsed:.2f} s")
    return elapsed


# ------------------------------------------------------------------ profile summary


PROJECT_PACKAGES = ("routing/", "workers/", "producer/")


def summarise_profile(path: Path, top: int = 12) -> list[str]:
    """From a py-spy ``raw`` (collapsed stacks) file: the functions with the most self
    time, the project functions with the most inclusive time, and self time by package."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";") if "(" in f and not f.startswith("process ")]
        if not frames:
            continue
        own[frames[-1]] += n
        packages[_package(frames[-1])] += n
        for frame in set(frames):
            if any(f"({p}" in frame for p in PROJECT_PACKAGES):
                incl[frame] += n
    lines = [f"== {path.name}: {total} samples (non-idle)"]
    for title, counter in (
        ("self time", own),
        ("inclusive time, project code", incl),
        ("self time by package", packages),
    ):
        lines.append(f"  top {title}:")
        lines += [f"    {100 * n / max(total, 1):5.1f}%  {f}" for f, n in counter.most_common(top)]
    return lines


def _frame(frame: str) -> str:
    """``func (path/file.py:123)`` → ``func (path/file.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})"


def _package(frame: str) -> str:
    """``func (aiohttp/client.py)`` → ``aiohttp``; ``func (ssl.py)`` → ``ssl``."""
    where = frame.partition(" (")[2].rstrip(")")
    return where.split("/", 1)[0] if "/" in where else where.removesuffix(".py")


# ------------------------------------------------------------------ main


def git_rev() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        cmd = ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    return "unknown"


def parse_concurrency(text: str) -> dict[str, int]:
    """``ingest=1,fast=2`` over the defaults."""
    out = default_concurrency()
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in out or not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"bad --concurrency item {item!r}")
        out[name] = int(value)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.pipeline",
        description="Pipeline throughput vs a no-op Celery reference on the same fleet.",
    )
    p.add_argument("--prompts", type=int, default=200_000, help="rows in the job")
    p.add_argument("--rows-per-chunk", type=int, default=2000, help="rows per chunk reference")
    p.add_argument(
        "--concurrency",
        type=parse_concurrency,
        default=default_concurrency(),
        help="worker processes per group, e.g. ingest=1,fast=1,balanced=1,expert=1",
    )
    p.add_argument("--timeout", type=float, default=1800, help="abort after this many s")
    p.add_argument("--corpus", type=Path, default=CORPUS, help="prompt corpus (Parquet)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--profile", type=Path, help="py-spy raw profiles of (a) into this dir")
    p.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, store data)")
    args = p.parse_args(argv)
    if args.prompts < 10 or args.rows_per_chunk < 1:
        p.error("--prompts must be >= 10 and --rows-per-chunk >= 1")
    return args


def driver_settings(ends: Endpoints, rows_per_chunk: int) -> Any:
    from workers.settings import ProviderOverride, S3Settings, Settings

    s3 = S3Settings(
        endpoint_url=ends.s3,
        access_key_id=services.S3_KEY,  # type: ignore[arg-type]
        secret_access_key=services.S3_SECRET,  # type: ignore[arg-type]
    )
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        broker_url=ends.redis,  # type: ignore[arg-type]
        redis_url=ends.redis,  # type: ignore[arg-type]
        s3=s3,
        providers={"sim": ProviderOverride(base_url=ends.sim)},
        rows_per_chunk=rows_per_chunk,
    )


def benchmark(args: argparse.Namespace, fleet: Fleet, deadline: float) -> dict[str, Any]:
    groups = worker_groups(args.concurrency)
    load_start = os.getloadavg()[0]  # other work on the machine skews the numbers
    log(f"{os.cpu_count()} CPUs; workers (prefork): "
        + ", ".join(f"{'+'.join(q)}={c}" for q, c in groups.values()))  # fmt: skip
    t0 = time.perf_counter()
    table, source = make_input(args.prompts, args.corpus, args.seed)
    log(f"generated {table.num_rows} prompts from {source} in {time.perf_counter() - t0:.1f} s")
    ends = start_services(fleet, groups, args.rows_per_chunk)
    input_uri = upload_input(table, ends, fleet.workdir, args.rows_per_chunk)
    settings = driver_settings(ends, args.rows_per_chunk)
    if args.profile:
        start_spies(fleet, args.profile, args.profile_rate)
    before, cpu_before = sim_stats(ends.sim), cpu_by_process(fleet.procs)
    busy_before = machine_busy_seconds()
    real = run_pipeline(settings, input_uri, deadline)
    cpu, busy = cpu_by_process(fleet.procs), machine_busy_seconds() - busy_before
    cpu = {name: round(cpu[name] - cpu_before.get(name, 0.0), 1) for name in cpu}
    calls = sim_stats(ends.sim)["completions"] - before["completions"]
    log(f"pipeline CPU s by process: {cpu} (total {sum(cpu.values()):.0f} s)")
    if args.profile:
        fleet.stop_spies()
        for path in sorted(args.profile.glob("*.txt")):
            log("\n".join(summarise_profile(path)))
    plan = real["plan"]
    tiers = tiers_by_chunk(settings, plan)
    noop_s = run_noop(settings, plan, tiers, deadline)
    rows = plan.rows_total
    pipeline_rate, noop_rate = rows / real["seconds"], rows / noop_s
    return {
        "benchmark": "pipeline",
        "prompts": rows,
        "chunks": len(plan.chunks),
        "pipeline_prompts_per_s": round(pipeline_rate, 1),
        "noop_prompts_per_s": round(noop_rate, 1),
        "ratio": round(pipeline_rate / noop_rate, 5),
        "workers": {"+".join(q): c for q, c in groups.values()},
        "rows_per_chunk": args.rows_per_chunk,
        "provider_calls": calls,
        "git_rev": git_rev(),
        "pipeline_s": round(real["seconds"], 2),
        "plan_s": round(real["plan_seconds"], 2),
        "noop_s": round(noop_s, 3),
        "messages": {
            "ingest": len(plan.chunks),
            "dispatch": sum(len(t) for t in tiers.values()),
            "finalize": 1,
        },
        "rows_by_status": real["status"].rows_by_status,
        "pipeline_cpu_s": cpu,
        "pipeline_cores_used": round(sum(cpu.values()) / real["seconds"], 2),
        "machine_cores_busy": round(busy / real["seconds"], 2),
        "loadavg_1m_start": round(load_start, 2),
        "data": source.split(":", 1)[0],
        "pool": "prefork",
        "cpus": os.cpu_count(),
        "sim_latency_ms": 0,
        "profiled": bool(args.profile),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    fleet = Fleet(workdir)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(args.timeout))
    deadline = time.monotonic() + args.timeout
    ok = False
    try:
        result = benchmark(args, fleet, deadline)
        print(json.dumps(result), flush=True)
        ok = True
    except (Exception, KeyboardInterrupt) as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
        for proc in fleet.procs:
            if proc.name.startswith("worker-"):
                log(f"--- {proc.name} log tail ---\n{proc.log_tail(2000)}")
    finally:
        signal.alarm(0)
        for sig in (signal.SIGTERM, signal.SIGINT):  # finish cleaning up first
            signal.signal(sig, signal.SIG_IGN)
        fleet.stop()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work dir kept: {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
