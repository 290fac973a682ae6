"""Secrets and transport on a real deployment: Redis with a password over TLS
(``rediss://``, a self-signed CA given by setting), S3 with credentials and server-side
encryption on every object written, a provider API key, real Celery workers logging JSON
at DEBUG. A job runs; then every output object, every log and the CLI output are searched
for each secret: zero hits. A second job runs against the stack's simulated provider
turned careless (every call answered 401 with the request's ``Authorization`` header
echoed, issue 13 finding 7): the same search, zero hits. Settings hold every secret as
``SecretStr``; the CLI's connection errors name no password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from routing.policy import load_policy
from tests import services
from tests.security.scan import hits, s3_objects
from tests.security.secure_stack import (
    API_KEY,
    REDIS_PASSWORD,
    WRONG_PASSWORD,
    SecureRedis,
    secure_env,
    start_secure_redis,
    start_worker,
)
from workers.settings import ProviderOverride, S3Settings, Settings

pytestmark = [pytest.mark.security, pytest.mark.integration]

SECRETS = (REDIS_PASSWORD, API_KEY, services.S3_SECRET, services.S3_KEY, WRONG_PASSWORD)


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    redis = start_secure_redis(tmp_path_factory.mktemp("secure-redis"))
    with services.stopping(redis.proc):
        yield redis


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    secure_redis: SecureRedis,
    s3_endpoint: str,
) -> Iterator[tuple[dict[str, str], Path]]:
    """The environment of the hardened deployment, with two workers running on it and a
    simulated provider of its own (the echo job reconfigures it)."""
    workdir = tmp_path_factory.mktemp("secure-stack")
    sim_url, sim = services.start_sim_provider(workdir)
    env = secure_env(secure_redis, s3_endpoint, sim_url)
    tiers = [f"tier.{t}" for t in load_policy().tier_names]
    workers = [
        start_worker(workdir, ["ingest", "finalize"], env, "sec-ingest"),
        start_worker(workdir, tiers, env, "sec-tiers"),
    ]
    with services.stopping(sim, *workers):
        app_broker = Settings(_env_file=None, broker_url=SecretStr(env["BATCH_ROUTER_BROKER_URL"]),
                              redis_tls={"ca_file": secure_redis.ca_file}).broker()  # fmt: skip
        services.wait_workers_ready(app_broker, ["sec-ingest", "sec-tiers"], timeout=90)
        yield env, workdir


def _run_job(
    env: dict[str, str], s3_endpoint: str, rows: int, topic: str = "question"
) -> dict[str, object]:
    """``rows`` prompts submitted with ``--wait`` on the hardened deployment (another
    ``topic``, other prompts: none answered from the response cache)."""
    bucket = f"sec-{uuid.uuid4().hex[:10]}"
    client = services.s3_client(s3_endpoint)
    client.create_bucket(Bucket=bucket)
    prompts = [f"Secret-free {topic} {i}: what is {i} + {i}?" for i in range(rows)]
    table = pa.table({"prompt_id": [f"s{i}" for i in range(rows)], "prompt": prompts})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    client.put_object(Bucket=bucket, Key="in/prompts.parquet", Body=sink.getvalue().to_pybytes())
    job_id = f"secure-{uuid.uuid4().hex[:8]}"
    proc = services.submit(bucket, job_id, env, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = _cli(env, "status", job_id)
    return {"bucket": bucket, "job_id": job_id, "cli": [proc, status], "client": client}


@pytest.fixture(scope="module")
def job(stack: tuple[dict[str, str], Path], s3_endpoint: str) -> dict[str, object]:
    """One job of 300 prompts on the hardened deployment."""
    return _run_job(stack[0], s3_endpoint, 300)


def _sim_config(env: dict[str, str], **changes: float) -> None:
    url = env["BATCH_ROUTER_PROVIDERS__SIM__BASE_URL"].removesuffix("/v1") + "/_sim/config"
    request = urllib.request.Request(url, json.dumps(changes).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


@pytest.fixture(scope="module")
def echo_job(
    job: dict[str, object], stack: tuple[dict[str, str], Path], s3_endpoint: str
) -> dict[str, object]:
    """After ``job``: 120 prompts while the provider answers every call 401 with the
    request's ``Authorization: Bearer <key>`` echoed in its message."""
    env, _ = stack
    _sim_config(env, auth_error_rate=1.0)
    try:
        return _run_job(env, s3_endpoint, 120, "echo")
    finally:
        _sim_config(env, auth_error_rate=0.0)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_secret_in_any_output_log_or_cli_output(
    job: dict[str, object], stack: tuple[dict[str, str], Path], service_dir: Path
) -> None:
    _, workdir = stack
    bucket, client = str(job["bucket"]), job["client"]
    objects = list(s3_objects(client, bucket, "out/"))
    names = [n for n, _ in objects]
    for part in ("/results/", "/_audit/", "/_job/", "manifest.json", "_SUCCESS", "/cost/"):
        assert any(part in n for n in names), (part, names)
    assert hits(objects, SECRETS) == {}
    logs = [(str(p), p.read_bytes()) for p in [*workdir.glob("*.log"), *service_dir.glob("*.log")]]
    assert any("secure-worker" in n for n, _ in logs)
    worker_logs = b"".join(data for name, data in logs if "secure-worker" in name)
    assert b'"level": "DEBUG"' in worker_logs or b'"level":"DEBUG"' in worker_logs
    assert hits(logs, SECRETS) == {}
    cli = job["cli"]
    assert isinstance(cli, list)
    outputs = [("cli", (p.stdout + p.stderr).encode()) for p in cli]
    assert hits(outputs, SECRETS) == {}


def test_a_provider_echoing_the_key_leaves_it_nowhere(
    echo_job: dict[str, object], stack: tuple[dict[str, str], Path]
) -> None:
    _, workdir = stack
    client, bucket = echo_job["client"], str(echo_job["bucket"])
    objects = list(s3_objects(client, bucket, "out/"))
    results = [pq.read_table(pa.BufferReader(d)) for n, d in objects if "/results/" in n]
    errors = [e for t in results for e in t.column("error").to_pylist() if e]
    assert len(errors) > 100 and all("Request headers: Authorization: Bearer" in e for e in errors)
    assert any("/_audit/" in n for n, _ in objects)
    assert hits(objects, SECRETS) == {}
    logs = [(str(p), p.read_bytes()) for p in workdir.glob("*.log")]
    assert hits(logs, SECRETS) == {}
    cli = echo_job["cli"]
    assert isinstance(cli, list)
    assert hits([("cli", (p.stdout + p.stderr).encode()) for p in cli], SECRETS) == {}


def test_every_object_written_is_server_side_encrypted(job: dict[str, object]) -> None:
    client, bucket = job["client"], str(job["bucket"])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="out/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert len(keys) > 5
    unencrypted = [
        k
        for k in keys
        if client.head_object(Bucket=bucket, Key=k).get("ServerSideEncryption") != "AES256"
    ]
    assert unencrypted == []
    # the control: the input, written without SSE, reports none
    head = client.head_object(Bucket=bucket, Key="in/prompts.parquet")
    assert head.get("ServerSideEncryption") is None


def test_redis_traffic_is_tls_only(secure_redis: SecureRedis, job: dict[str, object]) -> None:
    if not secure_redis.tls:
        pytest.skip(secure_redis.no_tls_reason or "no TLS")
    assert secure_redis.url.startswith("rediss://")
    # the server has no plain port: the job above went over TLS end to end
    import redis

    plain = secure_redis.url.replace("rediss://", "redis://")
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(plain, socket_timeout=2).ping()


def test_connection_errors_name_no_password(
    secure_redis: SecureRedis, stack: tuple[dict[str, str], Path]
) -> None:
    env, _ = stack
    wrong = {
        **env,
        "BATCH_ROUTER_BROKER_URL": secure_redis.url.replace(REDIS_PASSWORD, WRONG_PASSWORD),
    }
    unreachable = {**env, "BATCH_ROUTER_BROKER_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0"}
    untrusted = {k: v for k, v in env.items() if k != "BATCH_ROUTER_REDIS_TLS__CA_FILE"}
    cases = [wrong, unreachable] + ([untrusted] if secure_redis.tls else [])
    for case in cases:
        proc = _cli(case, "status", "no-such-job")
        both = proc.stdout + proc.stderr
        assert proc.returncode == 2, both
        assert "cannot reach Redis" in both and "Traceback" not in both, both
        assert hits([("cli", both.encode())], SECRETS) == {}


def test_settings_hold_every_secret_as_secretstr() -> None:
    settings = Settings(
        _env_file=None,
        broker_url=SecretStr(f"redis://:{REDIS_PASSWORD}@h:1/0"),
        redis_url=SecretStr(f"redis://:{REDIS_PASSWORD}@h:2/0"),
        s3=S3Settings(
            access_key_id=SecretStr(services.S3_KEY),
            secret_access_key=SecretStr(services.S3_SECRET),
        ),
        providers={"sim": ProviderOverride(api_key=SecretStr(API_KEY))},
    )
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert hits([("settings", text.encode())], SECRETS) == {}
    for field in ("broker_url", "redis_url"):
        assert Settings.model_fields[field].annotation == SecretStr | None
    for field in ("access_key_id", "secret_access_key"):
        assert S3Settings.model_fields[field].annotation == SecretStr | None
    assert ProviderOverride.model_fields["api_key"].annotation == SecretStr | None


def test_the_scan_finds_a_planted_secret() -> None:
    """The control: a secret inside a zstd-compressed Parquet page is found."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"x": [f"a {API_KEY} b"] * 3}), sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    assert hits([("p.parquet", data)], SECRETS) == {API_KEY: ["p.parquet"]}


def test_redis_tls_settings_become_url_parameters_of_rediss_urls_only() -> None:
    settings = Settings(
        _env_file=None,
        broker_url=SecretStr(f"rediss://:{REDIS_PASSWORD}@h:6380/0"),
        redis_url=SecretStr(f"redis://:{REDIS_PASSWORD}@h:6379/1"),
        redis_tls={"ca_file": "/etc/ca.pem", "cert_reqs": "required"},
    )
    assert settings.broker() == (
        f"rediss://:{REDIS_PASSWORD}@h:6380/0?ssl_cert_reqs=required&ssl_ca_certs=%2Fetc%2Fca.pem"
    )
    assert settings.state_redis() == f"redis://:{REDIS_PASSWORD}@h:6379/1"
    given = Settings(
        _env_file=None,
        broker_url=SecretStr("rediss://h:6380/0?ssl_cert_reqs=none"),
        redis_tls={"ca_file": "/etc/ca.pem"},
    )
    assert given.broker() == "rediss://h:6380/0?ssl_cert_reqs=none&ssl_ca_certs=%2Fetc%2Fca.pem"
