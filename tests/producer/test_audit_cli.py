"""``batch-router audit verify`` on a real local job: intact, then tampered every way
(each on a copy of the job folder) — exit 1 naming the first broken record."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from routing.audit.chain import PartId, build_chain
from routing.plan import JobContext
from tests.cli import CliRunner, SampleJob, assert_clean_error
from workers import audit
from workers.settings import S3Settings
from workers.storage import Storage

pytestmark = [pytest.mark.e2e, pytest.mark.security]

FAST = "part-c000000-fast"
STORAGE = Storage(S3Settings())


def copy_job(sample_job: SampleJob, tmp_path: Path) -> Path:
    root = tmp_path / "out" / sample_job.job_root.name
    shutil.copytree(sample_job.job_root, root)
    return root


def audit_path(root: Path, name: str = FAST) -> Path:
    return root / "_audit" / f"{name}.parquet"


def audit_lines(root: Path, name: str = FAST) -> list[str]:
    return list(pq.read_table(audit_path(root, name)).column("line").to_pylist())


def write_lines(root: Path, rows: list[str], name: str = FAST) -> None:
    pq.write_table(pa.table({"line": pa.array(rows, pa.string())}), audit_path(root, name))


def edit_record(root: Path) -> None:
    rows = audit_lines(root)
    rows[7] = rows[7].replace('"status":"ok"', '"status":"failed"')
    write_lines(root, rows)


def delete_record(root: Path) -> None:
    rows = audit_lines(root)
    del rows[7]
    write_lines(root, rows)


def insert_record(root: Path) -> None:
    rows = audit_lines(root)
    rows.insert(7, rows[2])
    write_lines(root, rows)


def reorder_records(root: Path) -> None:
    rows = audit_lines(root)
    rows[7], rows[8] = rows[8], rows[7]
    write_lines(root, rows)


def truncate_tail(root: Path) -> None:
    write_lines(root, audit_lines(root)[:7])


def swap_objects(root: Path) -> None:
    a, b = audit_path(root), audit_path(root, "part-c000000-expert")
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)


def delete_object(root: Path) -> None:
    audit_path(root).unlink()


def edit_anchor(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["audit"]["objects"][FAST]["records"] -= 1
    (root / "manifest.json").write_text(json.dumps(manifest))


def edit_result_rows(root: Path) -> None:
    path = root / "results" / f"{FAST}.parquet"
    table = pq.read_table(path)
    ids = table.column("prompt_id").to_pylist()
    ids[7], ids[8] = ids[8], ids[7]
    index = table.column_names.index("prompt_id")
    pq.write_table(table.set_column(index, "prompt_id", [ids]), path)


TAMPERING: dict[str, tuple[Callable[[Path], None], str]] = {
    "edit": (edit_record, f"{FAST} (seq 7, line 8): content does not match its hash"),
    "delete": (delete_record, f"{FAST} (seq 7, line 8): found seq 8 where seq 7 was expected"),
    "insert": (insert_record, f"{FAST} (seq 7, line 8): found seq 2 where seq 7 was expected"),
    "reorder": (reorder_records, f"{FAST} (seq 7, line 8): found seq 8 where seq 7 was expected"),
    "truncate": (truncate_tail, f"{FAST} (seq 7): the chain ends after 7 records"),
    "swap": (swap_objects, "part-c000000-expert (seq 0, line 1): record belongs to job"),
    "delete-object": (delete_object, f"{FAST}: audit object missing (anchored)"),
    "edit-anchor": (edit_anchor, f"{FAST} (seq "),
    "edit-results": (edit_result_rows, f"{FAST} (seq 7): prompt_id"),
}


def test_verify_passes_on_a_finished_job(sample_job: SampleJob, cli: CliRunner) -> None:
    proc = cli("audit", "verify", str(sample_job.job_root))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "audit trail intact" in proc.stdout and "300 records" in proc.stdout
    manifest = json.loads((sample_job.job_root / "manifest.json").read_text())
    assert manifest["audit"]["anchors_sha256"] in proc.stdout
    assert sum(a["records"] for a in manifest["audit"]["objects"].values()) == 300
    assert sorted(manifest["audit"]["objects"]) == sorted(
        p.removesuffix(".parquet") for p in manifest["parts"]
    )
    # the output root holding the one job works too, and --expect with the right digest
    proc = cli(
        "audit", "verify", str(sample_job.out), "--expect", manifest["audit"]["anchors_sha256"]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_trail_holds_no_prompt_text(sample_job: SampleJob) -> None:
    root = sample_job.job_root
    prompts = [
        p
        for part in (root / "results").iterdir()
        for p in pq.read_table(part, columns=["prompt"]).column("prompt").to_pylist()
        if p and len(p) > 20
    ]
    text = "\n".join(
        line for p in (root / "_audit").iterdir() for line in audit_lines(root, p.stem)
    )
    assert len(text.splitlines()) == 300
    assert not [p for p in prompts if p in text]
    record = json.loads(text.splitlines()[0])
    assert len(record["fingerprint"]) == 64 and record["policy_version"]


@pytest.mark.parametrize("kind", TAMPERING)
def test_every_kind_of_tampering_is_found(sample_job: SampleJob, tmp_path: Path, kind: str) -> None:
    tamper, expected = TAMPERING[kind]
    root = copy_job(sample_job, tmp_path)
    assert audit.verify_job(STORAGE, str(root)).ok
    tamper(root)
    report = audit.verify_job(STORAGE, str(root))
    assert not report.ok
    assert str(report.problems[0]).startswith(expected), report.problems


@pytest.mark.parametrize("kind", ["edit", "delete-object", "edit-anchor"])
def test_verify_exits_1_naming_the_record(
    sample_job: SampleJob, cli: CliRunner, tmp_path: Path, kind: str
) -> None:
    tamper, expected = TAMPERING[kind]
    root = copy_job(sample_job, tmp_path)
    tamper(root)
    proc = cli("audit", "verify", str(root))
    assert_clean_error(proc, "audit trail broken", expected, code=1)


def test_json_lists_the_problems(sample_job: SampleJob, cli: CliRunner, tmp_path: Path) -> None:
    root = copy_job(sample_job, tmp_path)
    delete_record(root)
    proc = cli("audit", "verify", str(root), "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    assert report["problems"][0] == {
        "object": FAST,
        "seq": 7,
        "line": 8,
        "problem": "found seq 8 where seq 7 was expected: record seq 7 is missing (deleted)",
    }


def test_a_consistently_rewritten_manifest_needs_the_kept_digest(
    sample_job: SampleJob, cli: CliRunner, tmp_path: Path
) -> None:
    """Records rewritten and the manifest's anchors recomputed to match: only the digest
    kept elsewhere (``--expect``) tells."""
    root = copy_job(sample_job, tmp_path)
    kept = json.loads((root / "manifest.json").read_text())["audit"]["anchors_sha256"]
    table = pq.read_table(root / "results" / f"{FAST}.parquet")
    statuses = table.column("status").to_pylist()
    statuses[7] = "failed"
    forged = table.set_column(table.column_names.index("status"), "status", [statuses])
    manifest = json.loads((root / "manifest.json").read_text())
    chain = build_chain(forged, PartId(manifest["job_id"], 0, "fast"))
    audit_path(root).write_bytes(audit.object_bytes(chain))
    manifest["audit"] = audit.anchor_parts(STORAGE, str(root), manifest["job_id"])
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert audit.verify_job(STORAGE, str(root)).ok  # the forgery is self-consistent
    proc = cli("audit", "verify", str(root), "--expect", kept)
    assert_clean_error(proc, "manifest.json", f"is not the expected {kept[:16]}…", code=1)


def test_a_rewritten_part_rewrites_the_same_chain(sample_job: SampleJob, tmp_path: Path) -> None:
    """A redelivered task writes the part and its audit object again: same bytes."""
    root = copy_job(sample_job, tmp_path)
    before = audit_path(root).read_bytes()
    manifest = json.loads((root / "manifest.json").read_text())
    ctx = JobContext(
        job_id=manifest["job_id"],
        job_root=str(root),
        tenant=None,
        policy_uri="unused",
        policy_version=manifest["policy_version"],
        total_chunks=1,
    )
    table = pq.read_table(root / "results" / f"{FAST}.parquet")
    audit.append_part(STORAGE, ctx, 0, "fast", table)
    assert audit_path(root).read_bytes() == before
    assert audit.verify_job(STORAGE, str(root)).ok


def test_no_manifest_or_no_job(sample_job: SampleJob, cli: CliRunner, tmp_path: Path) -> None:
    root = copy_job(sample_job, tmp_path)
    (root / "manifest.json").unlink()
    assert_clean_error(cli("audit", "verify", str(root)), "manifest.json: missing", code=1)
    assert_clean_error(cli("audit", "verify", str(tmp_path / "nowhere")), "no finished job")
