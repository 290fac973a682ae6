"""Input validation: whole-file schema checks, conforming, and per-row rejection reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from routing.errors import InputError, PermanentError
from routing.policy import LimitsSpec
from routing.schema import RESERVED
from routing.validate import carried_name, check_schema, conform, row_rejections

pytestmark = pytest.mark.security

SOURCE = "s3://in/job/part-0007.parquet"


def _schema(**columns: pa.DataType) -> pa.Schema:
    return pa.schema(list(columns.items()))


def _reject(schema: pa.Schema) -> str:
    with pytest.raises(InputError) as info:
        check_schema(schema, SOURCE)
    message = str(info.value)
    assert SOURCE in message, "the error names the file"
    return message


# ---------------------------------------------------------------- check_schema: rejections


def test_input_error_is_permanent() -> None:
    assert issubclass(InputError, PermanentError)


@pytest.mark.parametrize("missing", ["prompt", "prompt_id"])
def test_missing_required_column(missing: str) -> None:
    columns = {"prompt_id": pa.string(), "prompt": pa.string(), "tenant": pa.string()}
    del columns[missing]
    message = _reject(_schema(**columns))
    assert f"{missing!r}" in message
    assert "missing" in message


@pytest.mark.parametrize(
    ("column", "bad_type", "wanted"),
    [
        ("prompt", pa.int64(), "string"),
        ("prompt_id", pa.int64(), "string"),
        ("prompt", pa.binary(), "string"),
        ("prompt", pa.list_(pa.string()), "string"),
        ("max_output_tokens", pa.string(), "int64"),
        ("max_output_tokens", pa.float64(), "int64"),
        ("tenant", pa.int32(), "string"),
        ("system", pa.struct([("role", pa.string())]), "string"),
        ("metadata", pa.binary(), "string"),
    ],
)
def test_wrong_type_names_file_column_and_types(
    column: str, bad_type: pa.DataType, wanted: str
) -> None:
    columns = {"prompt_id": pa.string(), "prompt": pa.string(), column: bad_type}
    message = _reject(_schema(**columns))
    assert f"{column!r}" in message
    assert wanted in message
    assert str(bad_type) in message


def test_output_column_clashing_with_its_carried_name() -> None:
    message = _reject(
        _schema(
            prompt_id=pa.string(), prompt=pa.string(), status=pa.string(), src_status=pa.int64()
        )
    )
    assert "'status'" in message
    assert "'src_status'" in message


def test_internal_prefix_is_reserved() -> None:
    message = _reject(_schema(prompt_id=pa.string(), prompt=pa.string(), __br_tier=pa.string()))
    assert "__br_" in message


def test_duplicate_column_names_are_an_input_error() -> None:
    schema = pa.schema(
        [("prompt_id", pa.string()), ("prompt", pa.string()), ("prompt", pa.string())]
    )
    message = _reject(schema)
    assert "duplicate column" in message


def test_duplicate_unknown_column_names_are_an_input_error() -> None:
    schema = pa.schema(
        [("prompt_id", pa.string()), ("prompt", pa.string()), ("x", pa.int8()), ("x", pa.int8())]
    )
    assert "duplicate column" in _reject(schema)


# ---------------------------------------------------------------- check_schema: acceptance


@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string(), pa.string_view()])
def test_string_flavours_are_accepted(text_type: pa.DataType) -> None:
    check_schema(_schema(prompt_id=text_type, prompt=text_type, system=text_type), SOURCE)


@pytest.mark.parametrize("int_type", [pa.int8(), pa.int16(), pa.int32(), pa.int64()])
def test_any_signed_integer_is_accepted_for_max_output_tokens(int_type: pa.DataType) -> None:
    check_schema(
        _schema(prompt_id=pa.string(), prompt=pa.string(), max_output_tokens=int_type), SOURCE
    )


def test_all_null_optional_columns_are_accepted() -> None:
    # An all-null column (written by pandas from None) has Arrow type null.
    check_schema(
        _schema(prompt_id=pa.string(), prompt=pa.string(), system=pa.null(), domain=pa.null()),
        SOURCE,
    )


def test_unknown_and_reserved_columns_are_accepted() -> None:
    check_schema(
        _schema(
            prompt_id=pa.string(),
            prompt=pa.string(),
            anything=pa.list_(pa.int64()),
            status=pa.string(),
            cost_usd=pa.float64(),
            input_tokens=pa.int64(),
            src_model=pa.string(),
        ),
        SOURCE,
    )


# ---------------------------------------------------------------- conform


def test_conform_casts_known_columns_to_canonical_types() -> None:
    table = pa.table(
        {
            "prompt_id": pa.array(["a", "b"], pa.large_string()),
            "prompt": pa.array(["x", "y"], pa.string_view()),
            "max_output_tokens": pa.array([5, None], pa.int32()),
            "system": pa.nulls(2, pa.null()),
        }
    )
    check_schema(table.schema, SOURCE)
    out = conform(table)
    assert out.schema.field("prompt_id").type == pa.string()
    assert out.schema.field("prompt").type == pa.string()
    assert out.schema.field("max_output_tokens").type == pa.int64()
    assert out.schema.field("system").type == pa.string()
    assert out.to_pydict() == {
        "prompt_id": ["a", "b"],
        "prompt": ["x", "y"],
        "max_output_tokens": [5, None],
        "system": [None, None],
    }


def test_conform_renames_output_name_clashes_to_src_and_keeps_them() -> None:
    nested = pa.array([[1, 2], []], pa.list_(pa.int64()))
    table = pa.table(
        {
            "status": ["draft", "final"],
            "prompt_id": ["a", "b"],
            "input_tokens": [10, 20],
            "prompt": ["x", "y"],
            "notes": nested,
            "tenant": ["t1", None],
            "cost_usd": [0.5, 1.5],
        }
    )
    check_schema(table.schema, SOURCE)
    out = conform(table)
    assert out.column_names == [
        "src_status",
        "prompt_id",
        "src_input_tokens",
        "prompt",
        "notes",
        "tenant",
        "src_cost_usd",
    ]
    assert out.column("src_status").to_pylist() == ["draft", "final"]
    assert out.column("src_input_tokens").to_pylist() == [10, 20]
    assert out.column("src_cost_usd").type == pa.float64()
    assert out.column("notes").equals(pa.chunked_array([nested]))
    assert out.column("tenant").to_pylist() == ["t1", None], "tenant is an input, not renamed"


def test_every_reserved_name_is_carried_through() -> None:
    names = sorted(RESERVED)
    table = pa.table({"prompt_id": ["a"], "prompt": ["p"], **{n: [n] for n in names}})
    check_schema(table.schema, SOURCE)
    out = conform(table)
    for name in names:
        assert out.column(carried_name(name)).to_pylist() == [name]
        assert name not in out.column_names


def test_conform_leaves_a_canonical_table_unchanged() -> None:
    table = pa.table({"prompt_id": ["a"], "prompt": ["p"], "extra": [1.0]})
    assert conform(table).equals(table)


def test_real_corpus_schema_is_accepted_and_its_input_tokens_carried(corpus_path: Path) -> None:
    schema = pq.read_schema(corpus_path)
    check_schema(schema, str(corpus_path))
    head = pq.ParquetFile(corpus_path).read_row_group(0).slice(0, 5)
    out = conform(head)
    assert "src_input_tokens" in out.column_names
    assert out.column("src_input_tokens").equals(head.column("input_tokens"))


# ---------------------------------------------------------------- row_rejections

LIMITS = LimitsSpec(max_prompt_chars=10)


def _reasons(
    rows: list[dict[str, Any]], job_tenant: str | None = None, limits: LimitsSpec = LIMITS
) -> list[str | None]:
    schema = {"prompt_id": pa.string(), "prompt": pa.string()}
    for row in rows:
        if "max_output_tokens" in row:
            schema["max_output_tokens"] = pa.int64()
        if "tenant" in row:
            schema["tenant"] = pa.string()
    table = pa.Table.from_pylist(rows, schema=pa.schema(list(schema.items())))
    reasons = row_rejections(table, limits, job_tenant)
    assert len(reasons) == len(rows)
    return reasons.to_pylist()


def test_valid_rows_have_no_reason() -> None:
    rows = [
        {"prompt_id": "a", "prompt": "hello"},
        {"prompt_id": "b", "prompt": "x" * 10, "max_output_tokens": 1},
        {"prompt_id": "c", "prompt": " padded ", "max_output_tokens": None},
    ]
    assert _reasons(rows) == [None, None, None]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"prompt_id": "a", "prompt": None}, "prompt is null"),
        ({"prompt_id": "a", "prompt": ""}, "prompt is empty"),
        ({"prompt_id": "a", "prompt": "   "}, "prompt is empty"),
        ({"prompt_id": "a", "prompt": " \t\n\r "}, "prompt is empty"),
        ({"prompt_id": "a", "prompt": "\u3000\u00a0"}, "prompt is empty"),
        ({"prompt_id": None, "prompt": "hi"}, "prompt_id is null"),
        ({"prompt_id": "", "prompt": "hi"}, "prompt_id is empty"),
        ({"prompt_id": "  ", "prompt": "hi"}, "prompt_id is empty"),
        ({"prompt_id": "a", "prompt": "x" * 11}, "prompt longer than 10 characters"),
        (
            {"prompt_id": "a", "prompt": "hi", "max_output_tokens": 0},
            "max_output_tokens must be > 0",
        ),
        (
            {"prompt_id": "a", "prompt": "hi", "max_output_tokens": -5},
            "max_output_tokens must be > 0",
        ),
    ],
)
def test_single_reason(row: dict[str, Any], reason: str) -> None:
    assert _reasons([row]) == [reason]


def test_length_limit_counts_characters_not_bytes() -> None:
    assert _reasons([{"prompt_id": "a", "prompt": "é" * 10}]) == [None]
    assert _reasons([{"prompt_id": "a", "prompt": "日" * 11}]) == [
        "prompt longer than 10 characters"
    ]


def test_duplicate_ids_reject_every_later_occurrence() -> None:
    rows = [
        {"prompt_id": "a", "prompt": "one"},
        {"prompt_id": "b", "prompt": "two"},
        {"prompt_id": "a", "prompt": "three"},
        {"prompt_id": "a", "prompt": "four"},
        {"prompt_id": "A", "prompt": "five"},
    ]
    assert _reasons(rows) == [None, None, "duplicate prompt_id", "duplicate prompt_id", None]


def test_null_ids_are_reported_as_null_not_duplicate() -> None:
    rows = [{"prompt_id": None, "prompt": "x"}, {"prompt_id": None, "prompt": "y"}]
    assert _reasons(rows) == ["prompt_id is null", "prompt_id is null"]


@pytest.mark.security
def test_tenant_mismatch_with_the_job_tenant_or_the_default() -> None:
    """The job's tenant is the only tenant: without one it is ``default``, and a row naming
    another tenant is rejected either way (issue 13, finding 3)."""
    rows = [
        {"prompt_id": "a", "prompt": "x", "tenant": "acme"},
        {"prompt_id": "b", "prompt": "x", "tenant": "globex"},
        {"prompt_id": "c", "prompt": "x", "tenant": None},
    ]
    reasons = _reasons(rows, job_tenant="acme")
    assert reasons[0] is None
    assert reasons[1] == (
        "tenant column 'globex' differs from the job's tenant 'acme' (submit with --tenant globex)"
    )
    assert reasons[2] is None, "a row without a tenant takes the job's"
    assert _reasons(rows, job_tenant=None) == [
        "tenant column 'acme' differs from the job's tenant 'default' (submit with --tenant acme)",
        "tenant column 'globex' differs from the job's tenant 'default' "
        "(submit with --tenant globex)",
        None,
    ]


def test_job_tenant_without_a_tenant_column_rejects_nothing() -> None:
    assert _reasons([{"prompt_id": "a", "prompt": "x"}], job_tenant="acme") == [None]


@pytest.mark.parametrize(
    ("row", "first"),
    [
        ({"prompt_id": None, "prompt": None}, "prompt_id is null"),
        ({"prompt_id": "", "prompt": ""}, "prompt_id is empty"),
        ({"prompt_id": "z", "prompt": None, "max_output_tokens": 0}, "prompt is null"),
        ({"prompt_id": "z", "prompt": "  ", "max_output_tokens": 0}, "prompt is empty"),
        (
            {"prompt_id": "z", "prompt": "x" * 50, "max_output_tokens": -1, "tenant": "other"},
            "prompt longer than 10 characters",
        ),
    ],
)
def test_first_reason_wins(row: dict[str, Any], first: str) -> None:
    assert _reasons([row], job_tenant="acme") == [first]


def test_max_output_tokens_precedes_tenant() -> None:
    row = {"prompt_id": "z", "prompt": "ok", "max_output_tokens": 0, "tenant": "other"}
    assert _reasons([row], job_tenant="acme") == ["max_output_tokens must be > 0"]


def test_duplicate_is_reported_only_when_nothing_else_is_wrong() -> None:
    rows = [
        {"prompt_id": "a", "prompt": "fine"},
        {"prompt_id": "a", "prompt": ""},
        {"prompt_id": "a", "prompt": "also fine"},
    ]
    assert _reasons(rows) == [None, "prompt is empty", "duplicate prompt_id"]


def test_duplicates_are_found_across_record_batches() -> None:
    first = pa.table({"prompt_id": ["a", "b"], "prompt": ["x", "y"]})
    second = pa.table({"prompt_id": ["c", "a"], "prompt": ["z", "w"]})
    table = pa.concat_tables([first, second])
    assert table.column("prompt_id").num_chunks == 2
    assert row_rejections(table, LIMITS, None).to_pylist() == [
        None,
        None,
        None,
        "duplicate prompt_id",
    ]


def test_empty_table_has_no_reasons() -> None:
    table = pa.table({"prompt_id": pa.array([], pa.string()), "prompt": pa.array([], pa.string())})
    assert len(row_rejections(table, LIMITS, "acme")) == 0


def test_default_limit_allows_long_prompts() -> None:
    rows = [
        {"prompt_id": "a", "prompt": "x" * 200_000},
        {"prompt_id": "b", "prompt": "x" * 200_001},
    ]
    assert _reasons(rows, limits=LimitsSpec()) == [None, "prompt longer than 200000 characters"]
