"""Fixtures of the operations tests: one private stack and one job, shared by the package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.ops import stack as ops


@pytest.fixture(scope="package")
def tier_queues() -> list[str]:
    from routing.policy import load_policy
    from workers.queues import tier_queue

    return [tier_queue(t) for t in load_policy().tier_names]


@pytest.fixture(scope="package")
def ops_stack(
    tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, sim_url: str
) -> Iterator[ops.OpsStack]:
    stack = ops.start_stack(tmp_path_factory.mktemp("ops"), s3_endpoint, sim_url)
    try:
        yield stack
    finally:
        ops.stop_stack(stack.procs)


@pytest.fixture(scope="package")
def ops_job(ops_stack: ops.OpsStack, tier_queues: list[str]) -> ops.OpsJob:
    return ops.run_job(ops_stack, tier_queues)


@pytest.fixture(scope="package")
def ops_fleet(ops_stack: ops.OpsStack, tier_queues: list[str]) -> ops.OpsStack:
    """The stack with its tier worker up, for the drop-folder and nightly tests.

    ``ops_job`` starts that worker mid-job; if no job ran in this session it is started
    here (the test files run in name order, so ``ops_job``'s backlog check comes first).
    """
    if ops.TIER_WORKER_PROC not in ops_stack.procs:
        ops_stack.procs[ops.TIER_WORKER_PROC] = services.start_worker(
            ops_stack.workdir, tier_queues, ops_stack.env, ops.TIER_WORKER, concurrency=2
        )
    services.wait_workers_ready(ops_stack.redis_url, [ops.INGEST_WORKER, ops.TIER_WORKER])
    return ops_stack


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
