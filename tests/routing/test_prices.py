"""Prices from a LiteLLM price table: exact decimals, policy overrides, clear errors."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from routing.cost import call_cost
from routing.errors import PolicyError
from routing.policy import load_policy
from routing.prices import load_price_table
from tests import data

TABLE = {
    "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
    "small-model": {
        "input_cost_per_token": 1.5e-07,
        "output_cost_per_token": 6e-07,
        "input_cost_per_token_batches": 7.5e-08,
        "litellm_provider": "openai",
        "max_input_tokens": 128000,
    },
    "big-model": {"input_cost_per_token": 3.75e-08, "output_cost_per_token": 1.5e-05},
    "image-model": {"output_cost_per_image": 0.04},
}

POLICY = """
name: priced
prices: {table: prices.json}
providers:
  p: {kind: openai, base_url: simulated}
tiers:
  - name: fast
    models: [{name: small-model, provider: p}]
    max_score: 0.5
  - name: expert
    models:
      - {name: big, provider: p, price_key: big-model}
      - {name: pinned, provider: p, price_key: big-model, input_per_mtok: "1", output_per_mtok: "2"}
"""


def _write(tmp_path: Path, policy: str = POLICY, table: dict | None = None) -> Path:
    (tmp_path / "prices.json").write_text(json.dumps(TABLE if table is None else table))
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    return path


def test_table_prices_are_exact_decimals(tmp_path: Path) -> None:
    table = load_price_table(_write(tmp_path).parent / "prices.json")
    assert set(table) == {"small-model", "big-model"}  # template and image-only skipped
    small = table["small-model"]
    assert small.input_per_mtok == Decimal("0.15") and small.output_per_mtok == Decimal("0.6")
    assert small.batch_input_per_mtok == Decimal("0.075") and small.batch_output_per_mtok is None
    assert small.provider == "openai" and small.max_input_tokens == 128000
    assert table["big-model"].input_per_mtok == Decimal("0.0375")


def test_policy_fills_missing_prices_and_keeps_overrides(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path))
    fast, big, pinned = policy.tiers[0].primary, *policy.tiers[1].models
    assert (fast.input_per_mtok, fast.output_per_mtok) == (Decimal("0.15"), Decimal("0.6"))
    assert (big.input_per_mtok, big.output_per_mtok) == (Decimal("0.0375"), Decimal("15"))
    assert (pinned.input_per_mtok, pinned.output_per_mtok) == (Decimal("1"), Decimal("2"))
    # exact: 3 tokens at 0.0375 / M is 1.125e-7 USD, no float drift
    assert call_cost(big, 3, 0) == Decimal("0.0000001125")


def test_a_price_change_changes_the_policy_version(tmp_path: Path) -> None:
    before = load_policy(_write(tmp_path)).version
    changed = {**TABLE, "small-model": {**TABLE["small-model"], "output_cost_per_token": 7e-07}}
    after = load_policy(_write(tmp_path, table=changed)).version
    assert before != after


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(
        PolicyError, match=r"'small' is not in the price table .*similar: \['small-model'\]"
    ):
        load_policy(_write(tmp_path, POLICY.replace("name: small-model", "name: small")))
    path = _write(tmp_path)
    (tmp_path / "prices.json").unlink()
    with pytest.raises(PolicyError, match="price table not found"):
        load_policy(path)
    (tmp_path / "prices.json").write_text("{not json")
    with pytest.raises(PolicyError, match="not a JSON price table"):
        load_policy(path)


def test_the_shared_litellm_table() -> None:
    table = load_price_table(data.require(data.PRICES))
    assert len(table) > 1000
    for name, (cost_in, cost_out) in {
        "gpt-4o-mini": ("0.15", "0.6"),
        "gpt-4.1-mini": ("0.4", "1.6"),
        "gpt-4.1": ("2", "8"),
    }.items():
        assert table[name].input_per_mtok == Decimal(cost_in), name
        assert table[name].output_per_mtok == Decimal(cost_out), name
    # the packaged default policy's prices agree with the table
    for tier in load_policy().tiers:
        m = tier.primary
        assert (m.input_per_mtok, m.output_per_mtok) == (
            table[m.name].input_per_mtok,
            table[m.name].output_per_mtok,
        )


def test_a_reasoning_model_is_marked_from_the_table(tmp_path: Path) -> None:
    """supports_reasoning in the table makes the model ``reasoning`` (max_completion_tokens)
    when the table fills its prices; the policy's own ``reasoning`` wins."""
    table = {
        **TABLE,
        "think": {
            "input_cost_per_token": 1e-06,
            "output_cost_per_token": 4e-06,
            "supports_reasoning": True,
        },
    }
    policy = POLICY.replace(
        "    models: [{name: small-model, provider: p}]",
        "    models: [{name: think, provider: p}, {name: small-model, provider: p},\n"
        "             {name: pinned-off, provider: p, price_key: think, reasoning: false}]",
    )
    fast = load_policy(_write(tmp_path, policy, table)).tiers[0].models
    assert [m.reasoning for m in fast] == [True, False, False]
    shared = load_price_table(data.require(data.PRICES))
    assert shared["o3-mini"].reasoning and shared["gpt-5"].reasoning
    assert not shared["gpt-4o-mini"].reasoning


def test_cache_prices_come_from_the_table() -> None:
    shared = load_price_table(data.require(data.PRICES))
    mini = shared["gpt-4o-mini"]
    assert mini.cache_read_per_mtok == Decimal("0.075") and mini.input_per_mtok == Decimal("0.15")
    assert mini.cache_write_per_mtok is None
