"""Malformed input, as a user would feed it to ``batch-router run``: every case gets its
documented outcome — a whole file rejected with a one-line reason naming file and column, or
a row coming out ``rejected`` with its reason — and no valid row is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cli import CliRunner, assert_clean_error

pytestmark = [pytest.mark.e2e, pytest.mark.security]

GOOD = "What is the boiling point of water at sea level?"

# (prompt_id, prompt, system, metadata, max_output_tokens) → expected error (None: ok)
ROW_CASES: list[tuple[str | None, str | None, str | None, str | None, int | None, str | None]] = [
    ("ok-plain", GOOD, None, None, None, None),
    ("ok-unicode", "¿Cuál es la capital de Japón? 東京?", None, None, None, None),
    ("ok-control", "tab\there\r\nand a bell \x07 char: what is 2+2?", None, None, None, None),
    ("ok-nested-json-metadata", GOOD + " (2)", None, json.dumps({"a": {"b": [1, 2]}}), None, None),
    ("null-prompt", None, None, None, None, "prompt is null"),
    ("empty-prompt", "", None, None, None, "prompt is empty"),
    ("blank-prompt", " \n\t ", None, None, None, "prompt is empty"),
    ("huge-prompt", "x" * 1_000_000, None, None, None, "prompt longer than 200000 characters"),
    ("nul-prompt", "before\x00after", None, None, None, "prompt contains a NUL character"),
    ("nul-system", GOOD + " (3)", "be\x00brief", None, None, "system contains a NUL character"),
    (
        "huge-metadata",
        GOOD + " (4)",
        None,
        json.dumps({"x": "y" * 70_000}),
        None,
        "metadata larger",
    ),
    ("zero-max", GOOD + " (5)", None, None, 0, "max_output_tokens must be > 0"),
    ("negative-max", GOOD + " (6)", None, None, -5, "max_output_tokens must be > 0"),
    (None, GOOD + " (7)", None, None, None, "prompt_id is null"),
    ("   ", GOOD + " (8)", None, None, None, "prompt_id is empty"),
    ("ok-plain", GOOD + " (9)", None, None, None, "duplicate prompt_id"),
    ("ok-lone-surrogate", "broken \ud800 text: what is 3+3?", None, None, None, None),
]


def _rows_file(path: Path) -> None:
    cols = list(zip(*ROW_CASES, strict=True))
    prompts = [
        # a lone surrogate cannot be UTF-8 encoded: the writer replaces it, as any would
        p.encode("utf-8", "replace").decode() if isinstance(p, str) else p
        for p in cols[1]
    ]
    table = pa.table(
        {
            "prompt_id": pa.array(cols[0], pa.string()),
            "prompt": pa.array(prompts, pa.string()),
            "system": pa.array(cols[2], pa.string()),
            "metadata": pa.array(cols[3], pa.string()),
            "max_output_tokens": pa.array(cols[4], pa.int64()),
            "nested": pa.array([{"k": i, "tags": ["a", "b"]} for i in range(len(ROW_CASES))]),
        }
    )
    pq.write_table(table, path)


def _results(out: Path) -> pa.Table:
    [root] = sorted(out.glob("job_id=*"))
    parts = sorted((root / "results").glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")


def test_bad_rows_are_rejected_with_their_reason_and_good_rows_answered(
    tmp_path: Path, cli: CliRunner
) -> None:
    _rows_file(tmp_path / "rows.parquet")
    proc = cli("run", "rows.parquet", "--output", "out", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["rows_in"] == manifest["rows_out"] == len(ROW_CASES)
    out = _results(tmp_path / "out").to_pylist()
    assert len(out) == len(ROW_CASES)
    by_row = {r["input_row"]: r for r in out}
    for i, (pid, _, _, _, _, expected) in enumerate(ROW_CASES):
        row = by_row[i]
        assert row["prompt_id"] == pid
        if expected is None:
            assert row["status"] == "ok", (pid, row["error"])
            assert row["response"]
        else:
            assert row["status"] == "rejected", pid
            assert row["error"].startswith(expected), (pid, row["error"])
        # the nested column is carried through untouched
        assert row["nested"] == {"k": i, "tags": ["a", "b"]}


@pytest.mark.parametrize(
    ("name", "make", "needles"),
    [
        (
            "corrupt",
            lambda p: p.write_bytes(b"PAR1 this is not parquet"),
            ["not a readable Parquet"],
        ),
        ("csv", lambda p: p.write_text("prompt_id,prompt\n1,hi\n"), ["not a readable Parquet"]),
        (
            "no-prompt",
            lambda p: pq.write_table(pa.table({"prompt_id": ["a"], "text": ["hi"]}), p),
            ["required column 'prompt' is missing"],
        ),
        (
            "int-prompt",
            lambda p: pq.write_table(pa.table({"prompt_id": ["a"], "prompt": [1]}), p),
            ["column 'prompt' must be string"],
        ),
        (
            "list-prompt",
            lambda p: pq.write_table(pa.table({"prompt_id": ["a"], "prompt": [["x"]]}), p),
            ["column 'prompt' must be string"],
        ),
        (
            "reserved",
            lambda p: pq.write_table(
                pa.table({"prompt_id": ["a"], "prompt": ["hi"], "__br_x": [1]}), p
            ),
            ["'__br_' are reserved"],
        ),
    ],
)
def test_bad_files_are_rejected_whole_naming_file_and_column(
    tmp_path: Path, cli: CliRunner, name: str, make, needles: list[str]
) -> None:  # type: ignore[no-untyped-def]
    make(tmp_path / f"{name}.parquet")
    proc = cli("run", f"{name}.parquet", "--output", "out")
    assert_clean_error(proc, f"{name}.parquet", *needles)
    assert not list((tmp_path / "out").glob("job_id=*/results/*.parquet"))


def test_zero_rows_finish_as_an_empty_job(tmp_path: Path, cli: CliRunner) -> None:
    empty = pa.table({"prompt_id": pa.array([], pa.string()), "prompt": pa.array([], pa.string())})
    pq.write_table(empty, tmp_path / "empty.parquet")
    proc = cli("run", "empty.parquet", "--output", "out", "--json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["rows_in"] == manifest["rows_out"] == 0 and manifest["complete"]
