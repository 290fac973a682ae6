"""An audit chain: the record format (:data:`FIELDS`), building a result part's chain
(:func:`build_chain`), and its anchor in the object's footer and in the manifest."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from routing.errors import PermanentError
from routing.normalise import COLLAPSE

FORMAT = "batch-router-audit/v1"
ERROR_CHARS = 200  # an error message is kept to this many characters

FIELDS: tuple[str, ...] = (
    "v",
    "job_id",
    "chunk",
    "part",
    "seq",
    "prompt_id",
    "input_row",
    "tenant",
    "fingerprint",
    "features",
    "rule",
    "policy_version",
    "classifier_version",
    "tier",
    "model",
    "provider",
    "fallback_from",
    "escalated_from",
    "confidence",
    "status",
    "error",
    "cost_usd",
    "baseline_cost_usd",
    "attempts",
    "dedupe_of",
    "pii_kinds",
    "prev",
)
# Result columns copied into each record as they are (absent column → null).
_COPIED = (
    "prompt_id",
    "input_row",
    "tenant",
    "policy_version",
    "classifier_version",
    "tier",
    "model",
    "provider",
    "fallback_from",
    "escalated_from",
    "confidence",
    "status",
    "attempts",
    "dedupe_of",
)
# What the routing decision read that the result row still carries.
FEATURES = ("complexity_score", "input_tokens", "output_tokens", "customer_tier", "domain")
HASH_KEY = ',"hash":"'
_FOOTER_KEY = b"batch_router_audit"
_PREV_KEY, _PREV_END = b',"prev":"', b'"' + HASH_KEY.encode()
_NAME = re.compile(r"part-c(\d+)-(.+)")


class AuditError(PermanentError):
    """A job's audit trail is incomplete or was tampered with."""


@dataclass(frozen=True)
class PartId:
    """Which chain: the job, chunk and part (tier name or ``rejected``) it belongs to."""

    job_id: str
    chunk: int
    part: str

    @property
    def name(self) -> str:
        """``part-c000001-fast``: the result part's file name without its extension."""
        return f"part-c{self.chunk:06d}-{self.part}"

    @classmethod
    def from_name(cls, job_id: str, name: str) -> PartId | None:
        match = _NAME.fullmatch(name)
        return cls(job_id, int(match.group(1)), match.group(2)) if match else None


@dataclass(frozen=True)
class Anchor:
    """A chain's length and last hash, as recorded in the manifest."""

    records: int
    head: str

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "head": self.head}


@dataclass(frozen=True)
class Chain:
    """An audit object's lines (one record each, UTF-8 JSON) and its anchor."""

    lines: list[bytes]
    anchor: Anchor

    @property
    def jsonl(self) -> bytes:
        return b"".join(line + b"\n" for line in self.lines)

    def text(self) -> list[str]:
        return [line.decode() for line in self.lines]


# ---------------------------------------------------------------- hashing


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def genesis(pid: PartId) -> str:
    """The ``prev`` of a chain's first record: binds the chain to its job, chunk and part."""
    return text_sha256(f"{FORMAT}\x1f{pid.job_id}\x1f{pid.chunk}\x1f{pid.part}")


def _canonical(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


# ---------------------------------------------------------------- building


def _normalised(frame: pl.DataFrame, name: str) -> pl.Expr:
    if name not in frame.columns:
        return pl.lit("", pl.String)
    text = pl.col(name).cast(pl.String).fill_null("")
    return text.str.replace_all(COLLAPSE, " ").str.strip_chars()


def fingerprints(frame: pl.DataFrame) -> list[str | None]:
    """Per row, the SHA-256 of its normalised system prompt and prompt (null prompt: None)."""
    if "prompt" not in frame.columns:
        return [None] * frame.height
    text = pl.concat_str(
        [_normalised(frame, "system"), _normalised(frame, "prompt")], separator="\x1f"
    )
    utf8 = frame.select(pl.when(pl.col("prompt").is_not_null()).then(text).cast(pl.Binary))
    sha256 = hashlib.sha256
    return [None if b is None else sha256(b).hexdigest() for b in utf8.to_series().to_list()]


def _col(frame: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name) if name in frame.columns else pl.lit(None)


def _record_exprs(frame: pl.DataFrame, pid: PartId) -> list[pl.Expr]:
    """The record's fields but ``prev``, in :data:`FIELDS` order."""
    error = _col(frame, "error").cast(pl.String)
    kinds = _col(frame, "pii_kinds").cast(pl.String)
    values: dict[str, pl.Expr] = {
        "v": pl.lit(FORMAT),
        "job_id": pl.lit(pid.job_id),
        "chunk": pl.lit(pid.chunk, pl.Int64),
        "part": pl.lit(pid.part),
        "seq": pl.int_range(pl.len(), dtype=pl.Int64),
        **{name: _col(frame, name) for name in _COPIED},
        "fingerprint": pl.col("__fingerprint"),
        "features": pl.struct([_col(frame, f).alias(f) for f in FEATURES]),
        "rule": _col(frame, "route_reason"),
        "error": pl.when(error.str.len_chars() > ERROR_CHARS)
        .then(error.str.slice(0, ERROR_CHARS - 1) + "…")
        .otherwise(error),
        # money exact, in plain notation (polars never writes 0E-12)
        "cost_usd": _col(frame, "cost_usd").cast(pl.String),
        "baseline_cost_usd": _col(frame, "baseline_cost_usd").cast(pl.String),
        "pii_kinds": kinds.str.split(",")
        .list.eval(pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != ""))
        .fill_null(pl.lit([], pl.List(pl.String))),
    }
    return [values[name].alias(name) for name in FIELDS if name != "prev"]


def _bodies(table: pa.Table, pid: PartId) -> list[bytes]:
    """Each row's record as JSON without ``prev``, ``hash`` and the closing brace (encoded
    by polars, vectorised)."""
    wanted = {*_COPIED, *FEATURES, "route_reason", "error", "cost_usd", "baseline_cost_usd"}
    names = [n for n in table.column_names if n in wanted | {"pii_kinds", "prompt", "system"}]
    frame = pl.from_arrow(table.select(names)) if names else pl.DataFrame()
    assert isinstance(frame, pl.DataFrame)
    if not names:
        frame = pl.DataFrame({"__row": range(table.num_rows)})
    frame = frame.with_columns(pl.Series("__fingerprint", fingerprints(frame), pl.String))
    record = pl.struct(_record_exprs(frame, pid)).struct.json_encode()
    return list(frame.select(record.str.head(-1).cast(pl.Binary)).to_series().to_list())


def build_chain(table: pa.Table, pid: PartId) -> Chain:
    """The audit object of a result part: one record per row, in row order.

    A record's line is its fields (:data:`FIELDS`, ``prev`` last) as compact JSON, then
    ``hash`` — the SHA-256 of the line up to ``prev``'s closing quote plus ``}`` — appended
    as its last member. Non-finite floats are written as null."""
    sha256, prev, lines = hashlib.sha256, genesis(pid).encode(), list[bytes]()
    add = lines.append
    for body in _bodies(table, pid):
        linked = body + _PREV_KEY + prev
        prev = sha256(linked + b'"}').hexdigest().encode()
        add(linked + _PREV_END + prev + b'"}')
    return Chain(lines, Anchor(len(lines), prev.decode()))


# ---------------------------------------------------------------- manifest anchors


def anchors_digest(job_id: str, anchors: Mapping[str, Anchor]) -> str:
    """One hash over every anchor of the job (what to copy to an append-only log)."""
    body = {name: anchors[name].to_dict() for name in sorted(anchors)}
    return text_sha256(_canonical({"format": FORMAT, "job_id": job_id, "objects": body}))


def manifest_section(job_id: str, anchors: Mapping[str, Anchor]) -> dict[str, Any]:
    """The manifest's ``audit`` entry."""
    return {
        "format": FORMAT,
        "objects": {name: anchors[name].to_dict() for name in sorted(anchors)},
        "anchors_sha256": anchors_digest(job_id, anchors),
    }


def read_section(section: Any) -> tuple[dict[str, Anchor], str]:
    """The anchors and recorded digest of a manifest's ``audit`` entry; AuditError if it
    is malformed."""
    try:
        objects = section["objects"]
        anchors = {
            str(name): Anchor(int(a["records"]), str(a["head"])) for name, a in objects.items()
        }
        return anchors, str(section["anchors_sha256"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AuditError(f"manifest.json: malformed audit section ({exc!r})") from exc


def footer(anchor: Anchor) -> dict[bytes, bytes]:
    """Parquet key-value metadata of an audit object: its anchor, which the finalizer
    reads from the footer alone (the verifier recomputes it from the records)."""
    return {_FOOTER_KEY: _canonical({"format": FORMAT, **anchor.to_dict()}).encode()}


def anchor_of_footer(metadata: Mapping[bytes, bytes] | None) -> Anchor:
    """The anchor an audit object's footer records; AuditError when it has none."""
    try:
        value = json.loads((metadata or {})[_FOOTER_KEY])
        return Anchor(int(value["records"]), str(value["head"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"no audit anchor in the object's footer ({exc!r})") from exc
