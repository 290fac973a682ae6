"""Input validation: whole files and single rows.

A file whose schema breaks the contract (a required column missing, a column of the
wrong type, a column name the output reserves) is rejected whole with an
:class:`InputError` naming the file and the column. A bad row never stops a job: it
gets a rejection reason and comes out with ``status=rejected``.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from routing.errors import InputError
from routing.policy import LimitsSpec
from routing.schema import OPTIONAL_INPUT, REQUIRED_INPUT, RESERVED

_STRINGS = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)


def _compatible(actual: pa.DataType, wanted: pa.DataType) -> bool:
    if pa.types.is_string(wanted):
        return any(check(actual) for check in _STRINGS) or bool(pa.types.is_null(actual))
    if pa.types.is_integer(wanted):
        return bool(pa.types.is_integer(actual) or pa.types.is_null(actual))
    return bool(actual == wanted)


def check_schema(schema: pa.Schema, source: str) -> None:
    """Raise :class:`InputError` when ``schema`` breaks the input contract."""
    # First: with a duplicated name, ``schema.field(name)`` below raises a bare KeyError.
    if len(set(schema.names)) != len(schema.names):
        raise InputError(f"{source}: duplicate column names {schema.names}")
    for name in REQUIRED_INPUT:
        if name not in schema.names:
            raise InputError(f"{source}: required column {name!r} is missing")
    for name, wanted in {**REQUIRED_INPUT, **OPTIONAL_INPUT}.items():
        if name in schema.names and not _compatible(schema.field(name).type, wanted):
            actual = schema.field(name).type
            raise InputError(f"{source}: column {name!r} must be {wanted}, found {actual}")
    for name in sorted(RESERVED & set(schema.names)):
        if carried_name(name) in schema.names:
            raise InputError(
                f"{source}: column {name!r} is an output column and {carried_name(name)!r} "
                "(its carried-through name) exists too"
            )
    if any(name.startswith("__br_") for name in schema.names):
        raise InputError(f"{source}: column names starting with '__br_' are reserved")


def carried_name(name: str) -> str:
    """The output name of an input column whose own name the output uses."""
    return f"src_{name}"


def conform(table: pa.Table) -> pa.Table:
    """Cast known columns to their canonical types and rename input columns that clash
    with output columns to ``src_<name>`` (the schema was checked before)."""
    table = table.rename_columns(
        [carried_name(n) if n in RESERVED else n for n in table.column_names]
    )
    for name, wanted in {**REQUIRED_INPUT, **OPTIONAL_INPUT}.items():
        if name in table.column_names and table.schema.field(name).type != wanted:
            index = table.column_names.index(name)
            table = table.set_column(index, name, table.column(name).cast(wanted))
    return table


def row_rejections(table: pa.Table, limits: LimitsSpec, job_tenant: str | None) -> pa.Array:
    """The first rejection reason of each row, or null when the row is valid."""
    prompt = table.column("prompt")
    pid = table.column("prompt_id")
    checks: list[tuple[pa.Array, str]] = [
        (pc.is_null(pid), "prompt_id is null"),
        (pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(pid)), 0), "prompt_id is empty"),
        (pc.is_null(prompt), "prompt is null"),
        (pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(prompt)), 0), "prompt is empty"),
        (
            pc.greater(pc.utf8_length(prompt), limits.max_prompt_chars),
            f"prompt longer than {limits.max_prompt_chars} characters",
        ),
        # NUL cannot travel in most provider protocols and is never meant in a prompt
        (pc.match_substring(prompt, "\x00"), "prompt contains a NUL character"),
    ]
    if "system" in table.column_names:
        checks.append(
            (pc.match_substring(table.column("system"), "\x00"), "system contains a NUL character")
        )
    if "metadata" in table.column_names:
        checks.append(
            (
                pc.greater(pc.binary_length(table.column("metadata")), limits.max_metadata_bytes),
                f"metadata larger than {limits.max_metadata_bytes} bytes",
            )
        )
    if "max_output_tokens" in table.column_names:
        checks.append(
            (pc.less_equal(table.column("max_output_tokens"), 0), "max_output_tokens must be > 0")
        )
    if job_tenant is not None and "tenant" in table.column_names:
        differs = pc.and_(
            pc.is_valid(table.column("tenant")), pc.not_equal(table.column("tenant"), job_tenant)
        )
        checks.append((differs, f"tenant column differs from the job's tenant {job_tenant!r}"))
    checks.append((_duplicate_ids(pid), "duplicate prompt_id"))
    reason: pa.Array = pa.nulls(table.num_rows, pa.string())
    for mask, text in reversed(checks):
        hit = pc.fill_null(mask, False)
        reason = pc.if_else(hit, pa.scalar(text), reason)
    return reason


def _duplicate_ids(pid: pa.ChunkedArray) -> pa.Array:
    """True for every occurrence of a prompt_id after its first (within this table)."""
    series = pl.Series(pid.combine_chunks())
    return (~series.is_first_distinct()).to_arrow()
