"""The input columns a job's results carry, made one schema across the job's files.

The result parts of one job must read as one dataset (``pl.read_parquet('results/*')``,
``pyarrow.dataset``, duckdb), yet the files of one input folder may disagree on the columns
the results carry through (the optional known ones and every unknown one). At plan time,
from the footers alone, :func:`unify` settles the job's carried columns:

- a column some files lack is null in their rows;
- types that widen without loss take the wider type: ``null`` → any type, a dictionary →
  its value type, ``string`` / ``large_string`` / ``string_view`` → ``large_string`` (the
  same for binary), integers → the narrowest integer holding both (``int32`` + ``int64`` →
  ``int64``, ``uint16`` + ``int8`` → ``int32``; ``uint64`` + a signed type has none),
  floats → the wider float;
- any other disagreement (``int64`` against ``string``, two struct layouts, two timestamp
  units…) rejects the job before anything runs, naming the column, both types and both
  files: a cast the project picked would change the customer's data.

When every file agrees, nothing is recorded and ingest changes nothing. Otherwise the
plan's :class:`routing.plan.JobContext` carries the job's columns (:func:`job_columns`: an
Arrow IPC schema, base64) and ingest passes each chunk it reads through :func:`apply`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from functools import lru_cache

import pyarrow as pa

from routing.errors import InputError
from routing.schema import RESULT_COLUMNS
from routing.validate import conform

FileSchema = tuple[str, pa.Schema]  # (uri, schema read from the footer)

_STRINGS = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
_BINARIES = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view)
_SIGNED = {8: pa.int8(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}


def carried_fields(schema: pa.Schema) -> list[pa.Field]:
    """The columns the results carry for a file of ``schema``: as ingest conforms them
    (known columns cast, names the output uses renamed ``src_<name>``), in file order."""
    return [f for f in conform(schema.empty_table()).schema if f.name not in RESULT_COLUMNS]


def _any(checks: Sequence[Callable[[pa.DataType], bool]], t: pa.DataType) -> bool:
    return any(check(t) for check in checks)


def _integer(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    signed = pa.types.is_signed_integer
    if signed(a) == signed(b):
        return a if a.bit_width >= b.bit_width else b
    unsigned, other = (b, a) if signed(a) else (a, b)
    if unsigned.bit_width >= 64:
        return None
    return _SIGNED[max(2 * unsigned.bit_width, other.bit_width)]


def promote(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The type holding every value of ``a`` and of ``b`` exactly, or None."""
    a = a.value_type if pa.types.is_dictionary(a) and a != b else a
    b = b.value_type if pa.types.is_dictionary(b) and a != b else b
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    if _any(_STRINGS, a) and _any(_STRINGS, b):
        return pa.large_string()
    if _any(_BINARIES, a) and _any(_BINARIES, b):
        return pa.large_binary()
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return _integer(a, b)
    if pa.types.is_floating(a) and pa.types.is_floating(b):
        return a if a.bit_width >= b.bit_width else b
    return None


def unify(files: Sequence[FileSchema]) -> tuple[pa.Schema, list[str]]:
    """The job's carried columns (first-seen order) and one problem per column whose types
    cannot be reconciled."""
    types: dict[str, pa.DataType] = {}
    seen_in: dict[str, str] = {}
    problems: dict[str, str] = {}
    for uri, schema in files:
        for field in carried_fields(schema):
            name = field.name
            if name not in types:
                types[name], seen_in[name] = field.type, uri
                continue
            wider = promote(types[name], field.type)
            if wider is None:
                problems.setdefault(
                    name,
                    f"{uri}: column {name!r} is {field.type} here but {types[name]} in "
                    f"{seen_in[name]}; the files of one job must agree on a column's type "
                    "(cast it, or submit the files as separate jobs)",
                )
            else:
                types[name] = wider
    schema = pa.schema([pa.field(name, t) for name, t in types.items()])
    return schema, list(problems.values())


def job_columns(files: Sequence[FileSchema]) -> str | None:
    """The job's carried columns, encoded for :class:`~routing.plan.JobContext`, or None
    when every file already agrees (same columns, order and types). InputError when two
    files cannot be reconciled."""
    schema, problems = unify(files)
    if problems:
        raise InputError("input rejected:\n  " + "\n  ".join(problems))
    wanted = [(f.name, f.type) for f in schema]
    if all([(f.name, f.type) for f in carried_fields(s)] == wanted for _, s in files):
        return None
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


@lru_cache(maxsize=32)
def _decode(columns: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(columns)))


def apply(table: pa.Table, columns: str | None) -> pa.Table:
    """``table`` (a conformed input chunk) with the job's carried columns: each cast to the
    job's type, a missing one as nulls, in the job's order after the table's other
    columns. ``columns`` None: ``table`` unchanged."""
    if columns is None:
        return table
    schema = _decode(columns)
    own = [f for f in table.schema if f.name not in schema.names]
    arrays: list[pa.Array | pa.ChunkedArray] = [table.column(f.name) for f in own]
    for field in schema:
        if field.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        arrays.append(column if column.type == field.type else column.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema([*own, *schema]))
