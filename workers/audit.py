"""The audit trail in the object store: written with each result part, anchored by the
finalizer, checked by ``batch-router audit verify`` (the records: routing.audit).

One object per result part, ``_audit/part-c<chunk>-<part>.parquet`` (a ``line`` column of
JSON records, zstd; the chain's anchor in the footer), written whole before the result
part by the task that writes the part; a redelivered task rewrites both under the same
keys, so the chain always describes the part's last write.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from routing.audit.chain import (
    Anchor,
    AuditError,
    Chain,
    PartId,
    anchor_of_footer,
    anchors_digest,
    build_chain,
    footer,
    manifest_section,
    read_section,
)
from routing.audit.verify import Problem, check_chain, check_rows
from routing.plan import JobContext
from workers import layout
from workers.storage import Storage

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
LINE = "line"


def object_bytes(chain: Chain) -> bytes:
    """An audit object: the chain's lines as one string column, its anchor in the footer."""
    table = pa.table({LINE: pa.array(chain.lines, pa.binary()).cast(pa.string())})
    sink = io.BytesIO()
    pq.write_table(
        table.replace_schema_metadata(footer(chain.anchor)),
        sink,
        compression="zstd",
        compression_level=1,
        use_dictionary=False,
    )
    return sink.getvalue()


def append_part(storage: Storage, ctx: JobContext, chunk: int, part: str, table: pa.Table) -> None:
    """Write the audit object of result part (``chunk``, ``part``) holding ``table``."""
    chain = build_chain(table, PartId(ctx.job_id, chunk, part))
    storage.write_bytes(layout.audit_part(ctx.job_root, chunk, part), object_bytes(chain))


def _name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1].removesuffix(".parquet")


def _objects(storage: Storage, root: str) -> dict[str, str]:
    return {_name(u): u for u in storage.list_files(layout.audit_dir(root), ".parquet")}


def anchor_parts(storage: Storage, root: str, job_id: str) -> dict[str, Any]:
    """The manifest's ``audit`` entry: every audit object's record count and last hash
    (from its footer), and one hash over them all."""
    anchors: dict[str, Anchor] = {}
    for name, uri in _objects(storage, root).items():
        if PartId.from_name(job_id, name) is None:
            continue
        try:
            anchors[name] = anchor_of_footer(storage.parquet_file(uri).metadata.metadata)
        except AuditError as exc:
            raise AuditError(f"{uri}: {exc}") from exc
    section = manifest_section(job_id, anchors)
    log.info("job %s: audit anchors sha256 %s", job_id, section["anchors_sha256"])
    return section


def read_lines(storage: Storage, uri: str) -> list[str | None]:
    """The records of an audit object, in order."""
    try:
        return list(storage.read_parquet(uri, columns=[LINE]).column(LINE).to_pylist())
    except (pa.ArrowException, KeyError, UnicodeDecodeError) as exc:
        raise AuditError(f"unreadable audit object ({exc})") from exc


# ---------------------------------------------------------------- verify


@dataclass
class AuditReport:
    """What ``audit verify`` found: counts, the anchors' hash, and the problems (first
    broken record of each object, in object order, then the manifest's own)."""

    job_id: str
    job_root: str
    objects: int = 0
    records: int = 0
    anchors_sha256: str | None = None  # as recorded in the manifest
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "job_id": self.job_id,
            "job_root": self.job_root,
            "objects": self.objects,
            "records": self.records,
            "anchors_sha256": self.anchors_sha256,
            "problems": [p.to_dict() for p in self.problems],
        }


def _manifest_anchors(
    storage: Storage, report: AuditReport
) -> tuple[dict[str, Anchor] | None, str | None]:
    uri = layout.manifest(report.job_root)
    if not storage.exists(uri):
        report.problems.append(
            Problem(MANIFEST, "missing (job not finalized, or deleted): nothing anchors the chains")
        )
        return None, None
    try:
        manifest = json.loads(storage.read_bytes(uri))
        report.job_id = str(manifest["job_id"])
        if "audit" not in manifest:
            raise AuditError("no audit section: nothing anchors the chains")
        return read_section(manifest["audit"])
    except (ValueError, KeyError, TypeError, AuditError) as exc:
        report.problems.append(Problem(MANIFEST, str(exc) or repr(exc)))
        return None, None


def _check_object(
    storage: Storage,
    pid: PartId,
    audit_uri: str | None,
    result_uri: str | None,
    anchors: dict[str, Anchor] | None,
    report: AuditReport,
) -> Problem | None:
    name = pid.name
    anchored = anchors is not None and name in anchors
    if audit_uri is None:
        return Problem(name, "audit object missing" + (" (anchored)" if anchored else ""))
    if result_uri is None:
        return Problem(name, "audit object without a result part")
    if anchors is not None and not anchored:
        return Problem(name, "not anchored in the manifest: added after the job was finalized")
    try:
        lines = read_lines(storage, audit_uri)
    except AuditError as exc:
        return Problem(name, str(exc))
    check = check_chain(lines, pid, anchors.get(name) if anchors else None)
    report.records += check.records
    if check.problem is not None:
        return check.problem
    rows = storage.read_parquet(result_uri, columns=["prompt_id"]).column("prompt_id")
    return check_rows(pid, check.prompt_ids, rows.to_pylist())


def verify_job(storage: Storage, root: str, expect: str | None = None) -> AuditReport:
    """Check every chain of the job at ``root`` against the manifest's anchors, each audit
    object against its result part, and (``expect``) the anchors' hash against a copy
    kept elsewhere."""
    root = root.rstrip("/")
    report = AuditReport(job_id=root.rsplit("job_id=", 1)[-1], job_root=root)
    anchors, recorded = _manifest_anchors(storage, report)
    report.anchors_sha256 = recorded
    results = {_name(u): u for u in storage.list_files(layout.results_dir(root), ".parquet")}
    audits = _objects(storage, root)
    names = sorted(results.keys() | audits.keys() | (anchors or {}).keys())
    report.objects = len(audits)
    problems: list[Problem] = []
    for name in names:
        pid = PartId.from_name(report.job_id, name)
        if pid is None:
            problems.append(Problem(name, "not a part name (part-c<chunk>-<part>)"))
            continue
        found = _check_object(storage, pid, audits.get(name), results.get(name), anchors, report)
        if found is not None:
            problems.append(found)
    if anchors is not None and recorded != anchors_digest(report.job_id, anchors):
        problems.append(
            Problem(
                MANIFEST, "anchors_sha256 does not match the anchors: the audit section was edited"
            )
        )
    if expect is not None and recorded != expect:
        problems.append(
            Problem(
                MANIFEST,
                f"anchors_sha256 {str(recorded)[:16]}… is not the expected {expect[:16]}…: "
                "the manifest's anchors were replaced",
            )
        )
    report.problems = report.problems + problems
    return report
