"""Job ids and tenant names are checked wherever they enter (issue 13, findings 2, 5, 6, 10).

- A job id is used in Redis keys, a SCAN pattern whose matches are deleted, and an object
  path: ``submit --job-id '*'`` must not wipe a running job, ``--job-id ../../x`` must not
  write outside ``--output``.
- A tenant name becomes a percent-encoded path segment of the cost rollup: a long CJK name
  must be refused at plan time, before any provider call, not at finalize.
- No tenant may equal a sentinel (the shared-cache namespace ``*``, the budgets' wildcard,
  Hive's null partition, the report's ``(none)``).

Everything is driven as a user drives it: the CLI as a subprocess, real Redis, real
SeaweedFS, real Celery workers for the drop folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from producer.sample import sample_prompts
from routing.errors import ConfigError, InputError
from routing.plan import JobContext
from routing.policy import load_policy
from tests import services
from tests.cli import CliRunner, assert_clean_error, clean_env, run_cli
from workers import keys, layout
from workers.jobs.plan import build_plan
from workers.jobstate import RedisJobTracker
from workers.settings import S3Settings
from workers.storage import Storage

pytestmark = pytest.mark.security

CJK_TENANT = "株式会社" * 8  # 32 characters, 288 bytes percent-encoded
HOSTILE_IDS = ["*", "?", "[a-z]*", "a*", "../../x", "../../../escaped", "a/b", "..", ".", "",
               "-leading-dash", "a..b", "x" * 102, "tab\there", "new\nline", "ünïcode",
               "a b"]  # fmt: skip


def _prompts(path: Path, rows: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(sample_prompts(rows, seed=3), path)
    return path


def _one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert_clean_error(proc, *needles, max_lines=1)


# ---------------------------------------------------------------- job ids (findings 2, 5)


def test_job_pattern_escapes_every_glob_metacharacter() -> None:
    assert keys.job_pattern("job-1") == "br:job:{job-1}*"
    assert keys.job_pattern("*") == r"br:job:{\*}*"
    assert keys.job_pattern(r"a?[b]\c") == r"br:job:{a\?\[b\]\\c}*"


def test_job_pattern_matches_only_its_own_job_in_real_redis(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    r.set(keys.job(victim), "1")
    r.set(keys.job_parts(victim), "1")
    for hostile in ("*", "?" * len(victim), "[a-z]*", victim[:3] + "*"):
        found = set(r.scan_iter(match=keys.job_pattern(hostile), count=1000))
        assert not {keys.job(victim), keys.job_parts(victim)} & found, hostile
    assert set(r.scan_iter(match=keys.job_pattern(victim))) == {
        keys.job(victim),
        keys.job_parts(victim),
    }


def _running_victim(redis_url: str) -> tuple[str, set[str]]:
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    jobs = RedisJobTracker.from_url(redis_url, 600)
    jobs.register(victim, {"total_chunks": 2, "rows_total": 20, "job_root": "/tmp/x"})
    jobs.expect(victim, 0, ["fast"])
    jobs.complete(victim, 0, "fast", {"rows": {"ok": 10}}, total_chunks=2)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    return victim, set(r.scan_iter(match=f"br:job:{{{victim}}}*"))


def test_tracker_register_with_a_glob_id_leaves_other_jobs_alone(redis_url: str) -> None:
    """Defence in depth: even past the validation, the SCAN pattern is escaped."""
    victim, before = _running_victim(redis_url)
    RedisJobTracker.from_url(redis_url, 600).register("*", {"total_chunks": 1})
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    assert set(r.scan_iter(match=f"br:job:{{{victim}}}*")) == before
    assert r.hget(keys.job(victim), "state") == "running"
    r.delete(keys.job("*"))
    r.zrem(keys.jobs_index(), "*")


def test_submit_with_job_id_star_is_refused_and_a_running_job_survives(
    cli: CliRunner, tmp_path: Path, redis_url: str
) -> None:
    victim, before = _running_victim(redis_url)
    _prompts(tmp_path / "in.parquet")
    proc = cli(
        "submit", "in.parquet", "--output", "out", "--job-id", "*",
        BATCH_ROUTER_BROKER_URL=redis_url,
    )  # fmt: skip
    _one_line(proc, "--job-id", "'*'", "letters, digits")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    assert set(r.scan_iter(match=f"br:job:{{{victim}}}*")) == before
    assert r.hget(keys.job(victim), "state") == "running"
    assert r.exists(keys.job("*")) == 0
    assert not (tmp_path / "out").exists(), "nothing planned"


@pytest.mark.parametrize("hostile", ["*", "../../x", "a b", "x" * 102, "a..b"])
def test_status_and_reconcile_refuse_a_hostile_job_id(
    cli: CliRunner, redis_url: str, hostile: str
) -> None:
    proc = cli("status", hostile, BATCH_ROUTER_BROKER_URL=redis_url)
    _one_line(proc, "job id", "not allowed")
    proc = cli("reconcile", f"/tmp/out/job_id={hostile}", BATCH_ROUTER_BROKER_URL=redis_url)
    _one_line(proc, "job id", "not allowed")


def test_run_with_a_traversing_job_id_writes_nothing_outside_output(
    cli: CliRunner, tmp_path: Path
) -> None:
    _prompts(tmp_path / "work" / "in.parquet")
    cwd = tmp_path / "work"
    for hostile in ("../../x", "../../../escaped"):
        proc = run_cli("run", "in.parquet", "--output", "out", "--job-id", hostile, cwd=cwd)
        _one_line(proc, "--job-id", "not allowed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert sorted(p.name for p in cwd.iterdir()) == ["in.parquet"]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_job_root_and_job_context_refuse_anything_but_one_safe_segment(hostile: str) -> None:
    with pytest.raises(InputError, match="job id"):
        layout.job_root("s3://out/prefix", hostile)
    with pytest.raises(InputError, match="job id"):
        JobContext(**_context(job_id=hostile))


def test_a_celery_message_with_a_hostile_job_id_is_refused_on_decode() -> None:
    message = JobContext(**_context()).model_dump()
    assert JobContext(**message).job_id == "20261128T021500Z-3fa2c1d4"
    for field, value in (("job_id", "*"), ("tenant", "*"), ("tenant", CJK_TENANT)):
        with pytest.raises(InputError):
            JobContext(**{**message, field: value})
        with pytest.raises(InputError):
            JobContext.model_validate_json(json.dumps({**message, field: value}))


def _context(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "job_id": "20261128T021500Z-3fa2c1d4",
        "job_root": "s3://out/job_id=20261128T021500Z-3fa2c1d4",
        "tenant": "acme",
        "policy_uri": "s3://out/job_id=20261128T021500Z-3fa2c1d4/_job/policy.yaml",
        "policy_version": "p-000000000000",
        "total_chunks": 1,
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    "good", ["a", "J1", "20261128T021500Z-3fa2c1d4", "nightly-acme-20261128T021500Z-0a1b2c",
             "x" * 101, "a.b_c-d", "0"]
)  # fmt: skip
def test_ordinary_job_ids_are_accepted(good: str) -> None:
    assert layout.job_root("s3://out", good) == f"s3://out/job_id={good}"
    assert JobContext(**_context(job_id=good)).job_id == good


# ---------------------------------------------------------------- tenants (findings 6, 10)


def test_a_long_cjk_tenant_is_refused_at_plan_time_before_any_call(
    cli: CliRunner, tmp_path: Path
) -> None:
    proc = cli("run", "--sample", "20", "--output", "out", "--tenant", CJK_TENANT)
    _one_line(proc, "--tenant", "bytes", "200")
    assert not (tmp_path / "out").exists(), "nothing planned, nothing sent"


def test_build_plan_refuses_the_tenant_before_writing_anything(tmp_path: Path) -> None:
    """The check is in planning itself, so every way in (CLI, drop folder, schedule) has it."""
    storage = Storage(S3Settings())
    uri = str(_prompts(tmp_path / "in.parquet"))
    with pytest.raises(InputError, match="tenant"):
        build_plan(storage, load_policy(), uri, str(tmp_path / "out"), 100, "j1", CJK_TENANT)
    assert not (tmp_path / "out").exists()


def test_an_s3_output_whose_keys_would_pass_1024_bytes_is_refused(tmp_path: Path) -> None:
    storage = Storage(S3Settings())
    uri = str(_prompts(tmp_path / "in.parquet"))
    deep = "s3://bucket/" + "/".join(["d" * 200] * 4 + ["d" * 180])  # 984 bytes of prefix
    with pytest.raises(InputError, match="1024"):
        build_plan(storage, load_policy(), uri, deep, 100, "j1", "acme")
    # the longest key an accepted tenant makes still fits under a reasonable prefix
    tenant = "株" * 22  # 198 bytes percent-encoded
    plan = build_plan(storage, load_policy(), uri, str(tmp_path / "o"), 100, "j1", tenant)
    assert plan.context.tenant == tenant


@pytest.mark.parametrize(
    "sentinel",
    ["*", "__HIVE_DEFAULT_PARTITION__", "(none)", "(not routed)", "_no-tenant", "", ".", ".."],
)
def test_sentinel_tenants_are_refused_by_the_cli(
    cli: CliRunner, tmp_path: Path, sentinel: str
) -> None:
    proc = cli("run", "--sample", "10", "--output", "out", "--tenant", sentinel)
    _one_line(proc, "--tenant", "tenant")
    assert not (tmp_path / "out").exists()


def test_every_sentinel_of_the_code_is_a_reserved_tenant() -> None:
    from producer.report import data as report_data
    from producer.watch import store as watch_store
    from routing import names, resilience
    from workers.guards import cache

    sentinels = {
        cache.SHARED,
        resilience.WILDCARD,
        layout.HIVE_NULL,
        report_data.NO_TENANT,
        report_data.NOT_ROUTED,
        watch_store.NO_TENANT,
    }
    for value in sentinels | {"", ".", "..", "__hive_default_partition__"}:
        with pytest.raises(InputError):
            names.validate_tenant(value)


def test_the_cache_namespace_of_no_tenant_equals_the_shared_one() -> None:
    """Defence in depth: even a tenant that got past validation cannot land in ``*``."""
    from routing.policy import CacheSpec
    from workers.guards.cache import cache_key

    model = load_policy().tiers[0].models[0]
    shared = cache_key(CacheSpec(shared_across_tenants=True), "acme", model, 10, False, None, "hi")
    own = CacheSpec(shared_across_tenants=False)
    for tenant in ("*", "%2A", "acme"):
        assert cache_key(own, tenant, model, 10, False, None, "hi") != shared, tenant
    assert cache_key(own, "acme", model, 10, False, None, "hi").startswith("br:cache:acme:")


@pytest.mark.parametrize(
    "good", ["acme", "default", "ACME-eu.1", "株式会社", "株" * 22, "société", "x" * 200]
)
def test_ordinary_tenants_are_accepted(good: str) -> None:
    from routing import names

    assert names.validate_tenant(good) == good
    assert JobContext(**_context(tenant=good)).tenant == good


@pytest.mark.parametrize(
    "bad", ["a b", "a/b", "a=b", "a%b", "a:b", "tab\t", "-x", "_x", "x\u200b", "x\u202e",
            "cafe\u0301", "株" * 23, "x" * 201]
)  # fmt: skip
def test_tenants_that_are_not_one_plain_name_are_refused(bad: str) -> None:
    from routing import names

    with pytest.raises(InputError, match="tenant"):
        names.validate_tenant(bad)


# ---------------------------------------------------------------- nightly schedules


def _schedules(tmp_path: Path, **entry: Any) -> Path:
    base = {"name": "acme", "cron": "15 2 * * *", "input": "s3://in/{date}/", "output": "s3://o/"}
    path = tmp_path / "schedules.yaml"
    path.write_text(json.dumps({"schedules": [{**base, **entry}]}))
    return path


@pytest.mark.parametrize(
    "entry",
    [{"tenant": "*"}, {"tenant": CJK_TENANT}, {"tenant": "__HIVE_DEFAULT_PARTITION__"},
     {"name": "n" * 70}, {"name": "a..b"}],
)  # fmt: skip
def test_a_schedule_whose_tenant_or_job_ids_are_unsafe_is_refused_at_load(
    tmp_path: Path, entry: dict[str, Any]
) -> None:
    from workers.nightly import load_schedules

    with pytest.raises(ConfigError) as info:
        load_schedules(_schedules(tmp_path, **entry))
    assert "tenant" in str(info.value) or "job id" in str(info.value)


def test_a_schedule_with_a_long_but_safe_name_loads(tmp_path: Path) -> None:
    from workers.nightly import load_schedules

    (schedule,) = load_schedules(_schedules(tmp_path, name="n" * 69, tenant="株式会社"))
    assert schedule.tenant == "株式会社"


# ---------------------------------------------------------------- the drop folder


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_drop_folder_with_a_bad_tenant_name_fails_that_file_only(
    fleet: dict[str, services.Proc], fleet_env: dict[str, str], bucket: str
) -> None:
    client = services.s3_client(fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"])
    good, bad = "inbox/acme/a.parquet", f"inbox/{CJK_TENANT}/b.parquet"
    for key in (good, bad):
        sink = pa.BufferOutputStream()
        pq.write_table(sample_prompts(12, seed=5), sink)
        client.put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())
    cmd = [sys.executable, "-m", "producer", "watch", f"s3://{bucket}/inbox/",
           "--output", f"s3://{bucket}/out/", "--once"]  # fmt: skip
    proc = subprocess.run(
        cmd, env=clean_env(**fleet_env), capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # --once: 1 when a file failed
    assert "Traceback" not in proc.stdout + proc.stderr
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    keys_now = sorted(o["Key"] for o in listed)
    assert not [k for k in keys_now if k.startswith("inbox/")], keys_now
    assert any(k.startswith("processed/acme/") and k.endswith("/a.parquet") for k in keys_now)
    (error_key,) = [k for k in keys_now if k.startswith("failed/") and k.endswith("error.json")]
    error = json.loads(client.get_object(Bucket=bucket, Key=error_key)["Body"].read())
    assert error["stage"] == "plan" and "tenant" in error["error"] and "bytes" in error["error"]
    assert not [k for k in keys_now if k.startswith("out/") and CJK_TENANT in k]
