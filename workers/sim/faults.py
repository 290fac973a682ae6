"""The configured faults and delays (workers/sim/config.py), drawn per request from the app's
one random source, in the documented order: 401, outage, 429, 500, hang, latency."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from workers.sim.errors import Fault
from workers.sim.state import SimState

__all__ = ["simulate"]

_AUTH_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})


def _unauthorized(headers: Mapping[str, str]) -> Fault:
    """401 whose message echoes the request's credentials, as some providers' do."""
    echoed = "; ".join(f"{k}: {v}" for k, v in headers.items() if k.lower() in _AUTH_HEADERS)
    message = f"Invalid credentials (simulated). Request headers: {echoed or 'none'}"
    return Fault(401, message, "invalid_request_error", "invalid_api_key")


def _rate_limited(retry_after_s: float) -> Fault:
    headers = (
        ("Retry-After", f"{retry_after_s:g}"),
        ("retry-after-ms", str(round(retry_after_s * 1000))),
    )
    message = "Rate limit reached for requests (simulated)."
    return Fault(429, message, "requests", "rate_limit_exceeded", headers)


def _server_error(message: str) -> Fault:
    return Fault(500, message, "server_error", "server_error")


async def simulate(
    state: SimState, model: str, headers: Mapping[str, str] | None = None
) -> Fault | None:
    """Apply the configured faults and delays; a fault short-circuits the request."""
    cfg = state.config
    if state.roll(cfg.auth_error_rate):
        state.stats.errors += 1
        return _unauthorized(headers or {})
    if model in cfg.fail_models:
        state.stats.errors += 1
        return _server_error(f"{model} is down (simulated outage).")
    if state.roll(cfg.rate_limit_rate):
        state.stats.rate_limited += 1
        return _rate_limited(cfg.retry_after_s)
    if state.roll(cfg.error_rate):
        state.stats.errors += 1
        return _server_error("The server had an error while processing your request (simulated).")
    if state.roll(cfg.hang_rate):
        state.stats.hangs += 1
        await asyncio.sleep(cfg.hang_s)
    delay = state.delay_s()
    if delay:
        await asyncio.sleep(delay)
    return None
