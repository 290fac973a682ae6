"""Shared fixtures for the routing (pure domain) tests. ``corpus_path`` comes from
tests/conftest.py."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from routing.policy import Policy, load_policy
from tests import policies

# Keep Hypothesis' on-disk caches out of the repository (the pytest config's
# norecursedirs makes the plugin warn about a .hypothesis folder in the rootdir).
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "batch-router-tests-hypothesis")


@pytest.fixture(scope="session")
def default_policy() -> Policy:
    return load_policy()


@pytest.fixture
def policy_data() -> dict[str, Any]:
    """The default policy as a plain mapping, safe to mutate."""
    return policies.default_data()


@pytest.fixture
def make_policy() -> Callable[[dict[str, Any]], Policy]:
    def build(data: dict[str, Any]) -> Policy:
        return policies.parse(data, "test-policy.yaml")

    return build
