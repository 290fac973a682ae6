"""Helpers of the tests that serve tier batches.

- Through the local executor and the simulated provider (fallback, breakers, budgets,
  cascade, entitlements): every row starts on one tier (``ConstScorer``), and the policy
  has fast retries and a quick breaker (:func:`policy`, :func:`run`).
- Through the serving engine alone — ``workers.calls.Caller``, what ``dispatch`` runs — on
  a one-tier, one-model policy (:func:`unit_policy`, :func:`serve`), against the simulated
  provider or a scripted HTTP server (:func:`scripted`) for exact status sequences.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import yaml
from aiohttp import web

from routing.plan import JobContext
from routing.policy import Policy, RetrySpec, parse_policy
from tests import policies
from tests.workers.pipeline import make_settings, plan_job, results, write_input
from workers import attempts, local
from workers.aio import IoLoop
from workers.calls import Caller, Guards
from workers.jobstate import MemoryJobTracker
from workers.runtime import Runtime
from workers.served import Row, Served
from workers.settings import ProviderOverride, S3Settings, Settings
from workers.sim.server import SimServer
from workers.storage import Storage

FAST, BALANCED, EXPERT = "gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1"


class ConstScorer:
    """Every prompt gets the same score (so every row starts on one tier)."""

    version = "const"

    def __init__(self, score: float) -> None:
        self._score = score

    def score(self, features: pl.DataFrame, input_tokens: np.ndarray) -> np.ndarray:
        return np.full(features.height, self._score)


def policy(**changes: Any) -> Policy:
    """The default policy with fast retries, a quick breaker and ``changes`` merged in
    (``tiers`` as {name: {field: value}})."""
    retry = {"max_attempts": 2, "base_delay_s": 0.001, "max_delay_s": 0.01}
    breaker = {"failures": 3, "cooldown_s": 60, "min_calls": 1000}
    return policies.build(**{"retry": retry, "breaker": breaker, **changes})


def prompts(n: int, words: int = 12) -> pa.Table:
    return pa.table(
        {
            "prompt_id": [f"p{i:03d}" for i in range(n)],
            "prompt": [
                f"Question {i}: " + " ".join(f"w{i}x{j}" for j in range(words)) for i in range(n)
            ],
        }
    )


def run(
    tmp_path: Path, sim: SimServer, pol: Policy, score: float, table: pa.Table
) -> tuple[Runtime, dict[str, Any], pl.DataFrame]:
    """Run ``table`` as one job under ``pol``, every prompt scored ``score``."""
    rt = Runtime(
        settings=make_settings(sim),
        storage=Storage(S3Settings()),
        tracker=MemoryJobTracker(),
        scorer=ConstScorer(score),
    )
    uri = write_input(tmp_path / "in" / "p.parquet", table)
    plan = plan_job(rt, uri, tmp_path / "out", policy=pol)
    manifest = local.run_job(rt, plan)
    out = results(rt, plan)
    assert out.height == table.num_rows == manifest["rows_out"]
    return rt, manifest, out


# ---------------------------------------------------------------- the engine alone

MODEL = "m-1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def unit_policy(
    base_url: str = "simulated",
    kind: str = "openai",
    *,
    max_attempts: int = 3,
    max_delay_s: float = 1.0,
    concurrency: int = 4,
    breaker: dict[str, Any] | None = None,
    model: str = MODEL,
    rpm: int | None = None,
    tpm: int | None = None,
    cache: dict[str, Any] | None = None,
    budgets: dict[str, Any] | None = None,
    reasoning: bool = False,
    cache_read: str | None = None,
    **provider: Any,
) -> Policy:
    """One provider ``sim`` of ``kind``, one tier ``only`` with one ``model``; retries
    without delay, the job's retry budget and the breaker out of the way, no cache (each
    test sees the transport's behaviour, not an earlier answer) unless ``cache`` says so."""
    data = {
        "providers": {"sim": {"kind": kind, "base_url": base_url, **provider}},
        "tiers": [
            {
                "name": "only",
                "models": [
                    {
                        "name": model,
                        "provider": "sim",
                        "input_per_mtok": "1",
                        "output_per_mtok": "2",
                        "rpm": rpm,
                        "tpm": tpm,
                        "reasoning": reasoning,
                        "cache_read_per_mtok": cache_read,
                    }
                ],
                "concurrency": concurrency,
            }
        ],
        "retry": {
            "max_attempts": max_attempts,
            "base_delay_s": 0.0,
            "max_delay_s": max_delay_s,
            "job_budget": 10,
        },
        "breaker": breaker or {"failures": 1000, "min_calls": 1000},
        "cache": cache or {"enabled": False},
        "budgets": budgets or {},
    }
    return parse_policy(yaml.safe_dump(data))


def unit_settings(base_url: str | None = None, **kwargs: Any) -> Settings:
    providers = {"sim": ProviderOverride(base_url=base_url)} if base_url else {}
    return Settings(_env_file=None, providers=providers, **kwargs)  # type: ignore[call-arg]


def row(prompt: str, system: str | None = None, max_output_tokens: int | None = 64) -> Row:
    return Row(
        ref=f"c0/r{abs(hash((prompt, system))) % 10**9}",
        prompt=prompt,
        system=system,
        max_output_tokens=max_output_tokens,
        tenant="t",
        input_tokens=len(prompt.split()),
        allowed=None,
    )


def questions(n: int) -> list[Row]:
    return [row(f"Question number {i}: what is {i} + {i}?") for i in range(n)]


def serve(
    policy: Policy,
    settings: Settings,
    rows: Sequence[Row],
    guards: Guards | None = None,
    job_id: str = "unit",
) -> list[Served]:
    """``rows`` through the realtime engine on the policy's first tier (fresh guards unless
    given: in memory, or in Redis when ``settings`` has a broker), as ``dispatch`` runs it:
    on this process's I/O loop."""
    ctx = JobContext(
        job_id=job_id,
        job_root="/tmp/unused",
        tenant="t",
        policy_uri="unused",
        policy_version=policy.version,
        total_chunks=1,
        rows_total=len(rows),
    )
    guards = guards or Guards.for_policy(settings, policy)
    return Caller(policy, settings, guards, ctx, policy.tiers[0]).run(rows)


def serve_one(policy: Policy, settings: Settings, one: Row) -> Served:
    (served,) = serve(policy, settings, [one])
    return served


@contextmanager
def scripted(routes: dict[str, Handler]) -> Iterator[str]:
    """An aiohttp server of ``routes`` (path → POST handler) on its own event loop thread;
    yields its root URL (append ``/v1`` for an OpenAI base URL)."""
    loop = IoLoop()
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=1.0)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    try:
        yield loop.run(start())
    finally:
        loop.run(runner.cleanup())
        loop.close()


Delays = list[tuple[int, float | None, float]]


def record_delays(monkeypatch: pytest.MonkeyPatch) -> Delays:
    """Every backoff decision of the attempt loop: (attempt, the provider's Retry-After
    hint, the delay slept)."""
    seen: Delays = []
    real = attempts.backoff_delay

    def recording(
        attempt: int, spec: RetrySpec, retry_after: float | None, rng: random.Random
    ) -> float:
        delay = real(attempt, spec, retry_after, rng)
        seen.append((attempt, retry_after, delay))
        return delay

    monkeypatch.setattr(attempts, "backoff_delay", recording)
    return seen
