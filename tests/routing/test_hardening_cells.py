"""One undecodable cell rejects its row, never the job (issue 13, finding 4): what
``conform`` finds and repairs, and what ``row_rejections`` reports for it."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from routing.policy import LimitsSpec
from routing.schema import CELL_ERROR
from routing.validate import conform, row_rejections

BAD = b"caf\xe9"  # Latin-1: not UTF-8
LIMITS = LimitsSpec()


def strings(values: list[str | bytes | None], large: bool = False) -> pa.Array:
    raw = [v.encode() if isinstance(v, str) else v for v in values]
    binary, string = (pa.large_binary(), pa.large_string()) if large else (pa.binary(), pa.string())
    return pa.array(raw, binary).view(string)


def base(n: int = 3) -> dict[str, pa.Array]:
    return {
        "prompt_id": strings([f"p{i}" for i in range(n)]),
        "prompt": strings([f"question {i}?" for i in range(n)]),
    }


def reasons(table: pa.Table, tenant: str | None = None) -> list[str | None]:
    out = row_rejections(table, LIMITS, tenant).to_pylist()
    assert len(out) == table.num_rows
    return out


def test_a_sound_table_is_left_as_it_is() -> None:
    table = pa.table({**base(), "notes": strings(["a", None, "c"])})
    assert conform(table).equals(table)
    assert CELL_ERROR not in conform(table).column_names


@pytest.mark.parametrize(
    "column", ["prompt_id", "prompt", "system", "tenant", "metadata", "domain", "customer_tier"]
)
def test_invalid_utf8_in_a_known_column_rejects_the_row(column: str) -> None:
    cols = {**base(), column: strings(["acme", BAD, None])}
    if column in base():
        cols[column] = strings(["ok-0", BAD, "ok-2"])
    out = conform(pa.table(cols))
    out.validate(full=True)
    got = reasons(out, "acme")
    assert got[1] == f"{column} is not valid UTF-8"
    assert got[0] is None and got[2] is None, got
    assert out.column(column)[1].as_py() == "caf\ufffd"  # the lossy decoding, kept readable


def test_large_strings_carried_nested_and_dictionary_columns() -> None:
    n = 4
    inner = strings(["a", "b", BAD, "d"])
    table = pa.table(
        {
            **base(n),
            "big": strings(["x", "y", "z", BAD], large=True),
            "tags": pa.ListArray.from_arrays(pa.array([0, 1, 2, 3, 4], pa.int32()), inner),
            "info": pa.StructArray.from_arrays([inner, pa.array(range(n))], ["s", "i"]),
            "kind": pa.DictionaryArray.from_arrays(
                pa.array([0, 1, 0, 0], pa.int8()), strings(["good", BAD])
            ),
        }
    )
    out = conform(table)
    out.validate(full=True)
    assert out.schema.field("kind").type == table.schema.field("kind").type
    assert reasons(out) == [
        None,
        "kind is not valid UTF-8",
        "tags is not valid UTF-8",  # first bad column in input order (tags before info)
        "big is not valid UTF-8",
    ]
    assert out.column("tags").to_pylist() == [["a"], ["b"], None, ["d"]]
    assert out.column("info")[2].as_py() is None
    assert out.column("kind").to_pylist() == ["good", "caf\ufffd", "good", "good"]
    assert out.column("big")[3].as_py() == "caf\ufffd"


def test_an_unused_bad_dictionary_entry_is_dropped() -> None:
    kind = pa.DictionaryArray.from_arrays(pa.array([0, 0, 0], pa.int8()), strings(["ok", BAD]))
    out = conform(pa.table({**base(), "kind": kind}))
    out.validate(full=True)
    assert CELL_ERROR not in out.column_names
    assert out.column("kind").to_pylist() == ["ok"] * 3


def test_a_bad_cell_outside_the_chunk_slice_is_not_this_chunks_problem() -> None:
    inner = strings(["a", BAD, "c", "d"])
    full = pa.table(
        {
            **base(4),
            "notes": strings(["a", BAD, "c", "d"]),
            "tags": pa.ListArray.from_arrays(pa.array([0, 1, 2, 3, 4], pa.int32()), inner),
        }
    )
    chunk = full.slice(2, 2)  # a chunk of a larger row group
    out = conform(chunk)
    assert CELL_ERROR not in out.column_names
    assert out.column("tags").to_pylist() == [["c"], ["d"]]


@pytest.mark.parametrize(
    ("values", "kind", "bad"),
    [
        ([5, 2**63 + 5, None, 2**64 - 1, 2**63 - 1], pa.uint64(), [1, 3]),
        ([5, 2**32 - 1], pa.uint32(), []),
        ([-5, 127], pa.int8(), []),
        ([-(2**63), 2**63 - 1], pa.int64(), []),
    ],
)
def test_integers_the_canonical_type_cannot_hold(
    values: list[int | None], kind: pa.DataType, bad: list[int]
) -> None:
    n = len(values)
    table = pa.table({**base(n), "max_output_tokens": pa.array(values, kind)})
    out = conform(table)
    assert out.schema.field("max_output_tokens").type == pa.int64()
    got = reasons(out)
    for i in range(n):
        if i in bad:
            assert got[i] == "max_output_tokens out of range"
            assert out.column("max_output_tokens")[i].as_py() is None
        else:
            assert got[i] != "max_output_tokens out of range"
            assert out.column("max_output_tokens")[i].as_py() == values[i]


def test_the_cell_error_comes_before_every_other_reason() -> None:
    table = pa.table(
        {
            "prompt_id": strings(["a", "a"]),
            "prompt": strings(["", BAD]),
            "tenant": strings(["other", "other"]),
        }
    )
    assert reasons(conform(table), "acme")[1] == "prompt is not valid UTF-8"


def test_blank_tenant_cells_take_the_jobs_tenant() -> None:
    table = pa.table({**base(3), "tenant": strings(["", "  ", None])})
    assert reasons(conform(table), "acme") == [None, None, None]


def test_finding_a_few_bad_cells_among_many_rows_is_fast() -> None:
    n = 200_000
    values: list[str | bytes | None] = [f"note number {i}" for i in range(n)]
    for i in (7, 123_456, n - 1):
        values[i] = BAD
    table = pa.table({**base(n), "notes": strings(values)})
    started = time.perf_counter()
    out = conform(table)
    elapsed = time.perf_counter() - started
    got = reasons(out)
    assert [i for i, r in enumerate(got) if r] == [7, 123_456, n - 1]
    assert elapsed < 2.0, elapsed
