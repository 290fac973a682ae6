"""Fixtures of the security suite: the in-process simulated provider of the worker tests
(``sim``) and the session's real services (tests/conftest.py)."""

from tests.workers.test_calls import sim, sim_server

__all__ = ["sim", "sim_server"]
