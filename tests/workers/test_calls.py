"""Serving a tier batch through the local executor and the simulated provider over HTTP:
fallback models and tiers behind circuit breakers, budgets (over_budget and downgrade),
the job's retry budget, cascade escalation and input truncation."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from routing.cost import call_cost
from routing.policy import Policy
from tests.workers.pipeline import make_settings, plan_job, results, write_input
from tests.workers.serving import BALANCED, EXPERT, ConstScorer, policy, prompts, run
from workers import local
from workers.jobstate import MemoryJobTracker
from workers.runtime import Runtime
from workers.settings import S3Settings
from workers.sim.server import SimServer
from workers.storage import Storage


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 11  # the simulated provider's seed (tests/conftest.py)


def test_breaker_opens_and_the_next_model_of_the_tier_serves(
    tmp_path: Path, sim: SimServer
) -> None:
    backup = {
        "name": BALANCED,
        "provider": "sim",
        "input_per_mtok": "0.4",
        "output_per_mtok": "1.6",
    }
    primary = {"name": EXPERT, "provider": "sim", "input_per_mtok": "2", "output_per_mtok": "8"}
    pol = policy(tiers={"expert": {"models": [primary, backup], "concurrency": 1}})
    sim.configure(fail_models=[EXPERT])
    _, _, out = run(tmp_path, sim, pol, 0.99, prompts(30))
    assert (out["status"] == "ok").all()
    assert set(out["model"]) == {BALANCED} and set(out["tier"]) == {"expert"}
    assert set(out["fallback_from"]) == {f"sim/{EXPERT}"}
    # one request at a time: the breaker opened after exactly `failures` calls
    assert sim.stats()["requests_by_model"][EXPERT] == pol.breaker.failures


def test_fallback_tier_serves_while_the_tier_is_down(tmp_path: Path, sim: SimServer) -> None:
    pol = policy(tiers={"expert": {"fallback": ["balanced"], "concurrency": 4}})
    sim.configure(fail_models=[EXPERT])
    _, _, out = run(tmp_path, sim, pol, 0.99, prompts(40))
    assert (out["status"] == "ok").all()
    assert set(out["tier"]) == {"balanced"} and set(out["model"]) == {BALANCED}
    assert set(out["fallback_from"]) == {f"sim/{EXPERT}"}
    # at most `concurrency` calls were in flight when the breaker opened, each tried twice
    assert sim.stats()["requests_by_model"][EXPERT] <= pol.breaker.failures + 4 * 2


def test_job_budget_marks_the_rest_over_budget_and_never_overspends(
    tmp_path: Path, sim: SimServer
) -> None:
    cap = Decimal("0.05")
    pol = policy(budgets={"job": {"usd": str(cap)}, "on_exhausted": "over_budget"})
    rt, manifest, out = run(tmp_path, sim, pol, 0.99, prompts(60, words=300))
    by_status = manifest["rows_by_status"]
    assert by_status["ok"] > 0 and by_status["over_budget"] > 0
    assert by_status["ok"] + by_status["over_budget"] == 60
    spent = sum(out["cost_usd"].to_list(), Decimal(0))
    assert spent <= cap
    over = out.filter(pl.col("status") == "over_budget")
    assert over["response"].is_null().all() and (over["cost_usd"] == 0).all()
    assert over["error"].str.contains("over budget").all()
    assert rt.guards(pol).ledger.usage(f"job:{manifest['job_id']}").settled_usd == spent


def test_downgrade_when_the_tier_budget_runs_out(tmp_path: Path, sim: SimServer) -> None:
    pol = policy(budgets={"tier": {"expert": {"usd": "0.02"}}, "on_exhausted": "downgrade"})
    _, _, out = run(tmp_path, sim, pol, 0.99, prompts(40, words=300))
    assert (out["status"] == "ok").all()
    tiers = out["tier"].value_counts().to_dict(as_series=False)
    assert set(tiers["tier"]) == {"expert", "balanced"}
    downgraded = out.filter(pl.col("tier") == "balanced")
    assert downgraded["route_reason"].str.ends_with("budget: expert → balanced").all()
    expert = out.filter(pl.col("tier") == "expert")
    assert sum(expert["cost_usd"].to_list(), Decimal(0)) <= Decimal("0.02")


def test_job_retry_budget_bounds_the_extra_calls(tmp_path: Path, sim: SimServer) -> None:
    pol = policy(
        retry={"max_attempts": 5, "base_delay_s": 0.001, "max_delay_s": 0.01, "job_budget": 0.1},
        breaker={"failures": 10_000, "min_calls": 10_000},
    )
    sim.configure(error_rate=1.0)
    _, _, out = run(tmp_path, sim, pol, 0.0, prompts(50))
    assert (out["status"] == "failed").all()
    assert sim.stats()["requests"] <= 50 + 5  # ≤ 10 % of 50 prompts retried
    assert out["error"].str.contains("retry budget exhausted").any()


def test_cascade_escalates_low_confidence_answers(tmp_path: Path, sim: SimServer) -> None:
    pol = policy(tiers={"fast": {"cascade": {"min_confidence": 0.62}}})
    _, _, out = run(tmp_path, sim, pol, 0.0, prompts(80))
    assert (out["status"] == "ok").all()
    assert out["confidence"].is_not_null().all()
    low = out.filter(pl.col("confidence") < 0.62)
    high = out.filter(pl.col("confidence") >= 0.62)
    assert low.height > 0 and high.height > 0
    assert (low["escalated_from"] == "fast").all() and (low["tier"] == "balanced").all()
    assert high["escalated_from"].is_null().all() and (high["tier"] == "fast").all()
    # both calls are paid: more than the balanced call alone
    balanced = pol.tier("balanced").primary
    for row in low.iter_rows(named=True):
        alone = call_cost(balanced, row["input_tokens"], row["output_tokens"])
        assert row["cost_usd"] > alone
        assert row["attempts"] == 2
        assert "confidence" in row["route_reason"]


def test_truncate_input_keeps_the_end_of_the_prompt(tmp_path: Path, sim: SimServer) -> None:
    pol = policy(tiers={"fast": {"max_input_tokens": 40, "truncate_input": True}})
    table = pa.table(
        {
            "prompt_id": ["long"],
            "prompt": [
                " ".join(f"filler{j}" for j in range(200)) + " What is the capital of France?"
            ],
        }
    )
    _, _, out = run(tmp_path, sim, pol, 0.0, table)
    row = out.row(0, named=True)
    assert row["status"] == "ok" and row["tier"] == "fast"
    assert row["input_tokens"] <= 40


def _run_on(
    rt: Runtime, tmp_path: Path, pol: Policy, table: pa.Table, job: str, tenant: str
) -> pl.DataFrame:
    uri = write_input(tmp_path / job / "p.parquet", table)
    plan = plan_job(rt, uri, tmp_path / "out", job_id=job, tenant=tenant, policy=pol)
    local.run_job(rt, plan)
    return results(rt, plan)


def test_second_run_is_answered_from_the_cache(tmp_path: Path, sim: SimServer) -> None:
    pol = policy(tiers={"fast": {"cascade": {"min_confidence": 0.5}}})
    rt = Runtime(
        settings=make_settings(sim),
        storage=Storage(S3Settings()),
        tracker=MemoryJobTracker(),
        scorer=ConstScorer(0.0),
    )
    table = prompts(40)
    first = _run_on(rt, tmp_path, pol, table, "first", "acme")
    calls = sim.stats()["requests"]
    assert not first["cache_hit"].any() and calls >= 40
    # whitespace and Unicode width differences normalise to the same key
    again = table.set_column(
        1, "prompt", pa.array([f"  {p} " for p in table["prompt"].to_pylist()])
    )
    second = _run_on(rt, tmp_path, pol, again, "second", "acme")
    assert sim.stats()["requests"] == calls  # no provider call at all
    assert second["cache_hit"].all() and (second["status"] == "ok").all()
    assert (second["cost_usd"] == 0).all() and (second["baseline_cost_usd"] > 0).all()
    assert second["response"].to_list() == first["response"].to_list()
    # the cached logprobs keep the cascade's decisions identical
    assert second["escalated_from"].to_list() == first["escalated_from"].to_list()
    # another tenant does not see acme's answers
    other = _run_on(rt, tmp_path, pol, table, "other", "globex")
    assert not other["cache_hit"].any() and sim.stats()["requests"] > calls


def test_cache_shared_across_tenants_and_disabled(tmp_path: Path, sim: SimServer) -> None:
    for shared, expect_hits in ((True, True), (False, False)):
        pol = policy(cache={"enabled": True, "shared_across_tenants": shared})
        rt = Runtime(
            settings=make_settings(sim),
            storage=Storage(S3Settings()),
            tracker=MemoryJobTracker(),
            scorer=ConstScorer(0.0),
        )
        _run_on(rt, tmp_path, pol, prompts(10), f"a-{shared}", "acme")
        out = _run_on(rt, tmp_path, pol, prompts(10), f"b-{shared}", "globex")
        assert bool(out["cache_hit"].all()) is expect_hits
    pol = policy(cache={"enabled": False})
    rt = Runtime(
        settings=make_settings(sim),
        storage=Storage(S3Settings()),
        tracker=MemoryJobTracker(),
        scorer=ConstScorer(0.0),
    )
    _run_on(rt, tmp_path, pol, prompts(10), "c1", "acme")
    out = _run_on(rt, tmp_path, pol, prompts(10), "c2", "acme")
    assert not out["cache_hit"].any()


def test_manifest_counts_what_the_cache_and_dedupe_saved(tmp_path: Path, sim: SimServer) -> None:
    pol = policy()
    rt = Runtime(
        settings=make_settings(sim),
        storage=Storage(S3Settings()),
        tracker=MemoryJobTracker(),
        scorer=ConstScorer(0.0),
    )
    base = prompts(12)
    doubled = pa.concat_tables(
        [base, base.set_column(0, "prompt_id", pa.array([f"dup{i}" for i in range(12)]))]
    )
    _run_on(rt, tmp_path, pol, base, "warm", "acme")
    uri = write_input(tmp_path / "again" / "p.parquet", doubled)
    plan = plan_job(rt, uri, tmp_path / "out", job_id="again", tenant="acme", policy=pol)
    manifest = local.run_job(rt, plan)
    out = results(rt, plan)
    totals = manifest["totals"]
    fast = pol.tier("fast").primary
    hits = out.filter(pl.col("cache_hit") & pl.col("dedupe_of").is_null())
    dups = out.filter(pl.col("dedupe_of").is_not_null())
    assert totals["cache_hits"] == hits.height == 12
    assert totals["duplicates_answered"] == dups.height == 12
    for frame, key in ((hits, "cache_saved_usd"), (dups, "dedupe_saved_usd")):
        expected = sum(
            (
                call_cost(fast, r["input_tokens"], r["output_tokens"])
                for r in frame.iter_rows(named=True)
            ),
            Decimal(0),
        )
        assert Decimal(totals[key]) == expected > 0
    assert Decimal(totals["cost_usd"]) == 0  # nothing was paid for this job


def test_every_engine_outcome_ends_as_one_row_status() -> None:
    """The engine's internal outcomes map to the row vocabulary in one place; a tier that
    stayed unavailable (no fallback took the row) ends as ``failed``."""
    from routing.schema import Status
    from workers.served import Outcome, final_status

    assert {o: final_status(o) for o in Outcome} == {
        Outcome.OK: Status.OK,
        Outcome.FAILED: Status.FAILED,
        Outcome.UNAVAILABLE: Status.FAILED,
        Outcome.OVER_BUDGET: Status.OVER_BUDGET,
    }
