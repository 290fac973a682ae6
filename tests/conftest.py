"""Shared fixtures: real Redis, a real S3-compatible store (SeaweedFS), the simulated
provider over HTTP and real ``celery worker`` processes — each started once per test run
on free loopback ports and stopped by PID at the end."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

CORPUS = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "prompts" / "corpus.parquet"
)


@pytest.fixture(scope="session")
def corpus_path() -> Path:
    if not CORPUS.is_file():
        pytest.skip(f"shared corpus not found at {CORPUS} (../shared/data is absent here)")
    return CORPUS


@pytest.fixture(scope="session")
def service_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def redis_url(service_dir: Path) -> Iterator[str]:
    """``REDIS_URL`` if set, else a private ``redis-server`` on a free port."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    url, proc = services.start_redis(service_dir)
    with services.stopping(proc):
        yield url


@pytest.fixture(scope="session")
def s3_endpoint(service_dir: Path) -> Iterator[str]:
    endpoint, proc = services.start_seaweedfs(service_dir)
    with services.stopping(proc):
        yield endpoint


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    """A new, empty bucket for one test."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    services.s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def sim_url(service_dir: Path) -> Iterator[str]:
    """The simulated provider as its own process (what workers call over HTTP)."""
    url, proc = services.start_sim_provider(service_dir)
    with services.stopping(proc):
        yield url


@pytest.fixture(scope="session")
def fleet_env(redis_url: str, s3_endpoint: str, sim_url: str) -> dict[str, str]:
    """Environment of every process of the distributed deployment under test."""
    return services.deployment_env(
        redis_url,
        s3_endpoint,
        sim_url,
        BATCH_ROUTER_ROWS_PER_CHUNK="1000",
        # small inline limit so both inline and staged batches are exercised
        BATCH_ROUTER_INLINE_BATCH_MAX_BYTES="65536",
    )


@pytest.fixture(scope="session")
def fleet(service_dir: Path, fleet_env: dict[str, str]) -> Iterator[dict[str, services.Proc]]:
    """Real Celery workers: one on ``ingest,finalize``, one per tier queue."""
    from routing.policy import load_policy

    workers = {
        "ingest": services.start_worker(
            service_dir, ["ingest", "finalize"], fleet_env, "ingest", concurrency=2
        )
    }
    for tier in load_policy().tier_names:
        workers[tier] = services.start_worker(service_dir, [f"tier.{tier}"], fleet_env, tier)
    with services.stopping(*workers.values()):
        services.wait_workers_ready(fleet_env["BATCH_ROUTER_BROKER_URL"], list(workers))
        yield workers
