"""A cascade graded by a judge model (``cascade: {judge: TIER, min_score}``, issue 16): the
judge tier's primary model grades each answer with the ``routing.judge`` protocol (the
simulator answers judge requests deterministically), answers graded below ``min_score`` go
on, and the judge's calls are paid by the rows — in realtime and in provider batch mode."""

from __future__ import annotations

from typing import Any

import polars as pl
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
