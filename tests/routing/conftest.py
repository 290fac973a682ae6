"""Shared fixtures for the routing (pure domain) tests."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis.configuration import set_hypothesis_home_dir

from routing.policy import Policy, default_policy_text, load_policy, parse_policy

# Keep Hypothesis' on-disk caches out of the repository (the pytest config's
# norecursedirs makes the plugin warn about a .hypothesis folder in the rootdir).
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "batch-router-tests-hypothesis")

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "prompts" / "corpus.parquet"


@pytest.fixture(scope="session")
def default_policy() -> Policy:
    return load_policy()


@pytest.fixture
def policy_data() -> dict[str, Any]:
    """The default policy as a plain mapping, safe to mutate."""
    return copy.deepcopy(yaml.safe_load(default_policy_text()))


@pytest.fixture
def make_policy() -> Callable[[dict[str, Any]], Policy]:
    def build(data: dict[str, Any]) -> Policy:
        return parse_policy(yaml.safe_dump(data), "test-policy.yaml")

    return build


@pytest.fixture(scope="session")
def corpus_path() -> Path:
    if not CORPUS.is_file():
        pytest.skip(f"real prompt corpus not found at {CORPUS} (shared data not mounted)")
    return CORPUS
