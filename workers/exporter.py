"""The Prometheus exporter, ``python -m workers.exporter``: on every scrape it adds up the
worker processes' counters (``workers/metrics.py``, prometheus_client multiprocess mode,
``PROMETHEUS_MULTIPROC_DIR``) and reads what only Redis knows at that moment — queue depths
(kombu's lists, priority steps included), breaker states, and the provider batches in
flight of running jobs (``keys.job_batches``, written by workers/batches/record.py)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from workers import connections, keys
from workers.metrics import DEFAULT_PORT, MULTIPROC_ENV, NAMESPACE, _multiproc_dir
from workers.queues import FINALIZE_QUEUE, INGEST_QUEUE, TIER_QUEUE_PREFIX, tier_queue
from workers.settings import Settings

log = logging.getLogger(__name__)


BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
# kombu's Redis transport: a queue is a list named after it, plus one list per priority
# step above 0, named ``<queue>\x06\x16<step>``; delivered, unacked messages are in a hash.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
_UNACKED_KEY = "unacked"
_BINDINGS = "_kombu.binding.*"
# Bounded work per scrape: the provider batches of the newest running jobs only, found
# among the newest entries of the jobs index (which also holds finished jobs).
MAX_RUNNING_JOBS = 200
_INDEX_PAGE = 500
_INDEX_MAX = 5000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def queue_keys(queue: str) -> list[str]:
    return [queue, *(f"{queue}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS)]


def _ours(queue: str) -> bool:
    return queue in (INGEST_QUEUE, FINALIZE_QUEUE) or queue.startswith(TIER_QUEUE_PREFIX)


class RedisCollector(Collector):
    """Reads queue depths and breaker states from Redis at each scrape."""

    def __init__(self, broker: redis.Redis, state: redis.Redis, queues: Sequence[str]) -> None:
        self._broker = broker
        self._state = state
        self._queues = list(queues)

    def queues(self) -> list[str]:
        """The configured queues, plus every ``ingest`` / ``finalize`` / ``tier.*`` queue
        the broker has a binding for (a job's policy may name other tiers)."""
        found = set(self._queues)
        for key in self._broker.scan_iter(match=_BINDINGS, count=500):
            for member in self._broker.smembers(key):
                text = member.decode() if isinstance(member, bytes) else str(member)
                queue = text.split(_PRIORITY_SEP)[-1]
                if _ours(queue):
                    found.add(queue)
        return sorted(found)

    def depths(self) -> dict[str, int]:
        queues = self.queues()
        pipe = self._broker.pipeline(transaction=False)
        for queue in queues:
            for key in queue_keys(queue):
                pipe.llen(key)
        counts = pipe.execute()
        step = len(_PRIORITY_STEPS) + 1
        return {q: sum(counts[i * step : (i + 1) * step]) for i, q in enumerate(queues)}

    def breakers(self) -> dict[str, str]:
        from routing.resilience import BreakerSpec
        from workers.guards.breaker import RedisBreaker

        breaker = RedisBreaker(self._state, BreakerSpec())
        states: dict[str, str] = {}
        for key in self._state.scan_iter(match=keys.breaker_states(), count=500):
            text = key.decode() if isinstance(key, bytes) else str(key)
            target = keys.breaker_target(text)
            if target is not None:
                states[target] = breaker.state(target)
        return states

    def running_jobs(self) -> list[str]:
        """The newest running jobs (at most ``MAX_RUNNING_JOBS``), looked for among the
        newest ``_INDEX_MAX`` entries of the jobs index."""
        running: list[str] = []
        for start in range(0, _INDEX_MAX, _INDEX_PAGE):
            ids = [
                _text(j)
                for j in self._state.zrevrange(keys.jobs_index(), start, start + _INDEX_PAGE - 1)
            ]
            pipe = self._state.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(keys.job(job_id), "state")
            for job_id, state in zip(ids, pipe.execute(), strict=True):
                if state is not None and _text(state) == "running":
                    running.append(job_id)
                    if len(running) == MAX_RUNNING_JOBS:
                        return running
            if len(ids) < _INDEX_PAGE:
                break
        return running

    def provider_batches(
        self, now: float | None = None
    ) -> tuple[dict[tuple[str, str], int], dict[str, float]]:
        """Of the running jobs' provider batches not yet collected: how many per
        (provider, status), and per provider the age (s) of the oldest one submitted."""
        now = time.time() if now is None else now
        jobs = self.running_jobs()
        pipe = self._state.pipeline(transaction=False)
        for job_id in jobs:
            pipe.hvals(keys.job_batches(job_id))
        in_flight: Counter[tuple[str, str]] = Counter()
        oldest: dict[str, float] = {}
        for values in pipe.execute() if jobs else []:
            for raw in values:
                try:
                    summary = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(summary, dict) or summary.get("collected"):
                    continue
                provider = str(summary.get("provider") or "unknown")
                in_flight[provider, str(summary.get("status") or "unknown")] += 1
                submitted = summary.get("submitted_at")
                if isinstance(submitted, int | float):
                    oldest[provider] = max(oldest.get(provider, 0.0), now - submitted)
        return dict(in_flight), oldest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(f"{NAMESPACE}_redis_up", "1 when this scrape could read Redis")
        try:
            depths = self.depths()
            unacked = int(self._broker.hlen(_UNACKED_KEY))
            breakers = self.breakers()
            in_flight, oldest = self.provider_batches()
        except Exception as exc:
            log.warning("redis metrics unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            f"{NAMESPACE}_queue_depth", "Messages waiting in a queue", labels=["queue"]
        )
        for queue, n in depths.items():
            depth.add_metric([queue], n)
        yield depth
        yield GaugeMetricFamily(
            f"{NAMESPACE}_queue_unacked",
            "Messages delivered to workers and not yet acknowledged (all queues)",
            value=unacked,
        )
        state = GaugeMetricFamily(
            f"{NAMESPACE}_breaker_state",
            "Circuit breaker per provider/model: 0 closed, 1 half-open, 2 open",
            labels=["target"],
        )
        for target, name in sorted(breakers.items()):
            state.add_metric([target], BREAKER_STATES.get(name, 0))
        yield state
        yield from _batch_gauges(in_flight, oldest)


def _batch_gauges(
    in_flight: dict[tuple[str, str], int], oldest: dict[str, float]
) -> Iterator[GaugeMetricFamily]:
    batches = GaugeMetricFamily(
        f"{NAMESPACE}_provider_batches",
        "Provider batches of running jobs not yet collected, by provider and provider status",
        labels=["provider", "status"],
    )
    for (provider, status), n in sorted(in_flight.items()):
        batches.add_metric([provider, status], n)
    yield batches
    age = GaugeMetricFamily(
        f"{NAMESPACE}_provider_batch_oldest_age_seconds",
        "Seconds since the oldest provider batch not yet collected was submitted",
        labels=["provider"],
    )
    for provider, seconds in sorted(oldest.items()):
        age.add_metric([provider], round(seconds, 3))
    yield age


def default_queues() -> list[str]:
    """``ingest``, ``finalize`` and the tier queues of the configured policy."""
    from routing.policy import load_policy

    queues = [INGEST_QUEUE, FINALIZE_QUEUE]
    try:
        queues += [tier_queue(t) for t in load_policy(Settings().policy_path).tier_names]
    except Exception as exc:  # the exporter still serves what it can
        log.warning("policy not loaded, tier queues found from the broker only: %s", exc)
    return queues


def build_registry(
    broker_url: str, state_url: str, queues: Sequence[str], multiproc_dir: str | None
) -> CollectorRegistry:
    registry = CollectorRegistry()
    if multiproc_dir:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]  # untyped upstream
    broker = connections.client(broker_url, decode_responses=False, socket_timeout=5)
    state = (
        broker
        if state_url == broker_url
        else connections.client(state_url, decode_responses=False, socket_timeout=5)
    )
    registry.register(RedisCollector(broker, state, queues))
    return registry


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workers.exporter [--host 127.0.0.1] [--port 9808] [--queue Q]…``"""
    from workers import logs, redact

    parser = argparse.ArgumentParser(
        prog="python -m workers.exporter",
        description="Prometheus exporter of batch-router: worker counters from "
        f"${MULTIPROC_ENV}, queue depths and breaker states from Redis.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"({DEFAULT_PORT})")
    parser.add_argument(
        "--queue", action="append", default=[], help="a queue to report beyond the defaults"
    )
    args = parser.parse_args(argv)
    logs.configure(logging.INFO)
    settings = Settings()
    redact.register(settings)
    if not settings.distributed:
        log.error("no broker configured: set BATCH_ROUTER_BROKER_URL=redis://…")
        return 2
    multiproc_dir = _multiproc_dir()
    if multiproc_dir is None:
        log.warning("%s is not set: serving the Redis metrics only", MULTIPROC_ENV)
    queues = [*default_queues(), *args.queue]
    registry = build_registry(settings.broker(), settings.state_redis(), queues, multiproc_dir)
    server, _ = start_http_server(args.port, addr=args.host, registry=registry)
    log.info("metrics on http://%s:%d/metrics (queues %s)", args.host, args.port, queues)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
