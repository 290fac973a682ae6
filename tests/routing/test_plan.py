"""Job planning from row-group sizes: every row exactly once, bounded chunks, deterministic."""

from __future__ import annotations

import json
from itertools import accumulate, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from routing.plan import ChunkRef, FileInfo, JobContext, JobPlan, plan_chunks
from tests.routing.helpers import PROPERTY


def _file(uri: str, groups: list[int]) -> FileInfo:
    return FileInfo(uri=uri, rows=sum(groups), row_groups=tuple(groups))


def _rows_read(chunk: ChunkRef, info: FileInfo) -> range:
    """The file rows a reader gets for ``chunk``: its row groups concatenated, then sliced
    (what ``read_row_groups(...).slice(skip, take)`` returns), as a range of file rows."""
    starts = [0, *accumulate(info.row_groups)]
    first, last = chunk.row_groups[0], chunk.row_groups[-1]
    between = [g for g in range(first, last + 1) if info.row_groups[g]]
    assert [g for g in chunk.row_groups if info.row_groups[g]] == between, (
        "a chunk's non-empty row groups are consecutive, so its rows are contiguous"
    )
    assert chunk.skip >= 0 and chunk.skip + chunk.take <= starts[last + 1] - starts[first], (
        "the slice lies inside the chunk's row groups"
    )
    return range(starts[first] + chunk.skip, starts[first] + chunk.skip + chunk.take)


def _check_plan(files: list[FileInfo], rows_per_chunk: int) -> list[ChunkRef]:
    chunks = plan_chunks(files, rows_per_chunk)
    by_uri = {f.uri: f for f in files}
    assert [c.chunk for c in chunks] == list(range(len(chunks))), "chunks numbered 0..n-1"
    seen: dict[str, list[range]] = {f.uri: [] for f in files}
    for chunk in chunks:
        assert 1 <= chunk.take <= rows_per_chunk, "no empty or oversized chunk"
        rows = _rows_read(chunk, by_uri[chunk.uri])
        assert rows.start == chunk.file_row_start, "input_row numbering starts at the right row"
        assert list(chunk.row_groups) == sorted(set(chunk.row_groups))
        seen[chunk.uri].append(rows)
    for info in files:
        # Ranges in plan order tile 0..rows with no gap and no overlap: every row exactly once.
        ends = [0] + [r.stop for r in seen[info.uri]]
        assert [r.start for r in seen[info.uri]] == ends[:-1], f"{info.uri}: gap or overlap"
        assert ends[-1] == info.rows, f"{info.uri}: rows missing at the end"
    return chunks


# ---------------------------------------------------------------- properties

_groups = st.lists(st.integers(min_value=0, max_value=120), min_size=0, max_size=8)


@settings(PROPERTY, max_examples=200)
@given(
    layouts=st.lists(_groups, min_size=1, max_size=4),
    rows_per_chunk=st.integers(min_value=1, max_value=500),
)
def test_every_row_exactly_once_for_any_layout(
    layouts: list[list[int]], rows_per_chunk: int
) -> None:
    files = [_file(f"s3://in/part-{i}.parquet", g) for i, g in enumerate(layouts)]
    chunks = _check_plan(files, rows_per_chunk)
    assert sum(c.take for c in chunks) == sum(f.rows for f in files)
    assert plan_chunks(files, rows_per_chunk) == chunks, "deterministic"


@settings(PROPERTY, max_examples=150)
@given(
    groups=st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=30),
    rows_per_chunk=st.integers(min_value=100, max_value=1000),
)
def test_small_row_groups_are_packed_greedily(groups: list[int], rows_per_chunk: int) -> None:
    # When no group needs splitting, a chunk closes only because the next group would
    # overflow it: adjacent chunks together exceed rows_per_chunk.
    chunks = _check_plan([_file("f", groups)], rows_per_chunk)
    assert all(c.skip == 0 for c in chunks)
    for left, right in pairwise(chunks):
        assert left.take + groups[right.row_groups[0]] > rows_per_chunk


@PROPERTY
@given(
    size=st.integers(min_value=1, max_value=3000),
    rows_per_chunk=st.integers(min_value=1, max_value=700),
)
def test_a_single_big_row_group_is_sliced_evenly(size: int, rows_per_chunk: int) -> None:
    chunks = _check_plan([_file("f", [size])], rows_per_chunk)
    assert len(chunks) == -(-size // rows_per_chunk)
    assert all(c.take == rows_per_chunk for c in chunks[:-1])
    assert [c.skip for c in chunks] == [i * rows_per_chunk for i in range(len(chunks))]


@settings(PROPERTY, max_examples=40)
@given(layouts=st.lists(_groups, min_size=2, max_size=4))
def test_chunks_never_span_files(layouts: list[list[int]]) -> None:
    files = [_file(f"f{i}", g) for i, g in enumerate(layouts)]
    chunks = plan_chunks(files, 250)
    order = [f.uri for f in files]
    positions = [order.index(c.uri) for c in chunks]
    assert positions == sorted(positions), "files are planned in the order given"


# ---------------------------------------------------------------- examples


def test_uniform_row_groups_group_into_chunks() -> None:
    chunks = _check_plan([_file("f", [100] * 10)], rows_per_chunk=300)
    assert [c.row_groups for c in chunks] == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    assert [c.file_row_start for c in chunks] == [0, 300, 600, 900]
    assert [c.take for c in chunks] == [300, 300, 300, 100]


def test_big_row_group_between_small_ones() -> None:
    chunks = _check_plan([_file("f", [50, 250, 30])], rows_per_chunk=100)
    assert [(c.row_groups, c.skip, c.take, c.file_row_start) for c in chunks] == [
        ((0,), 0, 50, 0),
        ((1,), 0, 100, 50),
        ((1,), 100, 100, 150),
        ((1,), 200, 50, 250),
        ((2,), 0, 30, 300),
    ]


def test_row_group_exactly_the_chunk_size_is_not_split() -> None:
    chunks = _check_plan([_file("f", [100, 100])], rows_per_chunk=100)
    assert [(c.row_groups, c.skip, c.take) for c in chunks] == [((0,), 0, 100), ((1,), 0, 100)]


def test_empty_files_and_row_groups_make_no_chunks() -> None:
    assert plan_chunks([_file("empty", []), _file("zeros", [0, 0])], 10) == []
    chunks = _check_plan([_file("f", [0, 5, 0, 5, 0])], rows_per_chunk=100)
    assert len(chunks) == 1
    assert chunks[0].take == 10
    assert chunks[0].file_row_start == 0


def test_chunk_numbers_continue_across_files() -> None:
    chunks = _check_plan([_file("a", [10, 10]), _file("b", [10])], rows_per_chunk=10)
    assert [(c.chunk, c.uri, c.file_row_start) for c in chunks] == [
        (0, "a", 0),
        (1, "a", 10),
        (2, "b", 0),
    ]


def test_ten_million_rows_plan_to_a_small_plan() -> None:
    # The unit of work is a reference: a 10M-row job is a few hundred small chunk refs.
    files = [_file(f"s3://in/part-{i:03d}.parquet", [131_072] * 8) for i in range(10)]
    chunks = plan_chunks(files, rows_per_chunk=50_000)
    assert sum(c.take for c in chunks) == 10 * 8 * 131_072
    assert all(c.take <= 50_000 for c in chunks)
    assert len(json.dumps([c.model_dump() for c in chunks])) < 200_000


# ---------------------------------------------------------------- the frozen values


def test_plan_values_are_frozen_and_strict() -> None:
    ref = ChunkRef(chunk=0, uri="u", row_groups=(0,), take=1, file_row_start=0)
    with pytest.raises(ValidationError):
        ref.take = 2  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ChunkRef(chunk=0, uri="u", row_groups=(0,), take=1, file_row_start=0, rows=3)  # type: ignore[call-arg]


def test_job_plan_round_trips_through_json() -> None:
    files = [_file("s3://in/a.parquet", [3, 4])]
    ctx = JobContext(
        job_id="20250101T000000Z-abcdef",
        job_root="s3://out/job_id=x",
        tenant=None,
        policy_uri="s3://out/job_id=x/_job/policy.yaml",
        policy_version="p-000000000000",
        total_chunks=1,
    )
    plan = JobPlan(
        context=ctx,
        input_uri="s3://in/",
        files=tuple(files),
        chunks=tuple(plan_chunks(files, 10)),
        rows_total=7,
        created_at="2025-01-01T00:00:00+00:00",
    )
    again = JobPlan.model_validate(json.loads(json.dumps(plan.model_dump(mode="json"))))
    assert again == plan
