"""The simulated provider for the worker tests: one server per test module (``sim_server``),
reset to its module's configuration before and after each test (``sim``). A module picks
its seed by overriding the ``sim_seed`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workers.simprovider import SimConfig, SimServer


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 0


@pytest.fixture(scope="module")
def sim_server(sim_seed: int) -> Iterator[SimServer]:
    with SimServer(SimConfig(seed=sim_seed)) as server:
        yield server


@pytest.fixture
def sim(sim_server: SimServer, sim_seed: int) -> Iterator[SimServer]:
    sim_server.configure(**SimConfig(seed=sim_seed).as_dict())
    sim_server.reset()
    yield sim_server
    sim_server.configure(**SimConfig(seed=sim_seed).as_dict())
