"""The simulation's control endpoints (not part of any provider's protocol).

``GET /_sim/config``, ``POST /_sim/config`` (JSON of any ``SimConfig`` fields; returns the new
config; a ``seed`` in it re-seeds the random source), ``GET /_sim/stats``, ``POST /_sim/reset``
(zeroes the counters), ``GET /healthz`` (``ok``). Errors use OpenAI's shape.
"""

from __future__ import annotations

from aiohttp import web

from workers.sim.errors import openai_error
from workers.sim.state import STATE

__all__ = ["install"]


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].config.as_dict())


async def post_config(request: web.Request) -> web.Response:
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("config must be a JSON object")
        config = request.app[STATE].configure(changes)
    except (ValueError, TypeError) as exc:
        return openai_error(400, str(exc), "invalid_request_error", "invalid_config")
    return web.json_response(config.as_dict())


async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats.as_dict())


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.reset_stats()
    return web.json_response(state.stats.as_dict())


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def install(app: web.Application) -> None:
    app.router.add_get("/_sim/config", get_config)
    app.router.add_post("/_sim/config", post_config)
    app.router.add_get("/_sim/stats", get_stats)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_get("/healthz", healthz)
