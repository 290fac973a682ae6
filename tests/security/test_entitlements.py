"""Entitlements cannot be exceeded by prompt content: 1,000 adversarial prompts (padding,
fake code blocks, "this is a legal matter", prompt injection aimed at the classifier,
complexity gaming tricks) across customer tiers, scored by the heuristic and by a learned
router trained on the shared labels — through routing and through a real ``batch-router
run`` job: 0 rows above the cap. Fallback, cascade and budget downgrade stay within it
too (the allowed-tier mask dispatch obeys)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from routing.classify import HeuristicScorer, Scorer
from routing.learned.artifact import load_scorer, save_scorer
from routing.learned.config import TrainConfig
from routing.learned.training import fit_scorer
from routing.policy import Policy, load_policy, parse_policy
from routing.router import ALLOWED, route_batch
from routing.rules import allowed_tiers
from tests import data, policies
from tests.cli import clean_env, run_cli
from tests.security.gamed import adversarial_prompts
from tests.workers.serving import BALANCED, EXPERT, FAST, policy, prompts, run
from workers.sim.server import SimServer

pytestmark = pytest.mark.security

ENTITLEMENTS = {"max_tier": {"free": "fast", "pro": "balanced"}, "default": "fast"}
CUSTOMERS = ["free", "pro", "enterprise", None, "unknown-tier"]
# enterprise is not listed: the default (fast) applies, as to rows without a customer tier
CAP = {
    "free": "fast",
    "pro": "balanced",
    "enterprise": "fast",
    None: "fast",
    "unknown-tier": "fast",
}
LABELS = data.LABELS


def adversarial_table(n: int = 1000) -> pa.Table:
    attacks = adversarial_prompts(n)
    return pa.table(
        {
            "prompt_id": [f"adv-{i:04d}" for i in range(n)],
            "prompt": [p for _, p in attacks],
            "customer_tier": [CUSTOMERS[i % len(CUSTOMERS)] for i in range(n)],
            "domain": ["legal" if a == "legal" else None for a, _ in attacks],
        }
    )


def entitled_policy(**extra: Any) -> Policy:
    return policies.build(source="entitled.yaml", **{"entitlements": ENTITLEMENTS, **extra})


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A learned router trained on the shared GSM8K and MMLU labels (two models)."""
    files = [LABELS / "gsm8k.parquet", LABELS / "mmlu.parquet"]
    data.require(*files)
    frame = pl.concat(
        [pl.read_parquet(f).filter(pl.col("prompt_id").hash(7) % 8 == 0) for f in files]
    )
    wide = frame.pivot("model", index=["prompt_id", "prompt", "input_tokens"], values="quality")
    models = sorted(m for m in wide.columns if m not in ("prompt_id", "prompt", "input_tokens"))
    weak = [m for m in models if "gpt-4" not in m] + [m for m in models if "gpt-4" in m]
    quality = wide.select(weak).fill_null(0).to_numpy()
    model = fit_scorer(
        wide["prompt"].to_list(),
        wide["input_tokens"].to_numpy(),
        quality,
        config=TrainConfig(label="needs", dataset_offsets=False),
        tiers=[["fast"], ["expert"]],
    )
    path = tmp_path_factory.mktemp("learned") / "router.zip"
    save_scorer(model, path)
    return path


def _assert_within_caps(out: dict[str, list[Any]], pol: Policy) -> None:
    order = pol.tier_names
    above = [
        (pid, customer, tier)
        for pid, customer, tier in zip(
            out["prompt_id"], out["customer_tier"], out["tier"], strict=True
        )
        if tier and order.index(tier) > order.index(CAP[customer])
    ]
    assert above == []
    for customer, mask in zip(out["customer_tier"], out[ALLOWED], strict=True):
        allowed = allowed_tiers(mask, order)
        assert max(order.index(t) for t in allowed) <= order.index(CAP[customer])


@pytest.mark.parametrize("scorer_kind", ["heuristic", "learned"])
@pytest.mark.parametrize("gaming_cap", [None, "balanced"])
def test_adversarial_prompts_never_route_above_the_entitlement(
    scorer_kind: str, gaming_cap: str | None, request: pytest.FixtureRequest
) -> None:
    scorer: Scorer = (
        HeuristicScorer()
        if scorer_kind == "heuristic"
        else load_scorer(request.getfixturevalue("learned"))
    )
    pol = entitled_policy(gaming={"cap": gaming_cap})
    table = adversarial_table()
    out = route_batch(table, pol, scorer).to_pydict()
    assert len(out["tier"]) == 1000
    _assert_within_caps(out, pol)
    # the attacks do push scores up: without entitlements many would go to a dearer tier
    free = route_batch(table, load_policy(), scorer).to_pydict()
    pushed = sum(t != "fast" for t in free["tier"])
    print(f"\n{scorer_kind}: {pushed}/1000 adversarial prompts scored above fast unentitled")
    if scorer_kind == "heuristic":
        assert pushed > 100


def test_a_real_job_of_adversarial_prompts_stays_within_entitlements(
    tmp_path: Path, learned: Path
) -> None:
    policy_path = policies.write(
        tmp_path / "policy.yaml",
        entitlements=ENTITLEMENTS,
        classifier={"kind": "learned", "path": str(learned)},
    )
    src = tmp_path / "adversarial.parquet"
    pq.write_table(adversarial_table(), src)
    proc = run_cli(
        "run", str(src), "--output", "out", "--policy", str(policy_path), "--json",
        cwd=tmp_path, env=clean_env(), timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = pl.read_parquet(next((tmp_path / "out").glob("job_id=*/results")))
    assert out.height == 1000
    assert out["classifier_version"].str.starts_with("learned").all()
    order = parse_policy(policy_path.read_text()).tier_names
    for row in out.iter_rows(named=True):
        if row["tier"] is not None:
            assert order.index(row["tier"]) <= order.index(CAP[row["customer_tier"]]), row
    assert (out["status"] == "ok").sum() >= 990


# ---------------------------------------------------------------- dispatch moves


def _customers(table: pa.Table, customers: list[str]) -> pa.Table:
    column = [customers[i % len(customers)] for i in range(table.num_rows)]
    return table.append_column("customer_tier", pa.array(column, pa.string()))


def test_fallback_never_serves_above_the_entitlement(tmp_path: Path, sim: SimServer) -> None:
    pol = policy(
        entitlements={"max_tier": {"free": "fast", "pro": "balanced", "vip": "expert"}},
        tiers={"fast": {"fallback": ["expert", "balanced"]}},
    )
    sim.configure(fail_models=[FAST])
    _, _, out = run(tmp_path, sim, pol, 0.0, _customers(prompts(30), ["free", "pro", "vip"]))
    free, pro, vip = (out.filter(pl.col("customer_tier") == c) for c in ("free", "pro", "vip"))
    assert (free["status"] == "failed").all() and free["model"].is_in([BALANCED, EXPERT]).sum() == 0
    assert (pro["status"] == "ok").all() and set(pro["model"]) == {BALANCED}
    assert (vip["status"] == "ok").all() and set(vip["model"]) == {EXPERT}


def test_cascade_never_escalates_above_the_entitlement(tmp_path: Path, sim: SimServer) -> None:
    pol = policy(
        entitlements={"max_tier": {"free": "fast", "pro": "balanced"}},
        tiers={"fast": {"cascade": {"min_confidence": 0.62}}},
    )
    _, _, out = run(tmp_path, sim, pol, 0.0, _customers(prompts(80), ["free", "pro"]))
    free = out.filter(pl.col("customer_tier") == "free")
    pro = out.filter(pl.col("customer_tier") == "pro")
    assert (free["tier"] == "fast").all() and free["escalated_from"].is_null().all()
    low = free.filter(pl.col("confidence") < 0.62)
    assert low.height > 0 and low["route_reason"].str.contains("no dearer tier allowed").all()
    assert (pro.filter(pl.col("confidence") < 0.62)["tier"] == "balanced").all()


def test_budget_downgrade_stays_within_the_entitlement(tmp_path: Path, sim: SimServer) -> None:
    pol = policy(
        entitlements={"max_tier": {"pro": "balanced"}},
        budgets={"tier": {"balanced": {"usd": "0.005"}}, "on_exhausted": "downgrade"},
    )
    _, _, out = run(tmp_path, sim, pol, 0.99, _customers(prompts(40, words=300), ["pro"]))
    assert (out["status"] == "ok").all()
    assert set(out["tier"]) <= {"fast", "balanced"} and "fast" in set(out["tier"])
    assert np.all(out["model"].is_in([FAST, BALANCED]).to_numpy())
