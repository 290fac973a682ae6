"""A cascade graded by a judge model (``cascade: {judge: TIER, min_score}``, issue 16): the
judge tier's primary model grades each answer with the ``routing.judge`` protocol (the
simulator answers judge requests deterministically), answers graded below ``min_score`` go
on, and the judge's calls are paid by the rows — in realtime and in provider batch mode."""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from routing.cost import call_cost
from routing.errors import PolicyError
from tests import policies
from tests.workers.pipeline import FAST_BATCH, prompts
from tests.workers.pipeline import run_table as run
from workers.sim.judge import rule_quality
from workers.sim.server import SimServer

JUDGE = {"cascade": {"judge": "expert", "min_score": 0.5}}


def test_the_judge_must_be_a_tier() -> None:
    with pytest.raises(PolicyError, match="cascade judge 'nope' is not a tier"):
        policies.build(tiers={"fast": {"cascade": {"judge": "nope", "min_score": 0.5}}})
    with pytest.raises(PolicyError, match="min_score"):
        policies.build(tiers={"fast": {"cascade": {"judge": "expert"}}})


@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_judged_cascade_escalates_the_answers_the_judge_fails(
    tmp_path: Any, sim: SimServer, mode: str
) -> None:
    policy = policies.in_mode(mode, {"fast": JUDGE}, FAST_BATCH)
    table = prompts(60)
    texts = dict(zip(table["prompt_id"].to_pylist(), table["prompt"].to_pylist(), strict=True))
    _, _, out = run(tmp_path, sim, policy, prompts(60), f"judged-{mode}")
    assert set(out["status"]) == {"ok"}
    started = out.filter((pl.col("tier") == "fast") | (pl.col("escalated_from") == "fast"))
    judge_model = policy.tier("expert").primary
    assert set(started["confidence_source"]) == {f"judge:expert/{judge_model.name}"}
    failed = started.filter(pl.col("confidence") < 0.5)
    passed = started.filter(pl.col("confidence") >= 0.5)
    assert failed.height > 0 and passed.height > 0
    assert set(failed["confidence"]) == {0.2} and set(passed["confidence"]) == {1.0}
    assert set(failed["escalated_from"]) == {"fast"} and set(failed["tier"]) == {"balanced"}
    assert passed["escalated_from"].null_count() == passed.height
    # The grade is the simulator's rule on exactly the question and the fast answer.
    fast_model = policy.tier("fast").primary
    for row in passed.iter_rows(named=True):
        assert rule_quality(texts[row["prompt_id"]], row["response"]) == 1.0
        own = call_cost(fast_model, row["input_tokens"], row["output_tokens"],
                        batch=mode == "batch")  # fmt: skip
        assert row["cost_usd"] > own  # + the judge's call (realtime, on the expert model)
        assert row["attempts"] == 2
    assert all("judge:expert" in r for r in failed["route_reason"])


def test_the_judge_reads_only_prompts_its_tier_may_see(tmp_path: Any, sim: SimServer) -> None:
    """A rule forbids the expert tier for some prompts (as PII or an entitlement would): the
    cascade's expert judge never sees them — no grade, the answer kept, nothing paid for
    it — and exploration does not pick them when expert judges."""
    rules = [
        {"id": "no-expert", "when": {"customer_tier": ["free"]}, "then": {"forbid": ["expert"]}}
    ]
    policy = policies.build(
        tiers={"fast": JUDGE}, rules=rules, explore={"rate": 1.0, "judge": "expert"}
    )
    table = prompts(40)
    tiers = ["free" if i % 2 else "pro" for i in range(40)]
    table = table.append_column("customer_tier", pa.array(tiers, pa.string()))
    _, _, out = run(tmp_path, sim, policy, table, "judge-forbidden")
    free = out.filter((pl.col("customer_tier") == "free") & (pl.col("tier") == "fast"))
    assert free.height > 0
    assert free["confidence"].null_count() == free.height
    assert all("judge expert not allowed" in r for r in free["route_reason"])
    assert free["explored"].null_count() == free.height
    judged = sim.stats()["judge"]["requests"]
    pro = out.filter((pl.col("customer_tier") == "pro") & (pl.col("tier") == "fast"))
    assert judged >= pro.height > 0  # the allowed rows were judged
