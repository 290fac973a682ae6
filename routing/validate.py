"""Input validation: whole files and single rows.

A file whose schema breaks the contract (a required column missing, a column of the
wrong type, a column name the output reserves) is rejected whole with an
:class:`InputError` naming the file and the column. A bad row never stops a job: it
gets a rejection reason and comes out with ``status=rejected``.

A bad *cell* is a bad row too. Planning reads footers only, so a file of the right
schema may still hold a string cell that is not valid UTF-8 (in any column, known,
carried or nested) or an integer the canonical type cannot hold (a ``uint64``
``max_output_tokens`` above 2⁶³ − 1). :func:`conform` finds them (one vectorised Arrow
validation per chunk; only a column that fails it is searched, by bisection), makes the
table sound (an invalid string becomes its lossy decoding, U+FFFD for each bad byte; an
out-of-range integer or a bad nested cell becomes null) and names the problem in
:data:`~routing.schema.CELL_ERROR`, which :func:`row_rejections` reports first.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from routing.errors import InputError
from routing.policy import LimitsSpec
from routing.schema import CELL_ERROR, DEFAULT_TENANT, OPTIONAL_INPUT, REQUIRED_INPUT, RESERVED

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
    with output columns to ``src_<name>`` (the schema was checked before). A cell that
    cannot be conformed is repaired and named in :data:`CELL_ERROR` (see the module doc);
    the column is added only when there is such a cell."""
    table, problems = _sound_text(table)
    table = table.rename_columns(
        [carried_name(n) if n in RESERVED else n for n in table.column_names]
    )
    for name, wanted in {**REQUIRED_INPUT, **OPTIONAL_INPUT}.items():
        if name in table.column_names and table.schema.field(name).type != wanted:
            column, bad = _cast(table.column(name), wanted)
            table = table.set_column(table.column_names.index(name), name, column)
            if bad is not None:
                problems.append((bad, f"{name} out of range"))
    if not problems:
        return table
    reason: pa.Array = pa.nulls(table.num_rows, pa.string())
    for mask, text in reversed(problems):
        reason = pc.if_else(mask, pa.scalar(text), reason)
    return table.append_column(CELL_ERROR, reason)


# ---------------------------------------------------------------- bad cells


def _cast(column: pa.ChunkedArray, wanted: pa.DataType) -> tuple[pa.ChunkedArray, pa.Array | None]:
    """``column`` cast to ``wanted``; for integers, values ``wanted`` cannot hold become
    null and are flagged (the mask), instead of failing the whole cast."""
    if not (pa.types.is_integer(column.type) and pa.types.is_integer(wanted)):
        return column.cast(wanted), None
    cast = pc.cast(column, wanted, safe=False)
    back = pc.cast(cast, column.type, safe=False)
    sign = pc.not_equal(
        pc.less(cast, pa.scalar(0, wanted)), pc.less(column, pa.scalar(0, column.type))
    )
    bad = pc.fill_null(pc.or_(pc.not_equal(back, column), sign), False)
    if not pc.any(bad).as_py():
        return cast, None
    return pc.if_else(bad, pa.scalar(None, wanted), cast), _flat(bad)


def _flat(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _sound_text(table: pa.Table) -> tuple[pa.Table, list[tuple[pa.Array, str]]]:
    """The table with every cell that fails Arrow's full validation (invalid UTF-8, in any
    column, nested ones too) repaired, and per repaired column its rows and the reason."""
    try:
        table.validate(full=True)  # the normal case: one vectorised pass, nothing to do
        return table, []
    except pa.ArrowInvalid:
        pass
    known = [n for n in (*REQUIRED_INPUT, *OPTIONAL_INPUT) if n in table.column_names]
    order = known + [n for n in table.column_names if n not in known]
    problems: list[tuple[pa.Array, str]] = []
    for name in order:
        index = table.column_names.index(name)
        column = _flat(table.column(index))
        coded = pa.types.is_dictionary(column.type)
        plain = column.dictionary_decode() if coded else column
        found = _bad_cells(plain)
        if found is None and not (coded and _valid(column) is not None):
            continue
        mask, detail = found or (pa.array(np.zeros(len(plain), dtype=bool)), "")
        fixed = _repaired(plain, mask)  # a dictionary is rebuilt: no unused bad entry left
        field = table.field(index).with_nullable(True)  # a bad nested cell becomes null
        table = table.set_column(index, field, fixed.cast(column.type))
        if found is not None:
            what = "is not valid UTF-8" if "UTF8" in detail else f"is not valid ({detail})"
            problems.append((mask, f"{name} {what}"))
    return table, problems


def _valid(part: pa.Array) -> str | None:
    """None when ``part`` passes full validation, else Arrow's message."""
    if not (pa.types.is_string(part.type) or pa.types.is_large_string(part.type)):
        # a slice of a nested / view / dictionary array shares its parent's buffers, which
        # full validation reads whole: validate a compact copy of the slice's rows only
        part = part.take(pa.array(np.arange(len(part), dtype=np.int64)))
    try:
        part.validate(full=True)
    except pa.ArrowInvalid as exc:
        return str(exc)
    return None


def _bad_cells(column: pa.Array) -> tuple[pa.Array, str] | None:
    """The rows of ``column`` whose cell fails validation (mask) and one message, found by
    bisection: O(bad cells × log rows) validations of ever smaller slices."""
    first = _valid(column)
    if first is None:
        return None
    n = len(column)
    bad = np.zeros(n, dtype=bool)
    stack = [(0, n)]
    while stack:
        lo, hi = stack.pop()
        if (lo, hi) != (0, n) and _valid(column.slice(lo, hi - lo)) is None:
            continue
        if hi - lo == 1:
            bad[lo] = True
            continue
        mid = (lo + hi) // 2
        stack += [(lo, mid), (mid, hi)]
    return (pa.array(bad), first) if bad.any() else None


def _repaired(column: pa.Array, mask: pa.Array) -> pa.Array:
    """A string cell becomes its lossy UTF-8 decoding; any other bad cell, null."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        binary = pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()
        raw = column.view(binary)
        rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        fixed = [raw[int(i)].as_py().decode("utf-8", "replace") for i in rows]
        return pc.replace_with_mask(column, mask, pa.array(fixed, column.type))
    return pc.if_else(mask, pa.nulls(len(column), column.type), column)


# ---------------------------------------------------------------- rows


def row_rejections(table: pa.Table, limits: LimitsSpec, job_tenant: str | None) -> pa.Array:
    """The first rejection reason of each row, or null when the row is valid.

    ``job_tenant`` is the job's tenant (None: :data:`DEFAULT_TENANT`), the only tenant of
    the job: a row whose ``tenant`` cell is set (not null, not blank) to another tenant is
    rejected, naming both. ``duplicate prompt_id`` is within this table; the ingest stage
    extends it to the whole job (workers/prompt_ids.py)."""
    prompt = table.column("prompt")
    pid = table.column("prompt_id")
    checks: list[tuple[pa.Array, str | pa.Array]] = []
    if CELL_ERROR in table.column_names:  # a cell that could not be read says so first
        cell = table.column(CELL_ERROR)
        checks.append((pc.is_valid(cell), _flat(cell)))
    checks += [
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
    if "tenant" in table.column_names:
        checks.append(_other_tenant(table.column("tenant"), job_tenant or DEFAULT_TENANT))
    checks.append((_duplicate_ids(pid), "duplicate prompt_id"))
    reason: pa.Array = pa.nulls(table.num_rows, pa.string())
    for mask, text in reversed(checks):
        hit = pc.fill_null(mask, False)
        reason = pc.if_else(hit, pa.scalar(text) if isinstance(text, str) else text, reason)
    return reason


def row_tenant_set(tenant: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Whether a row's ``tenant`` cell names a tenant (null and blank cells do not)."""
    return pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(tenant)), 0), False)


def _other_tenant(tenant: pa.ChunkedArray, job_tenant: str) -> tuple[pa.Array, pa.Array]:
    """Rows whose tenant cell names another tenant than the job's, and the reason naming
    both (the row's value cut to 64 characters)."""
    differs = pc.and_(row_tenant_set(tenant), pc.not_equal(tenant, job_tenant))
    shown = pc.utf8_slice_codeunits(tenant, 0, 64)
    text = pc.binary_join_element_wise(
        "tenant column '",
        shown,
        f"' differs from the job's tenant {job_tenant!r} (submit with --tenant ",
        shown,
        ")",
        "",
    )
    return _flat(differs), _flat(text)


def _duplicate_ids(pid: pa.ChunkedArray) -> pa.Array:
    """True for every occurrence of a prompt_id after its first (within this table)."""
    series = pl.Series(pid.combine_chunks())
    return (~series.is_first_distinct()).to_arrow()
