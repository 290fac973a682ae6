"""Job planning from Parquet footers only, and job ids."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from routing.errors import InputError
from routing.plan import JobPlan
from routing.policy import load_policy, parse_policy
from workers.jobs import plan as plan_module
from workers.jobs.plan import build_plan, new_job_id
from workers.settings import S3Settings
from workers.storage import Storage

STORAGE = Storage(S3Settings())


def _table(rows: int, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "prompt_id": pa.array([f"p{start + i}" for i in range(rows)], pa.string()),
            "prompt": pa.array([f"question number {start + i}?" for i in range(rows)], pa.string()),
            "extra": pa.array(range(rows), pa.int64()),
        }
    )


def _write(path: Path, *groups: int) -> Path:
    """A file with row groups of the given sizes; uncompressed and dictionary-free, so
    its data pages are plain bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, _table(0).schema, compression="none", use_dictionary=False) as w:
        start = 0
        for size in groups:
            w.write_table(_table(size, start), row_group_size=max(size, 1))
            start += size
    return path


def _scramble_data_pages(path: Path) -> None:
    """Overwrite everything between the leading magic and the footer: only the footer
    (metadata length and ``PAR1`` at the end) stays readable."""
    raw = bytearray(path.read_bytes())
    footer_len = int.from_bytes(raw[-8:-4], "little")
    footer_start = len(raw) - 8 - footer_len
    raw[4:footer_start] = b"\xff" * (footer_start - 4)
    path.write_bytes(bytes(raw))


@pytest.fixture
def input_folder(tmp_path: Path) -> Path:
    """a: 3 row groups of 100; b: 250 + 50; plus files a drop folder holds that are not input."""
    folder = tmp_path / "in"
    _write(folder / "a.parquet", 100, 100, 100)
    _write(folder / "b.parquet", 250, 50)
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / "notes.txt").write_text("not input")
    _write(folder / ".hidden.parquet", 5)
    for name in ("a.parquet", "b.parquet"):
        _scramble_data_pages(folder / name)
    return folder


def test_plan_reads_footers_only(input_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(OSError):  # the data pages really are unreadable
        pq.read_table(input_folder / "a.parquet")

    policy = load_policy()
    plan = build_plan(STORAGE, policy, str(input_folder), str(tmp_path / "out"), 200, "j1", "acme")

    assert [Path(f.uri).name for f in plan.files] == ["a.parquet", "b.parquet"]
    assert [(f.rows, f.row_groups) for f in plan.files] == [
        (300, (100, 100, 100)),
        (300, (250, 50)),
    ]
    assert plan.rows_total == 600
    chunks = [
        (Path(c.uri).name, c.row_groups, c.skip, c.take, c.file_row_start) for c in plan.chunks
    ]
    assert chunks == [
        ("a.parquet", (0, 1), 0, 200, 0),
        ("a.parquet", (2,), 0, 100, 200),
        ("b.parquet", (0,), 0, 200, 0),  # a row group larger than a chunk is sliced
        ("b.parquet", (0,), 200, 50, 200),
        ("b.parquet", (1,), 0, 50, 250),
    ]
    assert [c.chunk for c in plan.chunks] == list(range(5))
    assert sum(c.take for c in plan.chunks) == plan.rows_total
    assert plan.context.total_chunks == 5
    assert (plan.context.job_id, plan.context.tenant) == ("j1", "acme")


def test_plan_and_policy_are_stored_with_the_job(input_folder: Path, tmp_path: Path) -> None:
    policy = load_policy()
    plan = build_plan(STORAGE, policy, str(input_folder), str(tmp_path / "out"), 1000)
    root = tmp_path / "out" / f"job_id={plan.context.job_id}"
    assert plan.context.job_root == str(root)

    stored = JobPlan.model_validate(json.loads((root / "_job" / "plan.json").read_text()))
    assert stored == plan
    assert plan.context.policy_uri == str(root / "_job" / "policy.yaml")
    stored_policy = parse_policy((root / "_job" / "policy.yaml").read_text())
    assert stored_policy.version == policy.version == plan.context.policy_version
    # planning writes nothing else: no results until the job runs
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "_job", "_job/plan.json", "_job/policy.yaml"
    ]  # fmt: skip


def test_a_file_with_no_rows_makes_no_chunks(tmp_path: Path) -> None:
    _write(tmp_path / "in" / "empty.parquet")
    _write(tmp_path / "in" / "full.parquet", 10, 10, 10)
    plan = build_plan(STORAGE, load_policy(), str(tmp_path / "in"), str(tmp_path / "out"), 100)
    assert plan.rows_total == 30
    assert [(Path(c.uri).name, c.take) for c in plan.chunks] == [("full.parquet", 30)]


def test_a_rejected_input_writes_nothing(tmp_path: Path) -> None:
    pq.write_table(pa.table({"prompt_id": ["a"]}), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"bad\.parquet: required column 'prompt' is missing"):
        build_plan(STORAGE, load_policy(), str(tmp_path / "bad.parquet"), str(tmp_path / "out"), 10)
    assert not (tmp_path / "out").exists()


JOB_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


def test_job_ids_are_unique_and_path_safe() -> None:
    ids = [new_job_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(JOB_ID.match(i) for i in ids), ids[:3]


def test_job_ids_sort_in_time_order(monkeypatch: pytest.MonkeyPatch) -> None:
    moments = [
        datetime(2026, 1, 1, 0, 0, 9, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC),
        datetime(2026, 1, 1, 9, 59, 59, tzinfo=UTC),
        datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC),
        datetime(2026, 9, 30, 23, 0, 0, tzinfo=UTC),
        datetime(2026, 10, 1, 0, 0, 0, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC),
    ]
    clock = iter(moments)

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return next(clock)

    monkeypatch.setattr(plan_module, "datetime", FakeDatetime)
    ids = [new_job_id() for _ in moments]
    assert sorted(ids) == ids
    assert ids[0].startswith("20260101T000009Z-")
