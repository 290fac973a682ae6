"""Data minimisation: which rows keep no prompt, system prompt or response in the outputs.

``minimise:`` in the policy is a list of entries; a row matches an entry when its tenant
is in ``tenants``, its routed tier (the ``tier`` column) in ``tiers`` and its customer
tier in ``customer_tiers`` (an omitted list matches every row). A matching row's
``drop`` fields are written as null in its result part and its ``minimised`` column
lists them (``"prompt,response,system"``): only fingerprints (the audit trail's) remain
of the text. Pure: the stages call :func:`minimise` on a table before writing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

Field_ = Literal["prompt", "response", "system"]
FIELDS: tuple[Field_, ...] = ("prompt", "response", "system")
COLUMN = "minimised"


class MinimiseSpec(BaseModel):
    """One ``minimise:`` entry: for these tenants / tiers / customer tiers, drop these
    fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenants: tuple[str, ...] | None = None
    tiers: tuple[str, ...] | None = None
    customer_tiers: tuple[str, ...] | None = None
    drop: tuple[Field_, ...] = Field(FIELDS, min_length=1)

    @field_validator("tenants", "tiers", "customer_tiers", "drop", mode="before")
    @classmethod
    def _as_tuple(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


def _column(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    return table.column(name) if name in table.column_names else None


def _matches(table: pa.Table, entry: MinimiseSpec) -> pa.Array:
    """Per row: does ``entry`` apply (a null value matches no list)?"""
    hit = pa.array([True] * table.num_rows, pa.bool_())
    tests = (
        ("tenant", entry.tenants),
        ("tier", entry.tiers),
        ("customer_tier", entry.customer_tiers),
    )
    for name, wanted in tests:
        if wanted is None:
            continue
        column = _column(table, name)
        if column is None:
            return pa.array([False] * table.num_rows, pa.bool_())
        found = pc.fill_null(pc.is_in(column, pa.array(wanted, pa.string())), False)
        hit = pc.and_(hit, found)
    return hit


def dropped(table: pa.Table, entries: Sequence[MinimiseSpec]) -> list[str | None]:
    """Per row, the fields to drop (comma-separated, in :data:`FIELDS` order), or None."""
    per_field = {f: pa.array([False] * table.num_rows, pa.bool_()) for f in FIELDS}
    for entry in entries:
        hit = _matches(table, entry)
        for f in entry.drop:
            per_field[f] = pc.or_(per_field[f], hit)
    masks = {f: m.to_pylist() for f, m in per_field.items()}
    return [",".join(f for f in FIELDS if masks[f][i]) or None for i in range(table.num_rows)]


def minimise(table: pa.Table, entries: Sequence[MinimiseSpec]) -> pa.Table:
    """``table`` with the dropped fields nulled per row and the ``minimised`` column set
    (a table without the column keeps it absent when nothing is dropped)."""
    if not entries or table.num_rows == 0:
        return table
    drops = dropped(table, entries)
    if not any(drops):
        return table
    for f in FIELDS:
        if f not in table.column_names:
            continue
        hit = pa.array([d is not None and f in d.split(",") for d in drops], pa.bool_())
        column = table.column(f)
        nulled = pc.if_else(hit, pa.nulls(table.num_rows, column.type), column)
        table = table.set_column(table.column_names.index(f), f, nulled)
    marks = pa.array(drops, pa.string())
    if COLUMN in table.column_names:
        return table.set_column(table.column_names.index(COLUMN), COLUMN, marks)
    return table.append_column(COLUMN, marks)
