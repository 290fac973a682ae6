"""The simulator's aiohttp application: one state, and the routes of every endpoint module."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from workers.sim import (
    anthropic_batches,
    anthropic_messages,
    batch_core,
    control,
    openai_batches,
    openai_chat,
)
from workers.sim.config import SimConfig
from workers.sim.prompt import MAX_BODY_BYTES
from workers.sim.replay import Replay
from workers.sim.state import STATE, SimState

__all__ = ["ENDPOINTS", "make_app"]

# Each endpoint module's ``install(app)``: it adds its routes (and any state of its own).
ENDPOINTS: tuple[Callable[[web.Application], None], ...] = (
    openai_chat.install,
    anthropic_messages.install,
    openai_batches.install,
    anthropic_batches.install,
    batch_core.install,  # POST /_sim/batches/{id}/expire
    control.install,
)


def make_app(config: SimConfig | None = None, replay: Replay | None = None) -> web.Application:
    """Build the aiohttp application (one independent state per app; ``replay``: serve
    recorded answers, workers/sim/replay.py)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE] = SimState(config or SimConfig(), replay)
    for install in ENDPOINTS:
        install(app)
    return app
