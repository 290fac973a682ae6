"""Output assembly: result columns first, input columns carried through, internals dropped."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from routing.cost import ZERO
from routing.results import assemble, passthrough_fields, rejected
from routing.router import EST_INPUT_TOKENS, FINGERPRINT, REJECTED_REASON, route_batch
from routing.schema import RESULT_COLUMNS, RESULT_FIELDS, RESULT_SCHEMA, Status
from routing.validate import check_schema, conform, row_rejections
from tests.routing.helpers import FixedScorer, tiers_policy

NESTED = pa.array([[1, 2], None], pa.list_(pa.int64()))
STRUCT = pa.array([{"a": "x"}, {"a": None}], pa.struct([("a", pa.string())]))


def _base() -> pa.Table:
    """A routed batch as the dispatch stage sees it (input + routing + internal columns)."""
    return pa.table(
        {
            "prompt_id": pa.array(["p1", "p2"], pa.large_string()),
            "zeta": ["z1", "z2"],
            "prompt": ["hello", "world"],
            "tags": NESTED,
            "tenant": ["acme", "acme"],
            "meta": STRUCT,
            "src_status": ["draft", None],
            "max_output_tokens": pa.array([10, None], pa.int64()),
            "input_file": ["f.parquet", "f.parquet"],
            "input_row": pa.array([4, 5], pa.int64()),
            "complexity_score": [0.1, 0.7],
            "tier": ["fast", "expert"],
            "route_reason": ["r1", "r2"],
            "dedupe_of": pa.array([None, None], pa.string()),
            FINGERPRINT: ["1", "2"],
            EST_INPUT_TOKENS: pa.array([3, 4], pa.int64()),
        }
    )


def _values(n: int = 2) -> dict[str, list]:
    return {"job_id": ["j"] * n, "status": ["ok"] * n}


def test_result_fields_come_first_with_their_exact_types() -> None:
    out = assemble(_base(), _values())
    assert out.schema.names[: len(RESULT_COLUMNS)] == list(RESULT_COLUMNS)
    for field in RESULT_FIELDS:
        assert out.schema.field(field.name) == field
    assert out.num_rows == 2


def test_unknown_columns_are_carried_through_untouched_in_input_order() -> None:
    base = _base()
    out = assemble(base, _values())
    extras = out.schema.names[len(RESULT_COLUMNS) :]
    assert extras == ["zeta", "prompt", "tags", "meta", "src_status", "max_output_tokens"]
    for name in extras:
        assert out.column(name).equals(base.column(name)), name
        assert out.schema.field(name) == base.schema.field(name)


def test_internal_columns_never_reach_the_output() -> None:
    out = assemble(_base(), _values())
    assert not [n for n in out.schema.names if n.startswith("__br_")]
    assert not [f for f in passthrough_fields(_base().schema) if f.name.startswith("__br_")]


def test_values_override_base_and_base_fills_the_rest() -> None:
    out = assemble(_base(), {**_values(), "tier": ["balanced", "balanced"]}).to_pydict()
    assert out["tier"] == ["balanced", "balanced"], "values win over base"
    assert out["prompt_id"] == ["p1", "p2"], "taken from base and cast to string"
    assert out["complexity_score"] == [0.1, 0.7]
    assert out["input_row"] == [4, 5]
    assert out["response"] == [None, None], "absent everywhere: null"
    assert out["cost_usd"] == [None, None]


def test_values_may_be_arrow_arrays() -> None:
    values = {**_values(), "attempts": pa.array([1, 2], pa.int64())}
    out = assemble(_base(), values)
    assert out.column("attempts").type == pa.int32()
    assert out.column("attempts").to_pylist() == [1, 2]


def test_money_columns_keep_exact_decimals() -> None:
    cost = [Decimal("0.000000150000"), ZERO]
    out = assemble(_base(), {**_values(), "cost_usd": cost, "baseline_cost_usd": cost})
    assert out.column("cost_usd").to_pylist() == cost


def test_input_without_extra_columns_gives_exactly_the_result_schema() -> None:
    base = pa.table({"prompt_id": ["a"], "tenant": ["t"], "input_row": pa.array([0], pa.int64())})
    out = assemble(base, _values(1))
    assert out.schema == RESULT_SCHEMA


def test_wrong_length_values_are_refused() -> None:
    with pytest.raises((pa.ArrowInvalid, ValueError)):
        assemble(_base(), {"job_id": ["j"], "status": ["ok", "ok"]})


def test_outputs_of_different_tiers_concatenate() -> None:
    base = _base()
    a = assemble(base.slice(0, 1), {**_values(1), "tier": ["fast"]})
    b = rejected(base.slice(1, 1), ["prompt is empty"], "j", "p-1")
    both = pa.concat_tables([a, b])
    assert both.num_rows == 2
    assert both.schema == a.schema == b.schema


# ---------------------------------------------------------------- rejected rows


def test_rejected_rows_carry_reason_and_cost_nothing() -> None:
    out = rejected(_base(), ["prompt is empty", "duplicate prompt_id"], "job-1", "p-abc")
    rows = out.to_pydict()
    assert rows["status"] == [Status.REJECTED.value] * 2 == ["rejected", "rejected"]
    assert rows["error"] == ["prompt is empty", "duplicate prompt_id"]
    assert rows["job_id"] == ["job-1", "job-1"]
    assert rows["policy_version"] == ["p-abc", "p-abc"]
    assert rows["cost_usd"] == rows["baseline_cost_usd"] == [Decimal(0), Decimal(0)]
    assert rows["attempts"] == [0, 0]
    assert rows["cache_hit"] == [False, False]
    assert rows["prompt_id"] == ["p1", "p2"]
    assert rows["tenant"] == ["acme", "acme"]
    assert rows["input_row"] == [4, 5]


def test_rejected_rows_are_not_routed() -> None:
    rows = rejected(_base(), ["x", "y"], "j", "p").to_pydict()
    for name in ("tier", "complexity_score", "route_reason", "dedupe_of", "model", "response"):
        assert rows[name] == [None, None], name


def test_rejected_rows_keep_their_input_columns() -> None:
    base = _base()
    out = rejected(base, ["x", "y"], "j", "p")
    assert out.column("tags").equals(base.column("tags"))
    assert out.column("prompt").to_pylist() == ["hello", "world"]
    assert FINGERPRINT not in out.column_names


def test_rejecting_no_rows() -> None:
    out = rejected(_base().slice(0, 0), [], "j", "p")
    assert out.num_rows == 0
    assert out.schema.names[: len(RESULT_COLUMNS)] == list(RESULT_COLUMNS)


def test_row_count_out_equals_row_count_in_through_the_routing_layer() -> None:
    # validate → route → assemble, as the stages use them: every input row comes out once,
    # good, rejected or unroutable, with its own columns and no internal ones.
    policy = tiers_policy(
        {"name": "small", "max_score": 0.5, "max_input_tokens": 20},
        {"name": "big", "max_input_tokens": 40},
    )
    raw = pa.table(
        {
            "prompt_id": ["a", "b", "c", "d", "e", "a"],
            "prompt": ["hi", "", "word " * 60, "hi ", None, "again"],
            "status": ["s1", "s2", "s3", "s4", "s5", "s6"],
            "keep": [1, 2, 3, 4, 5, 6],
        }
    )
    check_schema(raw.schema, "mem://t.parquet")
    table = conform(raw)
    reasons = row_rejections(table, policy.limits, None)
    valid = pc.is_null(reasons)
    routed = route_batch(table.filter(valid), policy, FixedScorer([0.1, 0.1, 0.1]))
    ok = pc.not_equal(routed.column("tier"), "")
    parts = [
        rejected(table.filter(pc.invert(valid)), reasons.filter(pc.invert(valid)), "j", "p"),
        rejected(
            routed.filter(pc.invert(ok)),
            routed.filter(pc.invert(ok)).column(REJECTED_REASON).to_pylist(),
            "j",
            "p",
        ),
        assemble(routed.filter(ok), {"job_id": ["j"] * 2, "status": ["ok"] * 2}),
    ]
    out = pa.concat_tables(parts)
    assert out.num_rows == raw.num_rows
    assert sorted(out.column("keep").to_pylist()) == [1, 2, 3, 4, 5, 6]
    assert sorted(out.column("src_status").to_pylist()) == ["s1", "s2", "s3", "s4", "s5", "s6"]
    by_keep = dict(zip(out.column("keep").to_pylist(), out.to_pylist(), strict=True))
    assert by_keep[2]["error"] == "prompt is empty"
    assert by_keep[3]["error"].startswith("prompt fits no allowed tier's max_input_tokens")
    assert by_keep[4]["dedupe_of"] == "a"
    assert by_keep[5]["error"] == "prompt is null"
    assert by_keep[6]["error"] == "duplicate prompt_id"
    assert not [n for n in out.column_names if n.startswith("__br_")]
