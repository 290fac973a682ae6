"""Provider batch mode on the real fleet (markers ``faults``, ``integration``): ``celery
worker`` processes on a private Redis, SeaweedFS, the simulated provider's OpenAI Batches API
over HTTP. A tier batch outlives the processes that submitted it: its record lives in the job's
``_job/batches/`` folder, so a poller killed mid-batch, or Redis lost with every queue and
lease, costs nothing — the batch is found again, never submitted twice, every row comes out.

(g) SIGKILL of the tier worker (submitter and poller) while its provider batches run;
(h) the tier worker killed and Redis restarted without persistence while provider batches
run (before any has ended), then ``reconcile``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import redis

from tests import policies, services
from tests.e2e.fleet import (
    ALL_FAST,
    Fleet,
    job_root,
    make_env,
    money,
    prompts,
    report,
    results,
    storage,
    submit,
    upload,
    wait_success,
)
from workers.guards.ledger_redis import RedisLedger
from workers.storage import Storage

pytestmark = [pytest.mark.faults, pytest.mark.integration]

BATCH_FAST = {
    **ALL_FAST,
    "fast": {
        "max_score": 0.99,
        "mode": "batch",
        "batch": {"poll_s": 0.5, "deadline_s": 900, "max_requests_per_file": 300},
    },
}
PROCESSING_S = 6.0  # a provider batch ends this long after it was created
SLOW_PROCESSING_S = 12.0  # (h): no batch ends before Redis is gone


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 3


@dataclass
class Deployment:
    """A private Redis and a fleet on it (the object store and simulator are the session's)."""

    url: str
    env: dict[str, str]
    fleet: Fleet
    redis: list[services.Proc] = field(default_factory=list)

    def restart_redis_empty(self) -> None:
        """Kill Redis (no persistence: everything in it is gone) and start it on its port."""
        self.redis[-1].kill()
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        _, proc = services.start_redis(self.fleet.workdir, port=port)
        self.redis.append(proc)


@contextlib.contextmanager
def deployment(
    service_dir: Path, name: str, s3_endpoint: str, sim_url: str
) -> Iterator[Deployment]:
    workdir = service_dir / name
    workdir.mkdir(exist_ok=True)
    url, redis_proc = services.start_redis(workdir)
    env = make_env(url, s3_endpoint, sim_url)
    dep = Deployment(url, env, Fleet(workdir, env), [redis_proc])
    try:
        dep.fleet.start_default()
        yield dep
    finally:
        dep.fleet.stop()
        for proc in dep.redis:
            proc.stop()


def start_batch_job(
    dep: Deployment, tmp_path: Path, bucket: str, job_id: str, n: int, processing_s: float,
    sim_url: str,
) -> tuple[Storage, str]:  # fmt: skip
    """Submit ``n`` distinct prompts, all on the batch-mode fast tier, without waiting; return
    once the provider holds two of its batches (none ended: ``processing_s``)."""
    upload(dep.env, bucket, prompts(n, job_id), tmp_path)
    path, _ = policies.policy_file(tmp_path, tiers=BATCH_FAST)
    services.sim_call(sim_url, "/_sim/config", {"batch_processing_s": processing_s})
    submit(dep.env, bucket, job_id, path, wait=False)
    wait_batches_created(sim_url, 2, dep.fleet)
    return storage(dep.env), job_root(bucket, job_id)


def batch_stats(sim_url: str) -> dict[str, Any]:
    stats: dict[str, Any] = services.sim_call(sim_url, "/_sim/stats").get("openai_batches", {})
    return stats


def wait_batches_created(sim_url: str, at_least: int, fleet: Fleet) -> None:
    deadline = time.monotonic() + 120
    while batch_stats(sim_url).get("batches_created", 0) < at_least:
        assert time.monotonic() < deadline, fleet.logs()
        time.sleep(0.2)


def figures(n: int, out: pl.DataFrame, sim_url: str) -> dict[str, Any]:
    stats = batch_stats(sim_url)
    return {
        "prompts": n,
        "rows_lost": n - out.height,
        "duplicate_prompt_ids": out.height - out["prompt_id"].n_unique(),
        "modes": dict(out["mode"].value_counts().iter_rows()),
        "statuses": dict(out["status"].value_counts().iter_rows()),
        "provider_batches": stats.get("batches_created", 0),
        "requests_submitted": stats.get("requests_submitted", 0),
        "duplicate_requests": stats.get("duplicate_requests", 0),
        "realtime_calls": services.sim_call(sim_url, "/_sim/stats")["requests"],
    }


def test_g_sigkill_of_the_batch_poller_mid_batch(
    tmp_path: Path, bucket: str, service_dir: Path, s3_endpoint: str, sim_http: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with deployment(service_dir, "batch-kill", s3_endpoint, sim_http) as dep:
        fleet, n = dep.fleet, 1500
        st, root = start_batch_job(dep, tmp_path, bucket, "faults-g", n, PROCESSING_S, sim_http)
        fleet.procs["fast"].kill_tree()  # it submitted the batches and polls them
        at_kill = {"batches_at_kill": batch_stats(sim_http)["batches_created"],
                   "done_at_kill": st.exists(f"{root}/_SUCCESS")}  # fmt: skip
        replacement = fleet.start("fast", ["tier.fast"])
        fleet.ready()
        wait_success(st, root, 300, fleet)
        out = results(st, root)
        ledger = RedisLedger(redis.Redis.from_url(dep.url))
        settled = ledger.usage("job:faults-g").settled_usd
        found = figures(n, out, sim_http)
        found |= at_kill | {
            "rows_cost_usd": money(out["cost_usd"].to_list()),
            "ledger_settled_usd": settled,
        }
        report(capsys, "(g) SIGKILL of the batch poller mid-batch", **found)
        assert replacement.popen.poll() is None and not at_kill["done_at_kill"]
        assert out.height == n and out["prompt_id"].n_unique() == n
        assert (out["status"] == "ok").all() and (out["mode"] == "batch").all()
        assert found["duplicate_requests"] == 0 and found["requests_submitted"] == n
        assert found["realtime_calls"] == 0
        assert found["rows_cost_usd"] == settled


def test_h_poller_killed_and_redis_restarted_mid_batch_then_reconcile(
    tmp_path: Path, bucket: str, service_dir: Path, s3_endpoint: str, sim_http: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with deployment(service_dir, "batch-restart", s3_endpoint, sim_http) as dep:
        fleet, n, slow = dep.fleet, 1500, SLOW_PROCESSING_S
        st, root = start_batch_job(dep, tmp_path, bucket, "faults-h", n, slow, sim_http)
        fleet.procs["fast"].kill_tree()  # the submitter and poller of the batches
        stats = batch_stats(sim_http)
        at_kill = {"batches_at_kill": stats["batches_created"],
                   "answered_at_kill": stats.get("succeeded", 0),
                   "done_at_kill": st.exists(f"{root}/_SUCCESS")}  # fmt: skip
        dep.restart_redis_empty()  # the queues, poll chains, job state, ledger: gone
        fleet.start("fast", ["tier.fast"])
        fleet.ready()
        rec = subprocess.run(
            [sys.executable, "-m", "producer", "reconcile", root, "--json"],
            env={**os.environ, **dep.env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert rec.returncode == 0, rec.stdout + rec.stderr
        reconciled = json.loads(rec.stdout)
        wait_success(st, root, 300, fleet)
        out = results(st, root)
        found = figures(n, out, sim_http)
        settled = RedisLedger(redis.Redis.from_url(dep.url)).usage("job:faults-h").settled_usd
        found |= at_kill | {
            "reingested_chunks": len(reconciled["reingested"]),
            "rows_cost_usd": money(out["cost_usd"].to_list()),
            "ledger_settled_usd": settled,
        }
        report(capsys, "(h) poller killed + Redis restarted mid-batch, then reconcile", **found)
        assert reconciled["registered"] is True and not at_kill["done_at_kill"]
        assert out.height == n and out["prompt_id"].n_unique() == n
        assert (out["status"] == "ok").all() and (out["mode"] == "batch").all()
        assert found["duplicate_requests"] == 0 and found["requests_submitted"] == n
        assert found["realtime_calls"] == 0
        # nothing had been answered (so nothing settled) in the Redis that was lost: the
        # new ledger holds every settlement, once
        assert at_kill["answered_at_kill"] == 0 and found["rows_cost_usd"] == settled
