"""Fixtures of the security suite: the shared ``sim`` / ``sim_server`` of tests/conftest.py
(the in-process simulated provider) and the session's real services, at this seed."""

import pytest


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 11  # the seed the security tests were written against (as tests/workers/test_calls)
