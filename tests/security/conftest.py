"""Fixtures of the security suite: the in-process simulated provider of the worker tests
(``sim``, tests/workers/conftest.py) and the session's real services (tests/conftest.py)."""

import pytest

from tests.workers.conftest import sim, sim_server

__all__ = ["sim", "sim_seed", "sim_server"]


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 11  # the seed the security tests were written against (as tests/workers/test_calls)
