"""Exact money: per-call cost, quantisation, drift-free sums, the all-expert baseline."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from routing.cost import QUANTUM, ZERO, call_cost, pct, usd_text
from routing.policy import ModelSpec, Policy, parse_policy
from routing.schema import MONEY
from tests.routing.helpers import PROPERTY


def _model(input_per_mtok: str, output_per_mtok: str) -> ModelSpec:
    return ModelSpec(
        name="m",
        provider="p",
        input_per_mtok=Decimal(input_per_mtok),
        output_per_mtok=Decimal(output_per_mtok),
    )


def test_call_cost_is_exact(default_policy: Policy) -> None:
    fast = default_policy.tier("fast").primary  # $0.15 / $0.60 per million tokens
    assert call_cost(fast, 1000, 500) == Decimal("0.00045")
    expert = default_policy.tier("expert").primary  # $2 / $8 per million tokens
    assert call_cost(expert, 1_000_000, 1_000_000) == Decimal("10")
    assert call_cost(expert, 1, 0) == Decimal("0.000002")


def test_zero_tokens_cost_nothing(default_policy: Policy) -> None:
    assert call_cost(default_policy.tier("expert").primary, 0, 0) == ZERO == Decimal(0)


def test_free_model() -> None:
    assert call_cost(_model("0", "0"), 10**6, 10**6) == ZERO


def test_cost_is_quantised_to_twelve_places_and_fits_the_money_type() -> None:
    cost = call_cost(_model("0.15", "0.6"), 7, 3)
    assert cost.as_tuple().exponent == -12
    assert cost == Decimal("0.00000285")
    assert pa.array([cost], MONEY)[0].as_py() == cost


def test_sub_quantum_prices_round_to_the_nearest_quantum() -> None:
    # $1e-7 per million tokens is 1e-13 per token, below the 12-digit money quantum.
    tiny = _model("0.0000001", "0")
    assert call_cost(tiny, 4, 0) == ZERO
    assert call_cost(tiny, 6, 0) == QUANTUM
    assert call_cost(tiny, 10, 0) == QUANTUM


def test_cost_is_a_decimal_never_a_float(default_policy: Policy) -> None:
    cost = call_cost(default_policy.tier("balanced").primary, 123, 45)
    assert type(cost) is Decimal


@PROPERTY
@given(
    input_tokens=st.integers(min_value=0, max_value=10**7),
    output_tokens=st.integers(min_value=0, max_value=10**6),
    input_micro=st.integers(min_value=0, max_value=100_000_000),
    output_micro=st.integers(min_value=0, max_value=100_000_000),
)
def test_cost_matches_integer_arithmetic(
    input_tokens: int, output_tokens: int, input_micro: int, output_micro: int
) -> None:
    # Prices with up to 6 decimals per million tokens are exact in 12 decimals per token.
    model = _model(str(Decimal(input_micro).scaleb(-6)), str(Decimal(output_micro).scaleb(-6)))
    pico = input_micro * input_tokens + output_micro * output_tokens  # units of 1e-12 USD
    assert call_cost(model, input_tokens, output_tokens) == Decimal(pico).scaleb(-12)


def test_a_million_tiny_costs_sum_without_drift(default_policy: Policy) -> None:
    fast = default_policy.tier("fast").primary
    # A million calls of 1..1000 input and 0..6 output tokens; costs computed per call.
    distinct = {(i, o): call_cost(fast, i, o) for i in range(1, 1001) for o in range(7)}
    usage = [(n % 1000 + 1, n % 7) for n in range(1_000_000)]
    total = sum((distinct[u] for u in usage), ZERO)
    input_tokens = sum(i for i, _ in usage)
    output_tokens = sum(o for _, o in usage)
    exact = (Decimal("0.15") * input_tokens + Decimal("0.60") * output_tokens) / 10**6
    assert total == exact
    # The same column summed by Arrow (how result parts are rolled up) is exact too.
    column = pa.array([distinct[u] for u in usage], MONEY)
    assert pc.sum(column).as_py() == exact


def test_a_million_single_token_calls_add_up_to_the_price() -> None:
    model = _model("0.15", "0")
    one = call_cost(model, 1, 0)
    assert one == Decimal("0.00000015")
    assert sum([one] * 1_000_000, ZERO) == Decimal("0.15")


# ---------------------------------------------------------------- baseline


def test_baseline_is_the_most_expensive_tier(default_policy: Policy) -> None:
    baseline = default_policy.baseline_tier
    assert baseline.name == "expert"
    others = [t for t in default_policy.tiers if t is not baseline]
    assert all(t.primary.output_per_mtok <= baseline.primary.output_per_mtok for t in others)


@PROPERTY
@given(
    input_tokens=st.integers(min_value=0, max_value=200_000),
    output_tokens=st.integers(min_value=0, max_value=20_000),
)
def test_baseline_cost_is_never_below_any_tiers_cost(
    default_policy: Policy, input_tokens: int, output_tokens: int
) -> None:
    baseline = call_cost(default_policy.baseline_tier.primary, input_tokens, output_tokens)
    for tier in default_policy.tiers:
        assert call_cost(tier.primary, input_tokens, output_tokens) <= baseline


def test_baseline_follows_price_not_position(policy_data: dict[str, Any]) -> None:
    policy_data["tiers"][0]["models"][0].update(input_per_mtok="30", output_per_mtok="60")
    policy = parse_policy(yaml.safe_dump(policy_data))
    assert policy.baseline_tier.name == "fast"
    assert call_cost(policy.baseline_tier.primary, 1000, 1000) == Decimal("0.09")


@pytest.mark.parametrize("tokens", [(1, 1), (1234, 567), (128_000, 2048)])
def test_savings_against_the_baseline(default_policy: Policy, tokens: tuple[int, int]) -> None:
    fast = call_cost(default_policy.tier("fast").primary, *tokens)
    baseline = call_cost(default_policy.baseline_tier.primary, *tokens)
    # fast is 0.15/0.60 vs 2/8: exactly 7.5 % of the expert price, whatever the usage.
    assert fast / baseline == Decimal("0.075")


def test_one_money_format_and_one_percentage_format() -> None:
    assert usd_text(Decimal(0)) == usd_text(None) == usd_text(ZERO) == "0.000000000000"
    assert usd_text(Decimal("0E-12")) == "0.000000000000"  # a Parquet sum of nothing
    assert usd_text(Decimal("1.75231765")) == "1.752317650000"
    assert usd_text(Decimal("-0.5")) == "-0.500000000000"
    assert usd_text(Decimal("12345678.9")) == "12345678.900000000000"  # never 1.2E+7
    assert pct(Decimal("12.019934350000"), Decimal("13.772252000000")) == 87.276
    assert pct(Decimal(1), Decimal(0)) == 0.0


def test_cached_and_written_input_tokens_at_their_prices() -> None:
    plain = _model("2", "8")
    # no cache prices: every input token at the input price, as before
    assert call_cost(plain, 3000, 100, cached=2048) == call_cost(plain, 3000, 100)
    cached = plain.model_copy(
        update={"cache_read_per_mtok": Decimal("0.5"), "cache_write_per_mtok": Decimal("2.5")}
    )
    # 952 plain at $2/M + 2,048 cached at $0.5/M + 100 output at $8/M
    assert call_cost(cached, 3000, 100, cached=2048) == Decimal("0.003728")
    # Anthropic: 1,000 written at $2.5/M, 500 read at $0.5/M, 100 plain at $2/M
    assert call_cost(cached, 1600, 0, cached=500, written=1000) == Decimal("0.00295")
    # batch: the cache prices take the batch discount of the input price
    batch = cached.model_copy(
        update={"batch_input_per_mtok": Decimal("1"), "batch_output_per_mtok": Decimal("4")}
    )
    assert call_cost(batch, 3000, 100, batch=True, cached=2048) == Decimal("0.001864")
    # never more cached than input tokens: the plain part is not negative
    assert call_cost(cached, 100, 0, cached=2048) == call_cost(cached, 0, 0, cached=2048)
