"""Rows a user feeds ``batch-router run`` that once broke a job or its billing (issue 13):

- finding 4: one undecodable cell (invalid UTF-8 in any string column, known, carried or
  nested; an unsigned ``max_output_tokens`` above the int64 range) rejects its row, naming
  column and problem; every other row is answered and the output reads back everywhere;
- finding 3: the job's tenant (``--tenant``, else ``default``) is the only tenant: a row
  naming another is rejected naming both, never billed to the tenant it names;
- finding 1: ``prompt_id``s repeated across chunks never overspend a budget cap."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from routing.policy import default_policy_text
from tests.cli import CliRunner

pytestmark = [pytest.mark.e2e, pytest.mark.security]

GOVERNED = Path(__file__).resolve().parents[2] / "infra" / "policies" / "governed.yaml"
HARD = (
    "Prove that the square root of 2 is irrational, then derive a general theorem, analyse "
    "the trade-offs of three proof styles, and design a step by step lesson plan in JSON "
    "format with exactly 5 parts.\n1. intro\n2. proof\n3. generalise"
)
BAD = b"caf\xe9 \xff\xfe"  # Latin-1 bytes: not UTF-8


def _results(out: Path) -> pa.Table:
    [root] = sorted(out.glob("job_id=*"))
    parts = sorted((root / "results").glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")


def _job_root(out: Path) -> Path:
    [root] = sorted(out.glob("job_id=*"))
    return root


# ---------------------------------------------------------------- finding 4: bad cells


def _strings(values: list[str | bytes | None]) -> pa.Array:
    """A string column whose bytes may be invalid UTF-8 (as a careless writer leaves them)."""
    raw = [v.encode() if isinstance(v, str) else v for v in values]
    return pa.array(raw, pa.binary()).view(pa.string())


STRING_COLUMNS = ("prompt_id", "prompt", "system", "tenant", "metadata", "domain",
                  "customer_tier", "notes")  # fmt: skip


def _cells_file(path: Path) -> list[str | None]:
    """Good rows around one bad cell per known string column, a carried string column
    (``notes``), a nested carried column (``tags``) and a uint64 ``max_output_tokens``
    above 2⁶³ − 1; returns each row's expected error (None: answered)."""
    n = len(STRING_COLUMNS) + 2 + 3
    cols: dict[str, list[str | bytes | None]] = {
        "prompt_id": [f"r{i}" for i in range(n)],
        "prompt": [f"What is the capital of country number {i}?" for i in range(n)],
        "system": ["Be brief."] * n,
        "tenant": [None] * n,
        "metadata": ['{"source": "crm"}'] * n,
        "domain": ["geography"] * n,
        "customer_tier": ["pro"] * n,
        "notes": [f"note {i}" for i in range(n)],
    }
    expected: list[str | None] = [None] * n
    for i, name in enumerate(STRING_COLUMNS, start=1):
        cols[name][i] = BAD
        expected[i] = f"{name} is not valid UTF-8"
    tags_row, max_row = len(STRING_COLUMNS) + 1, len(STRING_COLUMNS) + 2
    tag = [_strings(["a", "b"]) for _ in range(n)]
    tag[tags_row] = _strings(["ok", BAD])
    expected[tags_row] = "tags is not valid UTF-8"
    max_out = [64] * n
    max_out[max_row] = 2**63 + 5
    expected[max_row] = "max_output_tokens out of range"
    table = pa.table(
        {
            **{name: _strings(values) for name, values in cols.items()},
            "max_output_tokens": pa.array(max_out, pa.uint64()),
            "tags": pa.ListArray.from_arrays(
                pa.array(range(0, 2 * n + 1, 2), pa.int32()), pa.concat_arrays(tag)
            ),
        }
    )
    pq.write_table(table, path)
    return expected


def test_a_bad_cell_rejects_its_row_and_every_other_row_is_answered(
    tmp_path: Path, cli: CliRunner
) -> None:
    expected = _cells_file(tmp_path / "cells.parquet")
    proc = cli("run", "cells.parquet", "--output", "out", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["rows_in"] == manifest["rows_out"] == len(expected) and manifest["complete"]

    out = _results(tmp_path / "out")
    out.validate(full=True)  # every stored string is valid UTF-8 again
    rows = {r["input_row"]: r for r in out.to_pylist()}
    assert sorted(rows) == list(range(len(expected)))
    for i, error in enumerate(expected):
        row = rows[i]
        if error is None:
            assert row["status"] == "ok", (i, row["error"])
            assert row["response"] and row["notes"] == f"note {i}" and row["tags"] == ["a", "b"]
        else:
            assert (row["status"], row["error"]) == ("rejected", error), i
            assert row["cost_usd"] == 0 and row["response"] is None
    # an invalid string is kept as its lossy decoding; a bad nested cell becomes null
    assert rows[STRING_COLUMNS.index("notes") + 1]["notes"] == "caf\ufffd \ufffd\ufffd"
    assert rows[len(STRING_COLUMNS) + 1]["tags"] is None
    assert rows[len(STRING_COLUMNS) + 2]["max_output_tokens"] is None
    # the job's results read back as one dataset with polars
    [root] = sorted((tmp_path / "out").glob("job_id=*"))
    assert pl.read_parquet(root / "results" / "*.parquet").height == len(expected)


def test_a_file_of_only_undecodable_prompts_finishes(tmp_path: Path, cli: CliRunner) -> None:
    table = pa.table({"prompt_id": ["a", "b"], "prompt": _strings([BAD, b"\xc3"])})
    pq.write_table(table, tmp_path / "all-bad.parquet")
    proc = cli("run", "all-bad.parquet", "--output", "out", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = _results(tmp_path / "out")
    assert out.column("error").to_pylist() == ["prompt is not valid UTF-8"] * 2


# ---------------------------------------------------------------- finding 3: one tenant


def _tenants_file(path: Path) -> None:
    """The issue's reproduction: two identical rows naming different tenants, and a row
    without a tenant."""
    table = pa.table(
        {
            "prompt_id": ["acme-row", "victim-row", "no-tenant"],
            "prompt": [HARD, HARD, HARD + " (again)"],
            "tenant": ["acme", "victim-corp", None],
        }
    )
    pq.write_table(table, path)


def test_without_tenant_rows_never_pick_their_own(tmp_path: Path, cli: CliRunner) -> None:
    _tenants_file(tmp_path / "t.parquet")
    proc = cli("run", "t.parquet", "--output", "out", "--json", "--policy", str(GOVERNED))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads(proc.stdout)
    rows = {r["prompt_id"]: r for r in _results(tmp_path / "out").to_pylist()}
    assert rows["acme-row"]["error"] == (
        "tenant column 'acme' differs from the job's tenant 'default' (submit with --tenant acme)"
    )
    assert rows["victim-row"]["error"] == (
        "tenant column 'victim-corp' differs from the job's tenant 'default' "
        "(submit with --tenant victim-corp)"
    )
    assert rows["acme-row"]["status"] == rows["victim-row"]["status"] == "rejected"
    assert rows["no-tenant"]["status"] == "ok"
    assert {r["tenant"] for r in rows.values()} == {"default"}
    assert list(manifest["by_tenant"]) == ["default"]
    cost = _job_root(tmp_path / "out") / "cost"
    assert [p.name for p in cost.glob("day=*/tenant=*")] == ["tenant=default"]


def test_the_job_tenant_bills_rules_and_rejects_another(tmp_path: Path, cli: CliRunner) -> None:
    _tenants_file(tmp_path / "t.parquet")
    args = ("--output", "out", "--json", "--policy", str(GOVERNED), "--tenant", "acme")
    proc = cli("run", "t.parquet", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads(proc.stdout)
    rows = {r["prompt_id"]: r for r in _results(tmp_path / "out").to_pylist()}
    victim = rows["victim-row"]
    assert (victim["status"], victim["cost_usd"]) == ("rejected", 0)
    assert "'victim-corp'" in victim["error"] and "'acme'" in victim["error"]
    for pid in ("acme-row", "no-tenant"):  # acme's rule forbids expert for both
        assert rows[pid]["status"] == "ok" and rows[pid]["tier"] != "expert", rows[pid]
    assert {r["tenant"] for r in rows.values()} == {"acme"}
    assert list(manifest["by_tenant"]) == ["acme"]
    cost = _job_root(tmp_path / "out") / "cost"
    assert [p.name for p in cost.glob("day=*/tenant=*")] == ["tenant=acme"]


# ---------------------------------------------------------------- finding 1: repeated ids


def test_repeated_ids_across_chunks_stay_under_the_cap(tmp_path: Path, cli: CliRunner) -> None:
    """The issue's reproduction as a user runs it: 200 prompts, ids ``p{i % 10}``, 10 rows
    per chunk, a $0.003 job cap (before: 198 ok, $0.0079)."""
    cap = Decimal("0.003")
    data = yaml.safe_load(default_policy_text())
    data["budgets"] = {"on_exhausted": "over_budget", "job": {"usd": str(cap)}}
    (tmp_path / "capped.yaml").write_text(yaml.safe_dump(data))
    n = 200
    table = pa.table(
        {
            "prompt_id": [f"p{i % 10}" for i in range(n)],
            "prompt": [
                f"Ticket {i}: explain how tides form, in detail ({i * 13})." for i in range(n)
            ],
        }
    )
    pq.write_table(table, tmp_path / "ids.parquet")
    proc = cli("run", "ids.parquet", "--output", "out", "--json", "--policy", "capped.yaml",
               BATCH_ROUTER_ROWS_PER_CHUNK="10")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads(proc.stdout)
    out = pl.from_arrow(_results(tmp_path / "out"))
    assert isinstance(out, pl.DataFrame)
    spent = sum(out["cost_usd"].to_list(), Decimal(0))
    assert out.height == n and spent <= cap
    assert Decimal(manifest["totals"]["cost_usd"]) == spent
    assert out.filter(pl.col("error") == "duplicate prompt_id").height == n - 10
    assert out.filter(pl.col("status") == "ok").height <= 10
