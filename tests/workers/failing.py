"""Inputs that planning accepts but a job cannot read (issue 13, finding 4): the helpers of
tests/workers/test_hardening_failure.py, tests/e2e/test_hardening_job_failure.py and
tests/ops/test_hardening_watch_fail.py."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

TRUNCATED = "Invalid or truncated PLAIN-encoded BYTE_ARRAY data"  # pyarrow's ArrowInvalid


def prompts_table(rows: int, tag: str) -> pa.Table:
    """``rows`` distinct prompts, ids ``<tag>-<i>``."""
    prompts = [f"Question {tag}-{i}: what is {i} plus {i}?" for i in range(rows)]
    return pa.table({"prompt_id": [f"{tag}-{i}" for i in range(rows)], "prompt": prompts})


def corrupt_after_footer(rows: int = 40, per_group: int = 20, tag: str = "c") -> bytes:
    """A Parquet file whose footer and schema are valid — planning, which reads footers
    only, accepts it — but whose last row group stores a string length running past the end
    of its page: reading that row group raises ``ArrowInvalid`` (:data:`TRUNCATED`), a
    deterministic data error found only by ingest (a file damaged, or replaced, after
    planning)."""
    table = prompts_table(rows, tag)
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        row_group_size=per_group,
        compression="none",
        use_dictionary=False,
        write_statistics=False,
    )
    data = bytearray(sink.getvalue())
    value = table.column("prompt")[rows - per_group // 2].as_py().encode()
    at = data.find(value)
    assert at > 4 and data.count(value) == 1
    data[at - 4 : at] = b"\xff\xff\xff\x7f"  # the value's PLAIN length prefix
    return bytes(data)
