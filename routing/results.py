"""Assemble output rows in the result schema.

Every output table has the :data:`~routing.schema.RESULT_FIELDS` columns first, then
the input's own columns that the result does not define (carried through untouched).
Internal routing columns (``__br_*``) never reach the output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from routing.cost import ZERO
from routing.router import INTERNAL
from routing.schema import RESULT_COLUMNS, RESULT_FIELDS, Status


def passthrough_fields(schema: pa.Schema) -> list[pa.Field]:
    return [f for f in schema if f.name not in RESULT_COLUMNS and not f.name.startswith(INTERNAL)]


def assemble(base: pa.Table, values: Mapping[str, Sequence[Any] | pa.Array]) -> pa.Table:
    """Build the output table for the rows of ``base``.

    ``values`` gives result columns; a result column absent from ``values`` is taken from
    ``base`` when ``base`` has it, else filled with nulls.
    """
    n = base.num_rows
    columns: list[pa.Array | pa.ChunkedArray] = []
    for field in RESULT_FIELDS:
        if field.name in values:
            columns.append(pa.array(values[field.name], field.type))
        elif field.name in base.column_names:
            columns.append(base.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(n, field.type))
    extra = passthrough_fields(base.schema)
    columns.extend(base.column(f.name) for f in extra)
    return pa.Table.from_arrays(columns, schema=pa.schema([*RESULT_FIELDS, *extra]))


def rejected(base: pa.Table, reasons: Sequence[str], job_id: str, policy_version: str) -> pa.Table:
    """Output rows for rejected input rows: status ``rejected`` with the reason in ``error``."""
    n = base.num_rows
    return assemble(
        base,
        {
            "job_id": [job_id] * n,
            "status": [Status.REJECTED.value] * n,
            "attempts": [0] * n,
            "cache_hit": [False] * n,
            "policy_version": [policy_version] * n,
            "error": list(reasons),
            "cost_usd": [ZERO] * n,
            "baseline_cost_usd": [ZERO] * n,
            "batch_saved_usd": [ZERO] * n,
            "tier": [None] * n,
            "complexity_score": [None] * n,
            "route_reason": [None] * n,
            "dedupe_of": [None] * n,
        },
    )
