"""Helpers of the tests that run the pipeline stages through the local executor: no broker,
local files, a ``MemoryJobTracker`` and the simulated provider over real HTTP (in-thread,
the ``sim`` fixture of tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from routing.plan import ChunkRef, JobContext, JobPlan
from routing.policy import Policy
from tests import policies
from workers import layout, local, stages
from workers.finalize import finalize
from workers.jobs.plan import build_plan
from workers.jobstate import MemoryJobTracker
from workers.runtime import Runtime
from workers.settings import ProviderOverride, S3Settings, Settings
from workers.sim.server import SimServer
from workers.storage import Storage

MAX_CHARS, MAX_INPUT_TOKENS = 3000, 300


def make_policy(max_attempts: int = 2) -> Policy:
    """The default policy with small input limits, fast retries and breakers out of the
    way (tests/workers/test_calls.py covers the job's retry budget and the breakers)."""
    return policies.build(
        tiers=policies.every_tier(max_input_tokens=MAX_INPUT_TOKENS),
        limits={"max_prompt_chars": MAX_CHARS},
        retry={
            "max_attempts": max_attempts,
            "base_delay_s": 0.001,
            "max_delay_s": 0.01,
            "job_budget": 1.0,  # every prompt may use all its attempts
        },
        breaker={"failures": 1000, "min_calls": 1000},
    )


POLICY = make_policy()


def make_settings(sim: SimServer | None = None, **kwargs: Any) -> Settings:
    providers = {"sim": ProviderOverride(base_url=sim.base_url)} if sim else {}
    return Settings(_env_file=None, providers=providers, **kwargs)  # type: ignore[call-arg]


def runtime(settings: Settings) -> Runtime:
    return Runtime(settings=settings, storage=Storage(S3Settings()), tracker=MemoryJobTracker())


def write_input(path: Path, table: pa.Table, row_group_size: int | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return str(path)


def plan_job(
    rt: Runtime,
    input_uri: str,
    out: Path,
    rows_per_chunk: int = 1000,
    job_id: str = "job-1",
    tenant: str | None = None,
    policy: Policy = POLICY,
) -> JobPlan:
    return build_plan(rt.storage, policy, input_uri, str(out), rows_per_chunk, job_id, tenant)


def results(rt: Runtime, plan: JobPlan) -> pl.DataFrame:
    df = pl.from_arrow(rt.storage.read_parquet(layout.results_dir(plan.context.job_root)))
    assert isinstance(df, pl.DataFrame)
    return df.sort("input_file", "input_row")


class LossySink:
    """Dispatches inline, but drops the batches of ``lose`` tiers (lost messages)."""

    def __init__(self, rt: Runtime, lose: set[str]) -> None:
        self.rt, self.lose = rt, lose
        self.ingested: list[tuple[int, list[str] | None]] = []
        self.finalized = 0

    def dispatch(self, ctx: JobContext, batch: dict[str, Any]) -> None:
        if batch["tier"] not in self.lose:
            stages.dispatch(self.rt, ctx, batch, self)

    def finalize(self, ctx: JobContext) -> None:
        self.finalized += 1
        finalize(self.rt, ctx)

    def ingest(self, ctx: JobContext, chunk: ChunkRef, only: list[str] | None) -> None:
        self.ingested.append((chunk.chunk, only))
        stages.ingest(self.rt, ctx, chunk, self, only)


FAST_BATCH: dict[str, Any] = {"poll_s": 0.05, "deadline_s": 60}  # batch mode, quick


def prompts(n: int, offset: int = 0) -> pa.Table:
    """``n`` distinct prompts of mixed difficulty (every tier gets some)."""
    texts = []
    for i in range(offset, offset + n):
        if i % 3 == 0:
            texts.append(f"What is {i} plus {i + 1}?")
        elif i % 3 == 1:
            texts.append(f"Explain why case {i} of the sky looks blue, compare with sunsets.")
        else:
            texts.append(
                f"Prove theorem {i}: derive a general result, analyse three proof styles and "
                "design a step by step lesson plan in JSON with exactly 5 parts."
            )
    return pa.table({"prompt_id": [f"p{i}" for i in range(offset, offset + n)], "prompt": texts})


def run_table(
    tmp_path: Path, sim: SimServer, policy: Policy, table: pa.Table, job_id: str = "job-1"
) -> tuple[Runtime, dict[str, Any], pl.DataFrame]:
    """Plan and run ``table`` as one job (chunks of 40 rows) on the local executor: its
    runtime, manifest and result rows."""
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / job_id / "in.parquet", table)
    plan = plan_job(
        rt, uri, tmp_path / job_id / "out", rows_per_chunk=40, job_id=job_id, policy=policy
    )
    manifest = local.run_job(rt, plan)
    return rt, manifest, results(rt, plan)


def with_reference(n: int) -> pa.Table:
    """:func:`prompts` with a ``reference`` column (some rows without one)."""
    table = prompts(n)
    refs = [str(i * 2 + 1) if i % 4 else None for i in range(n)]
    return table.append_column("reference", pa.array(refs, pa.string()))
