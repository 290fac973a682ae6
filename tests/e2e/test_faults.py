"""Fault tests (marker ``faults``): real ``celery worker`` processes on a private Redis,
SeaweedFS, the simulated provider over HTTP with injected faults. Each scenario prints its
figures (calls per prompt, rows lost, overspend) and is bounded in time.

(a) provider fault mix, (b) one model down: breaker + fallback, (c) SIGKILL of a worker
mid-job, (d) Redis restarted without persistence mid-job + ``reconcile``, (e) a tenant budget
raced by 4 worker processes, (f) cascade escalation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import redis

from routing.cost import call_cost
from routing.tokens import count_tokens
from tests import policies, services
from tests.e2e.fleet import (
    ALL_EXPERT,
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

pytestmark = [pytest.mark.faults, pytest.mark.integration]


@pytest.fixture(scope="module")
def fault_redis(service_dir: Path) -> Iterator[tuple[str, services.Proc]]:
    workdir = service_dir / "fault-redis"
    workdir.mkdir(exist_ok=True)
    url, proc = services.start_redis(workdir)
    with services.stopping(proc):
        yield url, proc


@pytest.fixture(scope="module")
def fault_env(
    fault_redis: tuple[str, services.Proc], s3_endpoint: str, sim_url: str
) -> dict[str, str]:
    return make_env(fault_redis[0], s3_endpoint, sim_url)


@pytest.fixture(scope="module")
def fault_fleet(service_dir: Path, fault_env: dict[str, str]) -> Iterator[Fleet]:
    fleet = Fleet(service_dir, fault_env).start_default()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def sim_seed() -> int:
    """The seed of ``sim_http`` (tests/conftest.py): the session's simulated-provider
    process, reset to ``SimConfig(seed=3)`` and zeroed counters around each scenario."""
    return 3


# ---------------------------------------------------------------- (a) fault mix


def test_a_provider_fault_mix(
    tmp_path: Path, bucket: str, fault_env: dict[str, str], fault_fleet: Fleet, sim_http: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    n = 5000
    upload(fault_env, bucket, prompts(n, "a"), tmp_path)
    path, _ = policies.policy_file(
        tmp_path,
        retry={"max_attempts": 6, "base_delay_s": 0.05, "max_delay_s": 1.0, "job_budget": 0.3},
        breaker={"failures": 10},
    )
    services.sim_call(sim_http, "/_sim/config", {
        "error_rate": 0.10, "rate_limit_rate": 0.05, "retry_after_s": 0.2,
        "hang_rate": 0.02, "hang_s": 2.0,
    })  # fmt: skip
    proc = submit(fault_env, bucket, "faults-a", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr + fault_fleet.logs()
    stats = services.sim_call(sim_http, "/_sim/stats")
    out = results(storage(fault_env), job_root(bucket, "faults-a"))
    ok = out.filter(pl.col("status") == "ok").height
    figures = {
        "prompts": n,
        "rows_out": out.height,
        "rows_lost": n - out.height,
        "ok_pct": round(100 * ok / n, 3),
        "provider_calls": stats["requests"],
        "calls_per_prompt": round(stats["requests"] / n, 4),
        "injected": {k: stats[k] for k in ("errors", "rate_limited", "hangs")},
        "statuses": dict(out["status"].value_counts().iter_rows()),
    }
    report(capsys, "(a) fault mix 10% 5xx, 5% 429, 2% timeouts", **figures)
    assert out.height == n and out["prompt_id"].n_unique() == n
    assert ok >= 0.999 * n
    assert stats["requests"] <= 1.25 * n


# ---------------------------------------------------------------- (b) outage


def test_b_outage_breaker_opens_and_fallback_serves(
    tmp_path: Path, bucket: str, fault_env: dict[str, str], fault_fleet: Fleet, sim_http: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    n, failures, cooldown, concurrency = 600, 5, 1.0, 4
    upload(fault_env, bucket, prompts(n, "b"), tmp_path)
    tiers = {**ALL_EXPERT, "expert": {"fallback": ["balanced"], "concurrency": concurrency}}
    path, pol = policies.policy_file(
        tmp_path,
        tiers=tiers,
        retry={"max_attempts": 3, "base_delay_s": 0.01, "max_delay_s": 0.05},
        breaker={"failures": failures, "cooldown_s": cooldown, "half_open_probes": 1},
    )
    down = pol.tier("expert").primary.name
    services.sim_call(sim_http, "/_sim/config", {"fail_models": [down]})
    started = time.monotonic()
    proc = submit(fault_env, bucket, "faults-b", path)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr + fault_fleet.logs()
    stats = services.sim_call(sim_http, "/_sim/stats")
    out = results(storage(fault_env), job_root(bucket, "faults-b"))
    to_down = stats["requests_by_model"].get(down, 0)
    probes_bound = int(elapsed / cooldown) + 1
    figures = {
        "prompts": n,
        "rows_lost": n - out.height,
        "served_by": dict(out["tier"].value_counts().iter_rows()),
        "calls_to_failing_model": to_down,
        "bound_failures_plus_in_flight_plus_probes": failures + concurrency + probes_bound,
        "job_s": round(elapsed, 1),
    }
    report(capsys, "(b) outage of one model", **figures)
    assert out.height == n and (out["status"] == "ok").all()
    assert set(out["tier"]) == {"balanced"}
    assert set(out["fallback_from"]) == {f"sim/{down}"}
    # opened within `failures` (+ the calls already in flight), then only half-open probes
    assert to_down <= failures + concurrency + probes_bound


# ---------------------------------------------------------------- (c) SIGKILL


def test_c_sigkill_of_a_worker_mid_job(
    tmp_path: Path, bucket: str, fault_redis: tuple[str, services.Proc], fault_env: dict[str, str],
    fault_fleet: Fleet, sim_http: str, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    n = 3000
    upload(fault_env, bucket, prompts(n, "c"), tmp_path)
    path, _ = policies.policy_file(
        tmp_path, tiers={**ALL_FAST, "fast": {"max_score": 0.99, "concurrency": 8}}
    )
    services.sim_call(sim_http, "/_sim/config", {"latency_ms_mean": 40})
    st, root = storage(fault_env), job_root(bucket, "faults-c")
    submit(fault_env, bucket, "faults-c", path, wait=False)
    deadline = time.monotonic() + 120
    while len(st.list_files(f"{root}/results", ".parquet")) < 1:  # some work done, not all
        assert time.monotonic() < deadline, fault_fleet.logs()
        time.sleep(0.2)
    victim = fault_fleet.procs["fast"]
    victim.kill_tree()
    replacement = fault_fleet.start("fast", ["tier.fast"])
    fault_fleet.ready()
    wait_success(st, root, 240, fault_fleet)
    out = results(st, root)
    ledger = RedisLedger(redis.Redis.from_url(fault_redis[0]))
    settled = ledger.usage("job:faults-c").settled_usd
    rows_cost = money(out["cost_usd"].to_list())
    figures = {
        "prompts": n,
        "rows_lost": n - out.height,
        "duplicate_prompt_ids": out.height - out["prompt_id"].n_unique(),
        "rows_cost_usd": rows_cost,
        "ledger_settled_usd": settled,
        "provider_calls": services.sim_call(sim_http, "/_sim/stats")["requests"],
    }
    report(capsys, "(c) SIGKILL of the fast worker mid-job", **figures)
    assert replacement.popen.poll() is None
    assert out.height == n and out["prompt_id"].n_unique() == n
    assert (out["status"] == "ok").all()
    assert rows_cost == settled


# ---------------------------------------------------------------- (d) Redis restart


def test_d_redis_restart_mid_job_then_reconcile(
    tmp_path: Path, bucket: str, service_dir: Path, s3_endpoint: str, sim_http: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    workdir = service_dir / "restart-redis"
    workdir.mkdir(exist_ok=True)
    url, redis_proc = services.start_redis(workdir)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    env = make_env(url, s3_endpoint, sim_http)
    fleet = Fleet(workdir, env).start_default()
    procs = [redis_proc]
    try:
        n = 3000
        upload(env, bucket, prompts(n, "d"), tmp_path)
        path, _ = policies.policy_file(tmp_path)
        services.sim_call(sim_http, "/_sim/config", {"latency_ms_mean": 40})
        st, root = storage(env), job_root(bucket, "faults-d")
        submit(env, bucket, "faults-d", path, wait=False)
        deadline = time.monotonic() + 120
        while len(st.list_files(f"{root}/results", ".parquet")) < 1:
            assert time.monotonic() < deadline, fleet.logs()
            time.sleep(0.2)
        redis_proc.kill()  # no persistence: the queue, the job state, the ledger are gone
        _, redis_proc = services.start_redis(workdir, port=port)
        procs.append(redis_proc)
        fleet.ready()  # every worker answers a ping over the new Redis (bounded wait)
        parts_before = len(st.list_files(f"{root}/results", ".parquet"))
        rec = subprocess.run(
            [sys.executable, "-m", "producer", "reconcile", root, "--json"],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert rec.returncode == 0, rec.stdout + rec.stderr
        reconciled = json.loads(rec.stdout)
        wait_success(st, root, 240, fleet)
        out = results(st, root)
        figures = {
            "prompts": n,
            "rows_lost": n - out.height,
            "duplicate_prompt_ids": out.height - out["prompt_id"].n_unique(),
            "parts_present_at_reconcile": parts_before,
            "reconcile": {k: reconciled[k] for k in ("state", "registered", "chunks_complete")},
            "resent": reconciled["parts_resent"],
            "reingested_chunks": len(reconciled["reingested"]),
        }
        report(capsys, "(d) Redis restarted without persistence, then reconcile", **figures)
        assert reconciled["registered"] is True
        assert out.height == n and out["prompt_id"].n_unique() == n
        assert (out["status"] == "ok").all()
    finally:
        fleet.stop()
        for proc in procs:
            proc.stop()


# ---------------------------------------------------------------- (e) budget race


def test_e_budget_race_never_overspends(
    tmp_path: Path, bucket: str, service_dir: Path, fault_redis: tuple[str, services.Proc],
    fault_env: dict[str, str], fault_fleet: Fleet, sim_http: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    n, tenant = 1500, f"race-{int(time.time())}"
    table = prompts(n, "e")
    upload(fault_env, bucket, table, tmp_path)
    max_out = 64
    _, base = policies.policy_file(tmp_path)
    model = base.tier("expert").primary
    tokens = count_tokens(table.column("prompt").to_pylist())
    estimate = sum((call_cost(model, int(t), max_out) for t in tokens), Decimal(0))
    cap = (estimate / 2).quantize(Decimal("0.000001"))
    path, _ = policies.policy_file(
        tmp_path,
        tiers={**ALL_EXPERT, "expert": {"max_output_tokens": max_out, "concurrency": 8}},
        budgets={"tenant_day": {tenant: {"usd": str(cap)}}, "on_exhausted": "downgrade"},
    )
    racers = Fleet(service_dir, fault_env)
    racers.start("expert-race", ["tier.expert"], concurrency=4)  # 4 more processes on expert
    racers.ready()
    try:
        proc = submit(fault_env, bucket, "faults-e", path, "--tenant", tenant)
    finally:
        racers.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr + fault_fleet.logs()
    out = results(storage(fault_env), job_root(bucket, "faults-e"))
    ledger = RedisLedger(redis.Redis.from_url(fault_redis[0]))
    day = time.strftime("%Y-%m-%d", time.gmtime())
    settled = ledger.usage(f"tenant:{tenant}:day:{day}").settled_usd
    statuses = dict(out["status"].value_counts().iter_rows())
    figures = {
        "prompts": n,
        "cap_usd": cap,
        "settled_usd": settled,
        "overspend_usd": max(Decimal(0), settled - cap),
        "statuses": statuses,
        "tiers_of_ok_rows": dict(
            out.filter(pl.col("status") == "ok")["tier"].value_counts().iter_rows()
        ),
    }
    report(capsys, "(e) tenant budget raced by 5 expert processes", **figures)
    assert out.height == n
    assert settled <= cap
    assert money(out["cost_usd"].to_list()) == settled
    assert set(statuses) <= {"ok", "over_budget"} and statuses.get("over_budget", 0) > 0
    downgraded = out.filter((pl.col("status") == "ok") & (pl.col("tier") != "expert"))
    assert downgraded["route_reason"].str.contains("budget: expert → ").all()


# ---------------------------------------------------------------- (f) cascade


def test_f_cascade_escalates_low_confidence(
    tmp_path: Path, bucket: str, fault_env: dict[str, str], fault_fleet: Fleet, sim_http: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    n, threshold = 1000, 0.57
    upload(fault_env, bucket, prompts(n, "f"), tmp_path)
    path, pol = policies.policy_file(
        tmp_path,
        tiers={**ALL_FAST, "fast": {"max_score": 0.99, "cascade": {"min_confidence": threshold}}},
    )
    proc = submit(fault_env, bucket, "faults-f", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr + fault_fleet.logs()
    out = results(storage(fault_env), job_root(bucket, "faults-f"))
    started_fast = out.filter(pl.col("confidence").is_not_null())
    low = started_fast.filter(pl.col("confidence") < threshold)
    escalated = out.filter(pl.col("escalated_from").is_not_null())
    figures = {
        "prompts": n,
        "rows_lost": n - out.height,
        "cascade_rows": started_fast.height,
        "escalated_pct": round(100 * escalated.height / max(started_fast.height, 1), 1),
        "provider_calls": services.sim_call(sim_http, "/_sim/stats")["requests"],
    }
    report(capsys, f"(f) cascade fast → balanced below confidence {threshold}", **figures)
    assert out.height == n and (out["status"] == "ok").all()
    assert 0.08 <= escalated.height / started_fast.height <= 0.4
    assert sorted(low["prompt_id"]) == sorted(escalated["prompt_id"])
    assert (escalated["escalated_from"] == "fast").all() and (escalated["tier"] == "balanced").all()
    balanced = pol.tier("balanced").primary
    for row in escalated.iter_rows(named=True):
        assert row["cost_usd"] > call_cost(balanced, row["input_tokens"], row["output_tokens"])
