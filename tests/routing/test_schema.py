"""The Parquet contracts: input columns, the output columns, money, reserved names."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from routing.schema import (
    COST_SUMMARY_SCHEMA,
    MONEY,
    OPTIONAL_INPUT,
    REQUIRED_INPUT,
    RESERVED,
    RESULT_COLUMNS,
    RESULT_SCHEMA,
    Status,
    output_schema,
)

# The output contract of DESIGN.md ("One row per input row, with at least: …").
DESIGN_OUTPUT = [
    "job_id",
    "prompt_id",
    "tenant",
    "status",
    "tier",
    "model",
    "provider",
    "response",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "latency_ms",
    "attempts",
    "escalated_from",
    "dedupe_of",
    "cache_hit",
    "complexity_score",
    "confidence",
    "route_reason",
    "policy_version",
    "error",
]


def test_output_has_every_design_column_in_design_order() -> None:
    assert list(RESULT_COLUMNS[: len(DESIGN_OUTPUT)]) == DESIGN_OUTPUT
    assert len(set(RESULT_COLUMNS)) == len(RESULT_COLUMNS)


def test_status_values() -> None:
    assert {s.value for s in Status} == {"ok", "failed", "rejected", "over_budget"}
    assert Status.OK == "ok"


def test_input_contract() -> None:
    assert {"prompt_id": pa.string(), "prompt": pa.string()} == REQUIRED_INPUT
    assert set(OPTIONAL_INPUT) == {
        "tenant",
        "system",
        "max_output_tokens",
        "customer_tier",
        "domain",
        "metadata",
    }
    assert OPTIONAL_INPUT["max_output_tokens"] == pa.int64()


def test_reserved_names_are_the_output_names_an_input_cannot_keep() -> None:
    assert {"status", "tier", "cost_usd", "input_tokens", "error", "input_row"} <= RESERVED
    assert not {"prompt_id", "prompt", "tenant"} & RESERVED, "inputs the output reuses"
    assert not set(OPTIONAL_INPUT) & RESERVED - {"tenant"}
    assert set(RESULT_COLUMNS) >= RESERVED


def test_money_is_exact_to_twelve_places() -> None:
    assert pa.decimal128(24, 12) == MONEY
    value = Decimal("123456789012.000000000001")
    assert pa.array([value], MONEY)[0].as_py() == value
    with pytest.raises(pa.ArrowInvalid):
        pa.array([Decimal("0.0000000000001")], MONEY)  # 13 places would lose money silently
    for schema in (RESULT_SCHEMA, COST_SUMMARY_SCHEMA):
        assert schema.field("cost_usd").type == MONEY
        assert schema.field("baseline_cost_usd").type == MONEY


def test_output_schema_appends_unknown_input_columns_in_order() -> None:
    source = pa.schema(
        [
            ("prompt_id", pa.string()),
            ("zeta", pa.int8()),
            ("prompt", pa.string()),
            ("tenant", pa.string()),
            ("alpha", pa.list_(pa.string())),
        ]
    )
    out = output_schema(source)
    assert out.names == [*RESULT_COLUMNS, "zeta", "prompt", "alpha"]
    assert out.field("zeta").type == pa.int8()
