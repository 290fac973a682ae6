"""Shared fixtures: real Redis, a real S3-compatible store (SeaweedFS), the simulated
provider over HTTP and real ``celery worker`` processes — each started once per test run
on free loopback ports and stopped by PID at the end.

The simulated provider comes two ways: in-thread, one server per test module (``sim``,
reset to ``SimConfig(seed=sim_seed)`` around each test), and as its own process for the
distributed deployment (``sim_url``; ``sim_http`` resets it the same way). A module picks
its seed by overriding ``sim_seed``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests import data, services
from tests.cli import CliRunner, clean_env, run_cli

if TYPE_CHECKING:
    from workers.sim.server import SimServer


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    """Run ``python -m producer ARGS`` in ``tmp_path`` with a clean environment, as a user."""

    def runner(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=tmp_path, env=clean_env(**extra_env))

    return runner


@pytest.fixture(scope="session")
def corpus_path() -> Path:
    """The real prompt corpus of the shared data folder (skips without it; fails in CI)."""
    return data.require(data.CORPUS)


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


@pytest.fixture(scope="module")
def sim_seed() -> int:
    """The simulated provider's seed; a test module overrides it to pick its own."""
    return 0


@pytest.fixture(scope="module")
def sim_server(sim_seed: int) -> Iterator[SimServer]:
    """The simulated provider in-thread over real HTTP, one per test module."""
    from workers.sim.config import SimConfig
    from workers.sim.server import SimServer

    with SimServer(SimConfig(seed=sim_seed)) as server:
        yield server


@pytest.fixture
def sim(sim_server: SimServer, sim_seed: int) -> Iterator[SimServer]:
    """The module's in-thread simulated provider, reset to ``SimConfig(seed=sim_seed)``
    (config, random source and counters) before the test and its config after it."""
    from workers.sim.config import SimConfig

    sim_server.configure(**SimConfig(seed=sim_seed).as_dict())
    sim_server.reset()
    yield sim_server
    sim_server.configure(**SimConfig(seed=sim_seed).as_dict())


@pytest.fixture(scope="session")
def sim_url(service_dir: Path) -> Iterator[str]:
    """The simulated provider as its own process (what workers call over HTTP)."""
    url, proc = services.start_sim_provider(service_dir)
    with services.stopping(proc):
        yield url


@pytest.fixture
def sim_http(sim_url: str, sim_seed: int) -> Iterator[str]:
    """``sim_url``'s process reset like ``sim``: ``SimConfig(seed=sim_seed)`` and zeroed
    counters before the test, that config again after it."""
    from workers.sim.config import SimConfig

    config = SimConfig(seed=sim_seed).as_dict()
    services.sim_call(sim_url, "/_sim/config", config)
    services.sim_call(sim_url, "/_sim/reset", {})
    yield sim_url
    services.sim_call(sim_url, "/_sim/config", config)


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
