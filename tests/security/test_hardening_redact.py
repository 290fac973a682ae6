"""Issue 13, finding 7: a provider that echoes the request's credentials in an error body
(the simulated provider's ``auth_error_rate``: a 401 quoting ``Authorization: Bearer …``)
must not put the key into ``Completion.error``, the results, the audit trail, the manifest,
the logs or the CLI output. Every configured secret is redacted where provider or exception
text becomes stored or logged data, token-shaped strings are redacted even when no setting
holds them, and stored error text is capped."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from tests.security.scan import hits, local_objects
from workers import logs
from workers.provider import ChatRequest, Client, Endpoint, call_once, make_client
from workers.settings import ProviderOverride, S3Settings, Settings
from workers.sim.config import SimConfig
from workers.sim.server import SimServer

pytestmark = pytest.mark.security

API_KEY = "sk-echo-Tq7Wm2Pz9Lx4Rb8Kc1"
S3_SECRET = "s3secret-Gh5Jk8Lm1Np4"
REDIS_PASSWORD = "redispw-Vb3Nm6Qw9Er2"
UNCONFIGURED = "sk-other-Yu4Io7Pa0Sd3Fg6"  # a key no setting holds (someone else's)
MAX_ERROR_CHARS = 1000


def _settings() -> Settings:
    return Settings(
        _env_file=None,
        broker_url=SecretStr(f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0"),
        s3=S3Settings(
            access_key_id=SecretStr("s3-access-id"), secret_access_key=SecretStr(S3_SECRET)
        ),
        providers={"sim": ProviderOverride(api_key=SecretStr(API_KEY))},
    )


async def _call(endpoint: Endpoint, raw: bool = False) -> str:
    """One call answered 401; ``raw``: a client built without ``make_client`` (so its key
    is not registered for redaction anywhere: only its shape gives it away)."""
    if raw:
        client: Client = openai.AsyncOpenAI(
            base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0
        )
    else:
        client = make_client(endpoint, "aiohttp")
    async with client:
        done = await call_once(client, "gpt-4o-mini", ChatRequest("hello", None, 16))
    assert not done.ok and done.status == 401, done
    assert done.error is not None and "Request headers" in done.error  # it did echo them
    return done.error


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_401_echoing_the_key_is_stored_redacted(sim: SimServer, kind: str) -> None:
    sim.configure(auth_error_rate=1.0)
    url = sim.base_url if kind == "openai" else sim.url
    error = asyncio.run(_call(Endpoint("sim", url, API_KEY, 10.0, kind)))
    assert API_KEY not in error and API_KEY[:12] not in error
    assert "[REDACTED]" in error


def test_a_key_no_setting_holds_is_redacted_by_its_shape(sim: SimServer) -> None:
    """A proxy in front of the provider echoing some other key: redacted as a token."""
    sim.configure(auth_error_rate=1.0)
    error = asyncio.run(_call(Endpoint("sim", sim.base_url, UNCONFIGURED, 10.0), raw=True))
    assert UNCONFIGURED not in error and "sk-other" not in error, error


def test_stored_error_text_is_capped(sim: SimServer) -> None:
    """A huge error body (here: a 2,000-character key echoed) is cut, key and all."""
    sim.configure(auth_error_rate=1.0)
    long_key = "sk-" + "Zq9" * 700
    error = asyncio.run(_call(Endpoint("sim", sim.base_url, long_key, 10.0), raw=True))
    assert len(error) <= MAX_ERROR_CHARS
    assert "Zq9Zq9Zq9" not in error


def test_the_process_redactor_learns_settings_and_policy_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What ``client_for`` registers: every SecretStr of the Settings (a Redis URL's
    password, not its host) and the keys a policy names by ``api_key_env``."""
    from routing.policy import load_policy
    from workers import redact

    policy_key = "policy-env-key-Mn4Bv7Cx0"
    monkeypatch.setenv("SIM_API_KEY", policy_key)  # the default policy's api_key_env
    redact.register(_settings())
    redact.register_policy_keys(load_policy())
    text = f"{S3_SECRET} {policy_key} redis://:{REDIS_PASSWORD}@127.0.0.1:1/0 {API_KEY}"
    out = redact.redact(text)
    for secret in (S3_SECRET, policy_key, REDIS_PASSWORD, API_KEY):
        assert secret not in out, out
    assert "@127.0.0.1:1/0" in out  # the address stays readable


# ---------------------------------------------------------------- logs


@pytest.fixture
def worker_logging() -> Iterator[io.StringIO]:
    """A worker process's logging (workers.logs.install on an app with these settings)."""
    from workers.app import make_app

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.install(make_app(_settings()))
    stream = io.StringIO()
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_logs_redact_every_secret_in_messages_extras_and_tracebacks(
    worker_logging: io.StringIO, fmt: str
) -> None:
    logs.configure(logging.DEBUG, worker_logging, fmt)
    log = logging.getLogger("batch_router.test")
    log.warning("provider said: Authorization: Bearer %s", API_KEY, extra={"detail": S3_SECRET})
    log.info("connecting to redis://:%s@redis:6379/0", REDIS_PASSWORD)
    log.info("echo x-api-key: %s", UNCONFIGURED)
    try:
        raise RuntimeError(
            f"401 body: {{'authorization': 'Bearer {API_KEY}', 's3': '{S3_SECRET}'}}"
        )
    except RuntimeError:
        log.exception("dispatch failed")
    logging.getLogger("celery.app.trace").error(
        "Task raised: %r", ValueError(REDIS_PASSWORD), exc_info=False
    )
    text = worker_logging.getvalue()
    assert "dispatch failed" in text and "RuntimeError" in text and "Traceback" in text
    for secret in (API_KEY, S3_SECRET, REDIS_PASSWORD, UNCONFIGURED):
        assert secret not in text, (secret, text)
    if fmt == "json":
        for line in text.splitlines():
            json.loads(line)  # still one JSON object per line


# ---------------------------------------------------------------- a whole job, as a user


def _run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_local_job_against_an_echoing_provider_stores_and_prints_no_key(
    tmp_path: Path,
) -> None:
    """``batch-router run`` with a provider key configured, every call answered 401 with
    the key echoed: no stored object (results and audit decoded, manifest, cost, report)
    and no CLI output holds it; the rows say what failed."""
    with SimServer(SimConfig(auth_error_rate=1.0)) as server:
        env = {
            "BATCH_ROUTER_PROVIDERS__SIM__BASE_URL": server.base_url,
            "BATCH_ROUTER_PROVIDERS__SIM__API_KEY": API_KEY,
            "BATCH_ROUTER_S3__SECRET_ACCESS_KEY": S3_SECRET,
            "LOG_FORMAT": "json",
        }
        out = tmp_path / "out"
        proc = _run_cli(env, "run", "--sample", "40", "--output", str(out), "--job-id", "echo-401")
        assert server.stats()["errors"] >= 1
    both = proc.stdout + proc.stderr
    objects = list(local_objects(out))
    names = [n for n, _ in objects]
    for part in ("/results/", "/_audit/", "manifest.json"):
        assert any(part in n for n in names), (part, names, both)
    results = [n for n in names if "/results/" in n and n.endswith(".parquet")]
    rows = [r for n in results for r in pq.read_table(n).to_pylist()]
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all("Request headers" in r["error"] for r in failed), rows[:2]
    assert all(len(r["error"]) <= MAX_ERROR_CHARS for r in failed)
    assert hits(objects, [API_KEY, S3_SECRET]) == {}
    assert hits([("cli", both.encode())], [API_KEY, S3_SECRET]) == {}
