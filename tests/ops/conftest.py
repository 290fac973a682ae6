"""Fixtures of the operations tests: one private stack and one job, shared by the package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops import stack as ops


@pytest.fixture(scope="package")
def tier_queues() -> list[str]:
    from routing.policy import load_policy
    from workers.app import tier_queue

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


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
