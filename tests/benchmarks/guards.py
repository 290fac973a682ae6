"""Provider calls per second of one worker process with the guards in Redis 1 ms away:
``python -m tests.benchmarks.guards``.

The realtime serving engine (``workers.calls.Caller``, what ``dispatch`` runs) serves N
distinct prompts of the ``fast`` tier (concurrency 64) against the simulated provider in its
own process (no simulated latency), with every guard on the path: the response cache
(enabled, every prompt a miss), a capped budget (reserve, settle, the budget metric), the
breaker, the global rate limiter (rpm / tpm set high enough never to wait) and the retry
budget. Side by side in the same run, in this order:

- ``memory``: the guards in memory (the local executor's) — the reference: no Redis;
- ``redis``: the guards in a private ``redis-server`` on loopback;
- ``redis_1ms``: the same Redis behind a small asyncio TCP proxy (its own process) that
  delays every chunk by ``--latency-ms`` (default 1 ms) in each direction, so each round
  trip costs ≥ 2 ms more — Redis on another host.

Each variant first serves 200 warm-up prompts (clients, connections), then N timed ones.
Prints one JSON line: ``*_calls_per_s`` (provider calls / wall s), ``*_cpu_ms_per_call``
(this process's CPU), ``redis_round_trips_per_prompt`` (requests the proxy forwarded to
Redis during the timed ``redis_1ms`` run / prompts; a pipeline is one), ``redis_1ms_rtt_ms``
(median ``PING`` through the proxy, measured before the run) and ``ratio_1ms`` =
``redis_1ms`` / ``memory``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from routing.plan import JobContext
from routing.policy import Policy
from tests import policies, services
from workers.calls import Caller, Guards
from workers.served import Row
from workers.settings import ProviderOverride, Settings

ROOT = Path(__file__).resolve().parents[2]
WARMUP = 200
TIER = "fast"
_PROXIES: dict[str, int] = {}  # proxy URL → its port


# ---------------------------------------------------------------- the latency proxy


_requests = [0]  # chunks sent from the clients to Redis: the round trips


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, upstream: bool
) -> None:
    """Forward every chunk ``delay`` seconds after it arrived, in order, without holding
    the chunks behind it (a link with latency, not a slow link)."""
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def drain() -> None:
        while True:
            while not queue:
                arrived.clear()
                await arrived.wait()
            due, chunk = queue[0]
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            queue.popleft()
            if not chunk:
                writer.close()
                return
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(drain())
    while True:
        chunk = await reader.read(65536)
        _requests[0] += upstream and bool(chunk)
        queue.append((loop.time() + delay, chunk))
        arrived.set()
        if not chunk:
            break
    await sender


async def _proxy(listen: int, target: int, delay: float) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        with contextlib.suppress(ConnectionError):
            await asyncio.gather(
                _pump(reader, up_writer, delay, True), _pump(up_reader, writer, delay, False)
            )

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{_requests[0]}\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", listen)
    counter = await asyncio.start_server(count, "127.0.0.1", listen + 1)
    async with server, counter:
        await server.serve_forever()


@contextlib.contextmanager
def latency_proxy(workdir: Path, target_url: str, delay_ms: float) -> Iterator[str]:
    """This module as a subprocess in ``--proxy`` mode in front of ``target_url``."""
    port = services.free_port(pair_offset=1)  # and port + 1: the round-trip counter
    target = int(target_url.rsplit(":", 1)[1].split("/")[0])
    cmd = [sys.executable, "-m", "tests.benchmarks.guards", "--proxy", str(port), str(target)]
    proc = services.start(
        [*cmd, "--latency-ms", str(delay_ms)], workdir / "proxy.log", "proxy", cwd=ROOT
    )
    url = f"redis://127.0.0.1:{port}/0"
    _PROXIES[url] = port
    with services.stopping(proc):
        services.wait_until(lambda: bool(redis.Redis.from_url(url).ping()), 20, "proxy", proc)
        yield url


# ---------------------------------------------------------------- one variant


def bench_policy() -> Policy:
    tier = policies.default_data()["tiers"][0]
    model = {**tier["models"][0], "rpm": 100_000_000, "tpm": 2_000_000_000}
    return policies.build(
        tiers={TIER: {"models": [model], "concurrency": 64}},
        budgets={"job": {"usd": "1000000"}},
    )


def rows(n: int, tag: str) -> list[Row]:
    return [
        Row(
            ref=f"c0/r{i}",
            prompt=f"{tag} question {i}: what is {i} plus {i}? Answer in one short sentence.",
            system=None,
            max_output_tokens=32,
            tenant="bench",
            input_tokens=20,
            allowed=None,
        )
        for i in range(n)
    ]


def serve(policy: Policy, settings: Settings, guards: Guards, job: str, batch: list[Row]) -> int:
    ctx = JobContext(
        job_id=job,
        job_root="/tmp/unused",
        tenant="bench",
        policy_uri="unused",
        policy_version=policy.version,
        total_chunks=1,
        rows_total=len(batch),
    )
    served = Caller(policy, settings, guards, ctx, policy.tier(TIER)).run(batch)
    bad = [s.done.error for s in served if s.status != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} prompts failed, e.g. {bad[0]}")
    return sum(s.calls for s in served)


def variant(
    name: str, policy: Policy, sim_url: str, n: int, redis_url: str | None
) -> dict[str, float]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        broker_url=redis_url,
        providers={"sim": ProviderOverride(base_url=sim_url)},
    )
    guards = Guards.for_policy(settings, policy)
    serve(policy, settings, guards, f"warm-{name}", rows(WARMUP, f"warm-{name}"))
    before = _round_trips(redis_url)
    cpu, start = time.process_time(), time.perf_counter()
    calls = serve(policy, settings, guards, f"bench-{name}", rows(n, name))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    out = {
        f"{name}_calls_per_s": round(calls / wall, 1),
        f"{name}_cpu_ms_per_call": round(cpu * 1000 / calls, 3),
        f"{name}_s": round(wall, 2),
    }
    if name == "redis_1ms":
        out["redis_round_trips_per_prompt"] = round((_round_trips(redis_url) - before) / n, 2)
    return out


def _round_trips(url: str | None) -> int:
    """Chunks the proxy at ``url`` forwarded to Redis so far (0 without the proxy)."""
    if url is None or url not in _PROXIES:
        return 0
    with socket.create_connection(("127.0.0.1", _PROXIES[url] + 1), timeout=5) as conn:
        return int(conn.makefile().readline())


def _rtt_ms(url: str, n: int = 200) -> float:
    client = redis.Redis.from_url(url)
    client.ping()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        client.ping()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def _git_rev() -> str:
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--proxy", nargs=2, type=int, metavar=("LISTEN", "TARGET"))
    args = parser.parse_args(argv)
    if args.proxy:
        asyncio.run(_proxy(args.proxy[0], args.proxy[1], args.latency_ms / 1000))
        return 0
    policy = bench_policy()
    result: dict[str, Any] = {"benchmark": "guards", "prompts": args.prompts}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-guards-") as tmp:
        work = Path(tmp)
        sim_url, sim = services.start_sim_provider(work)
        redis_url, server = services.start_redis(work)
        with (
            services.stopping(sim, server),
            latency_proxy(work, redis_url, args.latency_ms) as slow_url,
        ):
            result["redis_latency_ms_each_way"] = args.latency_ms
            result["redis_1ms_rtt_ms"] = _rtt_ms(slow_url)
            result["redis_rtt_ms"] = _rtt_ms(redis_url)
            result.update(variant("memory", policy, sim_url, args.prompts, None))
            result.update(variant("redis", policy, sim_url, args.prompts, redis_url))
            result.update(variant("redis_1ms", policy, sim_url, args.prompts, slow_url))
    result["ratio_1ms"] = round(result["redis_1ms_calls_per_s"] / result["memory_calls_per_s"], 3)
    result["concurrency"] = policy.tier(TIER).concurrency
    result["loadavg_1m_start"] = round(load, 2)
    result["git_rev"] = _git_rev()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
