"""Redis connections: the one place a process opens Redis.

Every Redis client of a process comes from here, built from :class:`Settings`: the
job-state Redis (``BATCH_ROUTER_REDIS_URL``, else the broker's) and the broker's own
(queue depths), with the ``rediss://`` TLS options applied (``workers.settings.RedisTls``).
A process keeps one client — one connection pool — per URL and options, shared by its
threads. Fork safety lives here too: a forked child (Celery's prefork pool) forgets the
parent's clients and opens its own on first use (redis-py's pools also check the pid, so
a connection is never shared across processes).
"""

from __future__ import annotations

import os
import threading

import redis

from workers.settings import Settings

_Key = tuple[str, bool, float | None]
_clients: dict[_Key, redis.Redis] = {}
_lock = threading.Lock()


def state_client(
    settings: Settings, *, decode_responses: bool = True, socket_timeout: float | None = None
) -> redis.Redis:
    """The job-state Redis: job progress, claims, ledger, breakers, rate limits, cache."""
    return client(
        settings.state_redis(), decode_responses=decode_responses, socket_timeout=socket_timeout
    )


def broker_client(
    settings: Settings, *, decode_responses: bool = False, socket_timeout: float | None = None
) -> redis.Redis:
    """The broker's Redis, read directly (queue lengths)."""
    return client(
        settings.broker(), decode_responses=decode_responses, socket_timeout=socket_timeout
    )


def client(
    url: str, *, decode_responses: bool = True, socket_timeout: float | None = None
) -> redis.Redis:
    """This process's client for ``url``. The URL carries its TLS options already: from
    Settings, use :func:`state_client` / :func:`broker_client`, which add them."""
    key = (url, decode_responses, socket_timeout)
    with _lock:
        found = _clients.get(key)
        if found is None:
            options = {} if socket_timeout is None else {"socket_timeout": socket_timeout}
            found = redis.Redis.from_url(url, decode_responses=decode_responses, **options)
            _clients[key] = found
    return found


def _forget_after_fork() -> None:
    """In a forked child: the parent's clients (and a lock a parent thread may have held
    at the fork) are not this process's."""
    global _lock
    _lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
