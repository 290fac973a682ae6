"""Provider batch mode through the local executor: tiers with ``mode: batch`` served by the
simulated provider's OpenAI Batches API over real HTTP (in-thread), every path of a tier
batch — submit, poll, collect, per-request errors and retries, expiry (``on_expired``),
cancellation at the deadline, a batch cascade in two rounds, budgets, redelivery."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from routing.cost import call_cost
from routing.policy import Policy
from tests import policies
from tests.workers.pipeline import (
    FAST_BATCH,
    make_settings,
    plan_job,
    prompts,
    runtime,
    write_input,
)
from tests.workers.pipeline import run_table as run
from workers import layout, stages
from workers.batches import record as rec
from workers.runtime import Runtime
from workers.sim.server import SimServer


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 15


def batch_policy(
    batch: dict[str, Any] | None = None,
    tiers: dict[str, dict[str, Any]] | None = None,
    **sections: Any,
) -> Policy:
    """The default policy, every tier in batch mode (``batch`` settings), fast retries."""
    changes = policies.every_tier(mode="batch", batch={**FAST_BATCH, **(batch or {})})
    for name, fields in (tiers or {}).items():
        changes[name].update(fields)
    sections.setdefault(
        "retry", {"max_attempts": 3, "base_delay_s": 0.001, "max_delay_s": 0.01, "job_budget": 1}
    )
    return policies.build(tiers=changes, **sections)


def batch_stats(sim: SimServer) -> dict[str, int]:
    stats: dict[str, int] = sim.stats().get("openai_batches", {})
    return stats


def total(frame: pl.DataFrame, column: str = "cost_usd") -> Decimal:
    return sum((v for v in frame[column].to_list() if v is not None), Decimal(0))


# ---------------------------------------------------------------- the whole job


def test_every_row_answered_through_batches_at_half_the_realtime_cost(
    tmp_path: Path, sim: SimServer
) -> None:
    table = prompts(90)
    _, manifest, out = run(tmp_path, sim, batch_policy(), table, "batch")
    stats = batch_stats(sim)
    _, realtime_manifest, realtime = run(tmp_path, sim, policies.build(), table, "realtime")

    assert out.height == 90 and set(out["status"]) == {"ok"}
    assert set(out["mode"]) == {"batch"} and out["batch_id"].null_count() == 0
    assert set(out["round"]) == {1}
    assert set(realtime["mode"]) == {"realtime"} and realtime["batch_id"].null_count() == 90
    # the default models' batch prices are half their realtime prices, tokens identical
    assert total(out) * 2 == total(realtime)
    assert total(out, "baseline_cost_usd") == total(realtime, "baseline_cost_usd")
    assert total(out, "batch_saved_usd") == total(out)
    assert Decimal(manifest["totals"]["cost_usd"]) * 2 == Decimal(
        realtime_manifest["totals"]["cost_usd"]
    )
    # one provider batch per chunk and tier, each request sent once
    assert stats["requests_submitted"] == 90
    assert stats["duplicate_requests"] == 0
    assert stats["batches_created"] == out.select("batch_id").n_unique()


def test_each_batch_row_costs_exactly_its_tokens_at_the_batch_price(
    tmp_path: Path, sim: SimServer
) -> None:
    policy = batch_policy()
    _, _, out = run(tmp_path, sim, policy, prompts(30))
    for row in out.iter_rows(named=True):
        model = policy.tier(row["tier"]).primary
        batch = call_cost(model, row["input_tokens"], row["output_tokens"], batch=True)
        full = call_cost(model, row["input_tokens"], row["output_tokens"])
        assert row["cost_usd"] == batch
        assert row["batch_saved_usd"] == full - batch


def test_a_large_tier_batch_becomes_several_provider_batches(
    tmp_path: Path, sim: SimServer
) -> None:
    policy = batch_policy(batch={"max_requests_per_file": 4})
    _, _, out = run(tmp_path, sim, policy, prompts(40))

    assert set(out["status"]) == {"ok"}
    sizes = out.group_by("batch_id").len()["len"].to_list()
    assert max(sizes) <= 4
    assert batch_stats(sim)["duplicate_requests"] == 0


# ---------------------------------------------------------------- errors, expiry, cancel


def test_errored_requests_are_retried_in_a_next_batch(tmp_path: Path, sim: SimServer) -> None:
    sim.configure(batch_error_rate=0.3)
    _, _, out = run(tmp_path, sim, batch_policy(), prompts(60))
    stats = batch_stats(sim)

    assert stats["errored"] > 0
    assert set(out["status"]) <= {"ok", "failed"}
    retried = out.filter(pl.col("attempts") > 1)
    assert retried.height > 0 and set(retried["mode"]) == {"batch"}
    assert stats["duplicate_requests"] == 0  # a retry is another request id
    assert (
        stats["requests_submitted"]
        == 60 + stats["errored"] - out.filter(pl.col("status") == "failed").height
    )


def test_expired_requests_finish_in_realtime(tmp_path: Path, sim: SimServer) -> None:
    sim.configure(batch_expire_rate=0.5)
    _, _, out = run(tmp_path, sim, batch_policy(batch={"on_expired": "realtime"}), prompts(60))

    assert set(out["status"]) == {"ok"}
    assert set(out["mode"]) == {"batch", "realtime"}
    late = out.filter(pl.col("mode") == "realtime")
    assert late.height == batch_stats(sim)["expired"] > 0
    assert all("served in realtime" in r for r in late["route_reason"])


def test_expired_requests_fail_when_the_policy_says_so(tmp_path: Path, sim: SimServer) -> None:
    sim.configure(batch_expire_rate=0.5)
    _, manifest, out = run(tmp_path, sim, batch_policy(batch={"on_expired": "fail"}), prompts(30))

    failed = out.filter(pl.col("status") == "failed")
    assert failed.height == batch_stats(sim)["expired"] > 0
    assert failed["cost_usd"].to_list() == [Decimal(0).quantize(Decimal("1e-12"))] * failed.height
    assert manifest["rows_out"] == 30


def test_a_batch_past_its_deadline_is_cancelled_and_no_row_is_left(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.configure(batch_processing_s=30)
    policy = batch_policy(batch={"deadline_s": 0.3, "on_expired": "realtime"})
    _, _, out = run(tmp_path, sim, policy, prompts(20))

    assert batch_stats(sim)["cancels"] > 0
    assert out.height == 20 and set(out["status"]) == {"ok"}
    assert set(out["mode"]) == {"realtime"}  # nothing was answered before the cancel


# ---------------------------------------------------------------- rounds


def test_batch_cascade_sends_exactly_the_unsure_answers_to_round_two(
    tmp_path: Path, sim: SimServer
) -> None:
    threshold = 0.6  # the simulator's answers to these prompts score 0.48-0.75
    policy = batch_policy(tiers={"fast": {"cascade": {"min_confidence": threshold}}})
    _, _, out = run(tmp_path, sim, policy, prompts(60))
    fast = out.filter((pl.col("tier") == "fast") | (pl.col("escalated_from") == "fast"))
    unsure = fast.filter(pl.col("confidence") < threshold)
    sure = fast.filter(pl.col("confidence") >= threshold)

    assert unsure.height > 0 and sure.height > 0
    assert set(unsure["round"]) == {2} and set(unsure["escalated_from"]) == {"fast"}
    assert set(unsure["tier"]) == {"balanced"} and set(unsure["mode"]) == {"batch"}
    assert set(sure["round"]) == {1} and sure["escalated_from"].null_count() == sure.height
    fast_model, balanced = policy.tier("fast").primary, policy.tier("balanced").primary
    for row in unsure.iter_rows(named=True):  # both calls paid, at batch prices
        second = call_cost(balanced, row["input_tokens"], row["output_tokens"], batch=True)
        assert row["cost_usd"] > second
        first = row["cost_usd"] - second
        assert first <= call_cost(fast_model, row["input_tokens"], 512, batch=True)


@pytest.mark.parametrize("mode", ["batch", "realtime"])
def test_a_reasoning_model_tier_records_its_thinking(
    tmp_path: Path, sim: SimServer, mode: str
) -> None:
    """A tier on a reasoning model (the simulator rejects max_tokens for it, as OpenAI does):
    its rows are answered, in both modes, with reasoning_tokens recorded and billed."""
    think = {
        "name": "o3-mini", "provider": "sim", "reasoning": True,
        "input_per_mtok": "1.10", "output_per_mtok": "4.40",
        "batch_input_per_mtok": "0.55", "batch_output_per_mtok": "2.20",
    }  # fmt: skip
    tiers: dict[str, dict[str, Any]] = {"fast": {"models": [think]}}
    policy = batch_policy(tiers=tiers) if mode == "batch" else policies.build(tiers=tiers)
    _, _, out = run(tmp_path, sim, policy, prompts(30), f"reasoning-{mode}")
    assert set(out["status"]) == {"ok"}
    fast, others = out.filter(pl.col("tier") == "fast"), out.filter(pl.col("tier") != "fast")
    assert fast.height > 0 and others.height > 0
    assert fast["reasoning_tokens"].min() >= 32  # type: ignore[operator]
    assert (fast["output_tokens"] > fast["reasoning_tokens"]).all()
    assert set(others["reasoning_tokens"]) == {0}
    model = policy.tier("fast").primary
    for row in fast.iter_rows(named=True):
        cost = call_cost(model, row["input_tokens"], row["output_tokens"], batch=mode == "batch")
        assert row["cost_usd"] == cost and set(fast["mode"]) == {mode}


def test_outcomes_kept_in_memory_equal_the_ones_read_back(tmp_path: Path, sim: SimServer) -> None:
    """An engine reads the outcomes it wrote itself from memory, not back from the store:
    what it keeps must be exactly what a later task reads (a cascade job: both rounds)."""
    policy = batch_policy(tiers={"fast": {"cascade": {"min_confidence": 0.6}}})
    rt, _, _ = run(tmp_path, sim, policy, prompts(60))
    root = str(tmp_path / "job-1" / "out" / "job_id=job-1")
    records = rt.storage.list_files(layout.batches_dir(root), ".json")
    assert records
    for uri in records:
        record = rec.load(rt.storage, uri)
        assert record is not None
        stored = rec.read_outcomes(rt.storage, root, record, policy)
        again = rec.outcomes_uri(root, record, 9, "again")
        rec.write_outcomes(rt.storage, again, stored)
        read_back = rec.read_outcomes(rt.storage, root, record, policy)
        kept = rec.read_outcomes(rt.storage, root, record, policy, known={again: stored})
        assert stored and read_back == kept == stored


# ---------------------------------------------------------------- budgets, redelivery


def test_rows_that_do_not_fit_the_budget_are_marked_and_the_cap_holds(
    tmp_path: Path, sim: SimServer
) -> None:
    cap = Decimal("0.002")
    policy = batch_policy(budgets={"on_exhausted": "over_budget", "job": {"usd": str(cap)}})
    rt, _, out = run(tmp_path, sim, policy, prompts(60))

    assert "over_budget" in set(out["status"]) and "ok" in set(out["status"])
    spent = total(out)
    assert spent <= cap
    ledger = rt.guards(policy).ledger
    assert ledger.usage("job:job-1").settled_usd == spent


def test_a_redelivered_dispatch_submits_nothing_twice(tmp_path: Path, sim: SimServer) -> None:
    policy = batch_policy()
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in.parquet", prompts(12))
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=40, policy=policy)
    sink = Recording(rt)
    stages.ingest(rt, plan.context, plan.chunks[0], sink)
    for batch in sink.batches:  # the broker delivers every dispatch twice
        stages.dispatch(rt, plan.context, batch, sink)
    stats = batch_stats(sim)

    assert stats["requests_submitted"] == 12 and stats["duplicate_requests"] == 0
    records = rt.storage.list_files(layout.batches_dir(plan.context.job_root), ".json")
    assert len(records) == len(sink.batches)
    for uri in records:
        record = rec.load(rt.storage, uri)
        assert record is not None and all(b.batch_id for b in record.batches)


class Crash(BaseException):
    """The worker dies here (not an error the engine handles)."""


@pytest.mark.parametrize("when", ["before the create", "after the create"])
def test_a_worker_killed_around_a_create_submits_each_batch_once(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """The record says *submitting* (saved with the plan) before any create; the dispatch
    redelivered after the worker died looks for the batch by its tag first: created once."""
    from workers.batchapi_openai import OpenAIBatchApi

    real, calls = OpenAIBatchApi.submit, {"submit": 0, "find": 0}
    real_find = OpenAIBatchApi.find

    async def dying(self: Any, lines: Any, tag: str) -> str:
        calls["submit"] += 1
        if calls["submit"] == 1:
            if when == "after the create":
                await real(self, lines, tag)
            raise Crash(when)
        return await real(self, lines, tag)

    async def counted_find(self: Any, tag: str, since: float) -> str | None:
        calls["find"] += 1
        return await real_find(self, tag, since)

    monkeypatch.setattr(OpenAIBatchApi, "submit", dying)
    monkeypatch.setattr(OpenAIBatchApi, "find", counted_find)
    policy = batch_policy()
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in.parquet", prompts(12))
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=40, policy=policy)
    sink = Recording(rt)
    stages.ingest(rt, plan.context, plan.chunks[0], sink)
    first = sink.batches[0]
    with pytest.raises(Crash):
        stages.dispatch(rt, plan.context, first, sink)
    stored = rec.load(rt.storage, layout.batch_record(plan.context.job_root, 0, first["tier"]))
    assert stored is not None and [b.status for b in stored.batches] == ["submitting"]
    for batch in sink.batches:
        stages.dispatch(rt, plan.context, batch, sink)
    stats = batch_stats(sim)

    assert stats["requests_submitted"] == 12 and stats["duplicate_requests"] == 0
    assert calls["find"] == 1  # only the redelivered batch is looked for; fresh ones are not
    stored = rec.load(rt.storage, layout.batch_record(plan.context.job_root, 0, first["tier"]))
    assert stored is not None and all(b.batch_id for b in stored.batches)


class Recording:
    """Keeps the routed batches (dispatched by the test) and the poll requests."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.batches: list[dict[str, Any]] = []
        self.polls: list[tuple[int, str]] = []

    def dispatch(self, ctx: Any, batch: dict[str, Any]) -> None:
        self.batches.append(batch)

    def finalize(self, ctx: Any) -> None:
        pass

    def poll(self, ctx: Any, chunk: int, tier: str, delay_s: float) -> None:
        self.polls.append((chunk, tier))


# ---------------------------------------------------------------- Anthropic Message Batches


def test_a_tier_on_anthropic_runs_through_message_batches(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The expert tier on an ``anthropic`` provider: its rows go through the simulator's
    Message Batches API (results in any order, errored requests retried in a next batch),
    at the batch price; the other tiers still go through OpenAI Batches."""
    sim.configure(batch_error_rate=0.2)
    monkeypatch.setenv("CLAUDE_KEY", "sk-ant-test")
    default = policies.default_data()
    claude = {"kind": "anthropic", "base_url": sim.url, "api_key_env": "CLAUDE_KEY"}
    (gpt41,) = next(t for t in default["tiers"] if t["name"] == "expert")["models"]
    model = {**gpt41, "name": "claude-sim", "provider": "claude"}
    policy = batch_policy(
        tiers={"expert": {"models": [model]}},
        providers={**default["providers"], "claude": claude},
    )
    _, _, out = run(tmp_path, sim, policy, prompts(60))
    anthropic = sim.stats().get("anthropic_batches", {})
    expert = out.filter(pl.col("tier") == "expert")

    assert out.height == 60 and set(out["status"]) <= {"ok", "failed"}
    assert expert.height > 0 and set(expert["provider"]) == {"claude"}
    assert anthropic["errored"] > 0 and anthropic["duplicate_requests"] == 0
    failed = expert.filter(pl.col("status") == "failed").height
    assert anthropic["requests_submitted"] == expert.height + anthropic["errored"] - failed
    served = expert.filter(pl.col("status") == "ok")
    assert served.height > 0 and set(served["mode"]) == {"batch"}
    claude_sim = policy.tier("expert").primary
    for row in served.iter_rows(named=True):
        cost = call_cost(claude_sim, row["input_tokens"], row["output_tokens"], batch=True)
        assert row["cost_usd"] == cost
