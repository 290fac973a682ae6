"""Checking an audit chain: every record well-formed, hashed, owned, in order and linked,
the chain against its anchor, and the records against the result part's rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from routing.audit.chain import FIELDS, HASH_KEY, Anchor, PartId, genesis, text_sha256


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with one audit object (``seq`` / ``line``: where, if known)."""

    object: str
    message: str
    seq: int | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = [f"seq {self.seq}"] if self.seq is not None else []
        where += [f"line {self.line}"] if self.line is not None else []
        return f"{self.object}{' (' + ', '.join(where) + ')' if where else ''}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.object, "seq": self.seq, "line": self.line, "problem": self.message}


@dataclass
class ChainCheck:
    """What :func:`check_chain` read: the records that form a valid chain (up to the
    first problem), their prompt ids, and the problem, if any."""

    records: int = 0
    head: str = ""
    prompt_ids: list[str | None] = field(default_factory=list)
    problem: Problem | None = None


def _parse(line: str) -> dict[str, Any] | None:
    """The record of a well-formed line (its fields in order, ``hash`` last), else None.

    A duplicated member is not looked for: the hash covers the raw bytes, which the writer
    never gives a duplicate, so such a line fails its hash (or, re-hashed, the chain)."""
    cut = line.rfind(HASH_KEY)
    if cut < 0:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or list(record) != [*FIELDS, "hash"]:
        return None
    if type(record["seq"]) is not int or not isinstance(record["hash"], str):
        return None
    return record if line[cut:] == f'{HASH_KEY}{record["hash"]}"}}' else None


def _missing_or_moved(lines: Sequence[str | None], index: int, expected: int) -> str:
    """Why the record at ``index`` is not seq ``expected``: later in the object (records
    reordered) or nowhere (deleted)."""
    for later, line in enumerate(lines[index + 1 :], index + 2):
        record = _parse(line or "")
        if record is not None and record["seq"] == expected:
            return f"records out of order: seq {expected} is at line {later}"
    return f"record seq {expected} is missing (deleted)"


def _check_record(
    record: dict[str, Any], lines: Sequence[str | None], index: int, pid: PartId, prev: str
) -> str | None:
    """What is wrong with the record at ``lines[index]`` (already parsed), if anything."""
    line = lines[index] or ""
    body_hash = text_sha256(line[: line.rfind(HASH_KEY)] + "}")
    if record["hash"] != body_hash:
        return "content does not match its hash: the record was edited"
    owner = (record["job_id"], record["chunk"], record["part"])
    if owner != (pid.job_id, pid.chunk, pid.part):
        return (
            f"record belongs to job {owner[0]} chunk {owner[1]} part {owner[2]}: "
            "a record or a whole object was moved from another part"
        )
    seq = record["seq"]
    if seq != index:
        if isinstance(seq, int) and seq < index:
            return f"found seq {seq} where seq {index} was expected: a record was inserted"
        return f"found seq {seq} where seq {index} was expected: " + _missing_or_moved(
            lines, index, index
        )
    if record["prev"] != prev:
        if index == 0:
            return "prev is not the part's genesis hash: the chain does not start here"
        return f"prev does not match the hash of seq {index - 1}: a record was replaced"
    return None


def check_chain(lines: Sequence[str | None], pid: PartId, anchor: Anchor | None) -> ChainCheck:
    """Check one audit object's lines: well-formed, hashes, owner, seq order, prev links,
    then the count and head against ``anchor`` (None: not anchored, checked alone). Stops
    at the first problem and names that record (``seq``: its position in the chain;
    ``line``: the same, counted from 1)."""
    out = ChainCheck(head=genesis(pid))
    for index, line in enumerate(lines):
        record = _parse(line or "")
        why = (
            "not a well-formed record: the line was altered"
            if record is None
            else _check_record(record, lines, index, pid, out.head)
        )
        if why is not None or record is None:
            out.problem = Problem(pid.name, why or "", seq=index, line=index + 1)
            return out
        out.records, out.head = index + 1, record["hash"]
        out.prompt_ids.append(record["prompt_id"])
    if anchor is not None:
        out.problem = _against_anchor(pid, out, anchor)
    return out


def _against_anchor(pid: PartId, got: ChainCheck, anchor: Anchor) -> Problem | None:
    if got.records < anchor.records:
        return Problem(
            pid.name,
            f"the chain ends after {got.records} records but the manifest anchors "
            f"{anchor.records}: records from seq {got.records} on were deleted (truncated)",
            seq=got.records,
        )
    if got.records > anchor.records:
        return Problem(
            pid.name,
            f"{got.records - anchor.records} records after the {anchor.records} the manifest "
            "anchors: appended after the job was finalized",
            seq=anchor.records,
        )
    if got.head != anchor.head:
        last = got.records - 1 if got.records else None
        return Problem(
            pid.name,
            f"chain head {got.head[:16]}… does not match the manifest anchor "
            f"{anchor.head[:16]}…: the records were rewritten, or the anchor was edited",
            seq=last,
        )
    return None


def check_rows(
    pid: PartId, audited: Sequence[str | None], rows: Sequence[str | None]
) -> Problem | None:
    """The audit records name the result part's rows, in order, one each."""
    for seq, (a, r) in enumerate(zip(audited, rows, strict=False)):
        if a != r:
            return Problem(pid.name, f"prompt_id {a!r} but result row {seq} is {r!r}", seq=seq)
    if len(audited) != len(rows):
        seq = min(len(audited), len(rows))
        return Problem(
            pid.name,
            f"{len(audited)} audit records for {len(rows)} result rows",
            seq=seq,
        )
    return None
