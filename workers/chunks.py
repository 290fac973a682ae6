"""A chunk's input rows (:func:`read_chunk`), and what the tracker records of each result
part written (:func:`part_counts`).

Below the stages (workers/stages.py) and the helpers they call: ingest and job-wide dedupe
(workers/dedupe.py, filling the rows it held) read chunks; every writer of a result part,
and reconcile (workers/reconcile.py) recounting the parts it finds, record their counts.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from routing.cost import usd_text
from routing.plan import ChunkRef
from routing.validate import check_schema, conform
from workers.storage import Storage


def read_chunk(storage: Storage, chunk: ChunkRef) -> pa.Table:
    """The chunk's rows, with ``input_file`` and ``input_row`` added."""
    parquet = storage.parquet_file(chunk.uri)
    check_schema(parquet.schema_arrow, chunk.uri)
    table = parquet.read_row_groups(list(chunk.row_groups)).slice(chunk.skip, chunk.take)
    first = chunk.file_row_start
    return (
        conform(table)
        .append_column("input_file", pa.array([chunk.uri] * table.num_rows, pa.string()))
        .append_column("input_row", pa.array(range(first, first + table.num_rows), pa.int64()))
    )


def part_counts(table: pa.Table) -> dict[str, Any]:
    """What the tracker records per written part: rows by status, cost, baseline."""
    statuses = Counter(table.column("status").to_pylist())
    cost = pc.sum(table.column("cost_usd")).as_py() or Decimal(0)
    baseline = pc.sum(table.column("baseline_cost_usd")).as_py() or Decimal(0)
    return {
        "rows": dict(statuses),
        "cost_usd": usd_text(cost),
        "baseline_cost_usd": usd_text(baseline),
    }
