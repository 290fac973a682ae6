"""The files of one job may disagree on the columns the results carry (issue 13, finding 9):
every job's ``results/`` still reads as one dataset — polars, ``pyarrow.dataset`` and, when
installed, duckdb — or the job is refused at plan time naming the column, both types and
both files.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from routing import carried
from routing.errors import InputError
from tests.cli import CliRunner, assert_clean_error

PROMPTS = ["What is 2 + 2?", "Name a colour.", "Translate 'cat' to French.", "Hi"]


def _file(path: Path, **columns: pa.Array) -> Path:
    n = len(next(iter(columns.values()))) if columns else len(PROMPTS)
    base = {
        "prompt_id": pa.array([f"{path.stem}-{i}" for i in range(n)]),
        "prompt": pa.array((PROMPTS * n)[:n]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({**base, **columns}), path)
    return path


def _schema(**types: pa.DataType) -> pa.Schema:
    return pa.schema([("prompt_id", pa.string()), ("prompt", pa.string()), *types.items()])


# ---------------------------------------------------------------- the pure rules


@pytest.mark.parametrize(
    ("a", "b", "wider"),
    [
        (pa.int32(), pa.int64(), pa.int64()),
        (pa.uint16(), pa.int8(), pa.int32()),
        (pa.uint32(), pa.int64(), pa.int64()),
        (pa.uint8(), pa.uint32(), pa.uint32()),
        (pa.float32(), pa.float64(), pa.float64()),
        (pa.null(), pa.timestamp("ms"), pa.timestamp("ms")),
        (pa.string(), pa.large_string(), pa.large_string()),
        (pa.dictionary(pa.int32(), pa.string()), pa.string(), pa.string()),
        (pa.binary(), pa.large_binary(), pa.large_binary()),
        (pa.list_(pa.int64()), pa.list_(pa.int64()), pa.list_(pa.int64())),
    ],
)
def test_lossless_widenings(a: pa.DataType, b: pa.DataType, wider: pa.DataType) -> None:
    assert carried.promote(a, b) == wider
    assert carried.promote(b, a) == wider


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (pa.int64(), pa.string()),
        (pa.uint64(), pa.int64()),
        (pa.int64(), pa.float64()),
        (pa.timestamp("ms"), pa.timestamp("us")),
        (pa.struct([("p", pa.int64())]), pa.struct([("p", pa.int64()), ("q", pa.string())])),
        (pa.list_(pa.int32()), pa.list_(pa.int64())),
    ],
)
def test_lossy_or_ambiguous_pairs_have_no_common_type(a: pa.DataType, b: pa.DataType) -> None:
    assert carried.promote(a, b) is None


def test_files_that_agree_record_nothing() -> None:
    files = [("a", _schema(x=pa.int64(), system=pa.string()))] * 3
    assert carried.job_columns(files) is None


def test_known_columns_are_compared_as_ingest_conforms_them() -> None:
    """``max_output_tokens`` int32 and int64 both become int64; ``input_tokens`` is carried as
    ``src_input_tokens``."""
    files = [
        ("a", _schema(max_output_tokens=pa.int32(), input_tokens=pa.int32())),
        ("b", _schema(max_output_tokens=pa.int64(), input_tokens=pa.int32())),
    ]
    assert carried.job_columns(files) is None
    names = [f.name for f in carried.carried_fields(files[0][1])]
    assert names == ["prompt", "max_output_tokens", "src_input_tokens"]


def test_unify_names_the_column_both_types_and_both_files() -> None:
    files = [("in/a.parquet", _schema(x=pa.int64())), ("in/b.parquet", _schema(x=pa.string()))]
    with pytest.raises(InputError) as caught:
        carried.job_columns(files)
    text = str(caught.value)
    for needle in ("in/b.parquet", "'x'", "string", "int64", "in/a.parquet"):
        assert needle in text, text


def test_apply_casts_fills_and_orders_a_chunk() -> None:
    files = [
        ("a", _schema(x=pa.int32(), note=pa.string())),
        ("b", _schema(tag=pa.string(), x=pa.int64())),
    ]
    columns = carried.job_columns(files)
    assert columns is not None
    chunk_b = pa.table(
        {
            "prompt_id": ["b-0"],
            "tag": ["t"],
            "prompt": ["hi"],
            "x": pa.array([2**40], pa.int64()),
            "input_row": pa.array([0], pa.int64()),
        }
    )
    out = carried.apply(chunk_b, columns)
    assert out.column_names == ["prompt_id", "input_row", "prompt", "x", "note", "tag"]
    assert out.schema.field("x").type == pa.int64()
    assert out.column("note").to_pylist() == [None]
    assert out.column("x").to_pylist() == [2**40]
    assert carried.apply(chunk_b, None) is chunk_b


# ---------------------------------------------------------------- as a user runs it


@pytest.mark.e2e
def test_a_column_typed_differently_in_two_files_is_refused_at_plan_time(
    cli: CliRunner, tmp_path: Path
) -> None:
    _file(tmp_path / "in" / "a.parquet", x=pa.array([1, 2, 3, 4], pa.int64()))
    _file(tmp_path / "in" / "b.parquet", x=pa.array(["1", "2", "3", "4"]))
    proc = cli("run", "in", "--output", "out")
    assert_clean_error(proc, "b.parquet", "a.parquet", "'x'", "int64", "string")
    assert not (tmp_path / "out").exists()


def _read_everywhere(results: Path) -> pl.DataFrame:
    """The results read as one dataset by each engine a customer uses."""
    frame = pl.read_parquet(results / "*.parquet")
    table = ds.dataset(results, format="parquet").to_table()
    assert table.num_rows == frame.height
    try:
        import duckdb
    except ImportError:  # not a dependency of the project; polars and pyarrow suffice
        return frame
    count = duckdb.sql(f"select count(*) from read_parquet('{results}/*.parquet')").fetchone()
    assert count is not None and count[0] == frame.height
    return frame


@pytest.mark.e2e
def test_results_of_files_that_disagree_read_as_one_dataset(cli: CliRunner, tmp_path: Path) -> None:
    """int32 / int64, string / large_string, a column in one file only, a known optional
    column (``system``) in one file only, and the same prompts in both files (job-wide
    duplicates, whose part is written at finalize)."""
    _file(
        tmp_path / "in" / "a.parquet",
        x=pa.array([1, 2, 3, 4], pa.int32()),
        note=pa.array(["n1", "n2", None, "n4"]),
        system=pa.array(["Be brief.", None, None, None]),
    )
    _file(
        tmp_path / "in" / "b.parquet",
        note=pa.array(["m1", "m2", "m3", "m4"], pa.large_string()),
        x=pa.array([2**40, 6, 7, 8], pa.int64()),
        only_b=pa.array([True, False, True, False]),
    )
    proc = cli("run", "in", "--output", "out", "--job-id", "mixed", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = tmp_path / "out" / "job_id=mixed" / "results"
    assert len(list(results.glob("*.parquet"))) >= 2
    frame = _read_everywhere(results).sort("prompt_id")
    assert frame.height == 8
    assert frame.schema["x"] == pl.Int64 and frame.schema["only_b"] == pl.Boolean
    assert frame["x"].to_list() == [1, 2, 3, 4, 2**40, 6, 7, 8]
    assert frame["note"].to_list() == ["n1", "n2", None, "n4", "m1", "m2", "m3", "m4"]
    assert frame["only_b"].to_list() == [None] * 4 + [True, False, True, False]
    assert frame["system"].to_list() == ["Be brief."] + [None] * 7
    assert frame["dedupe_of"].drop_nulls().len() == 3, "b's prompts answered once, by a's"
    plan = json.loads((results.parent / "_job" / "plan.json").read_text())
    assert plan["context"]["carried_columns"] is not None


@pytest.mark.e2e
def test_results_of_files_that_agree_are_planned_as_before(cli: CliRunner, tmp_path: Path) -> None:
    for name in ("a", "b"):
        _file(tmp_path / "in" / f"{name}.parquet", x=pa.array([1, 2, 3, 4], pa.int64()))
    proc = cli("run", "in", "--output", "out", "--job-id", "same")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = tmp_path / "out" / "job_id=same"
    plan = json.loads((job / "_job" / "plan.json").read_text())
    assert "carried_columns" not in plan["context"]  # messages as before: nothing to unify
    assert _read_everywhere(job / "results").height == 8
