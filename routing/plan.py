"""Job plans: chunk references computed from Parquet footers.

The unit of work is a :class:`ChunkRef` (object URI + row groups + a row slice), never
prompt text, so a plan for millions of rows is kilobytes. Planning is pure: it takes
the row-group sizes read from the footers.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, field_validator

from routing.frozen import Frozen
from routing.names import validate_job_id, validate_tenant


class FileInfo(Frozen):
    uri: str
    rows: int
    row_groups: tuple[int, ...] = Field(description="rows per row group")


class ChunkRef(Frozen):
    """Rows ``skip .. skip+take`` of the concatenated ``row_groups`` of ``uri``."""

    chunk: int
    uri: str
    row_groups: tuple[int, ...]
    skip: int = 0
    take: int
    file_row_start: int = Field(description="index in the file of the chunk's first row")


class JobContext(Frozen):
    """What every task of a job needs to know (travels in each message).

    The job id and the tenant are checked on every construction, so a Celery message
    carrying an unsafe one is refused when a worker decodes it (InputError: routing.names).
    """

    job_id: str
    job_root: str
    tenant: str | None
    policy_uri: str
    policy_version: str
    total_chunks: int
    classifier_uri: str | None = None  # the job's copy of a learned router (else heuristic)
    rows_total: int = 0  # the job's input rows (sizes the job's retry budget)
    # the job's carried columns when its files disagree on them (routing.carried); None is
    # left out of messages and plan.json, which then read as before the field existed
    carried_columns: str | None = Field(None, exclude_if=lambda value: value is None)

    @field_validator("job_id")
    @classmethod
    def _safe_job_id(cls, value: str) -> str:
        return validate_job_id(value)

    @field_validator("tenant")
    @classmethod
    def _safe_tenant(cls, value: str | None) -> str | None:
        return None if value is None else validate_tenant(value)


class JobPlan(Frozen):
    context: JobContext
    input_uri: str
    files: tuple[FileInfo, ...]
    chunks: tuple[ChunkRef, ...]
    rows_total: int
    created_at: str


def plan_chunks(files: Sequence[FileInfo], rows_per_chunk: int) -> list[ChunkRef]:
    """Group consecutive row groups into chunks of about ``rows_per_chunk`` rows; a row
    group larger than that is split into row slices."""
    chunks: list[ChunkRef] = []
    for info in files:
        start = 0
        pending: list[int] = []
        pending_rows = 0
        for index, size in enumerate(info.row_groups):
            if size == 0:
                start += size
                continue
            if size > rows_per_chunk:
                if pending:
                    chunks.append(
                        _chunk(
                            len(chunks), info.uri, pending, 0, pending_rows, start - pending_rows
                        )
                    )
                    pending, pending_rows = [], 0
                for skip in range(0, size, rows_per_chunk):
                    take = min(rows_per_chunk, size - skip)
                    chunks.append(_chunk(len(chunks), info.uri, [index], skip, take, start + skip))
            else:
                if pending_rows + size > rows_per_chunk and pending:
                    chunks.append(
                        _chunk(
                            len(chunks), info.uri, pending, 0, pending_rows, start - pending_rows
                        )
                    )
                    pending, pending_rows = [], 0
                pending.append(index)
                pending_rows += size
            start += size
        if pending:
            chunks.append(
                _chunk(len(chunks), info.uri, pending, 0, pending_rows, start - pending_rows)
            )
    return chunks


def _chunk(
    number: int, uri: str, groups: list[int], skip: int, take: int, first_row: int
) -> ChunkRef:
    return ChunkRef(
        chunk=number,
        uri=uri,
        row_groups=tuple(groups),
        skip=skip,
        take=take,
        file_row_start=first_row,
    )
