"""Redis connections: the one place a process opens Redis.

Every Redis client of a process comes from here, built from :class:`Settings`: the
job-state Redis (``BATCH_ROUTER_REDIS_URL``, else the broker's) and the broker's own
(queue depths), with the ``rediss://`` TLS options applied (``workers.settings.RedisTls``).
A process keeps one client — one connection pool — per URL and options, shared by its
threads: they are the process's resources (workers/process.py, which a forked child —
Celery's prefork pool — finds without its parent's clients, and opens its own); the
functions here build the URL and options and hand back that client.
"""

from __future__ import annotations

import redis

from workers.process import ProcessResources, this_process
from workers.settings import Settings


def state_client(
    settings: Settings,
    *,
    decode_responses: bool = True,
    socket_timeout: float | None = None,
    process: ProcessResources | None = None,
) -> redis.Redis:
    """The job-state Redis: job progress, claims, ledger, breakers, rate limits, cache
    (``process``: whose client, this process's by default)."""
    return client(
        settings.state_redis(),
        decode_responses=decode_responses,
        socket_timeout=socket_timeout,
        process=process,
    )


def broker_client(
    settings: Settings,
    *,
    decode_responses: bool = False,
    socket_timeout: float | None = None,
    process: ProcessResources | None = None,
) -> redis.Redis:
    """The broker's Redis, read directly (queue lengths)."""
    return client(
        settings.broker(),
        decode_responses=decode_responses,
        socket_timeout=socket_timeout,
        process=process,
    )


def client(
    url: str,
    *,
    decode_responses: bool = True,
    socket_timeout: float | None = None,
    process: ProcessResources | None = None,
) -> redis.Redis:
    """This process's client for ``url``. The URL carries its TLS options already: from
    Settings, use :func:`state_client` / :func:`broker_client`, which add them."""
    return (process or this_process()).redis_client(
        url, decode_responses=decode_responses, socket_timeout=socket_timeout
    )
