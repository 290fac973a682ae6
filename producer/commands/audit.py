"""``batch-router audit verify``: check a job's audit trail (workers.audit, routing.audit)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape

from producer.report.manifest import find_job_root
from workers.audit import AuditReport, verify_job
from workers.storage import Storage

_SHOWN = 20  # problems listed on the terminal (--json lists all)


def run_verify(
    storage: Storage, path: str, expect: str | None, as_json: bool, out: Console, err: Console
) -> bool:
    """Verify the job at ``path`` (a job folder, or an output root holding one job); print
    a summary, or the problems with the first broken record first. True when intact.

    FileNotFoundError when ``path`` holds no finished job (the caller makes it exit 2)."""
    report = verify_job(storage, _job_root(storage, path), expect)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    elif report.ok:
        _print_ok(report, out)
    else:
        _print_problems(report, err)
    return report.ok


def _job_root(storage: Storage, path: str) -> str:
    root = path.rstrip("/")
    if "job_id=" in root.rsplit("/", 1)[-1]:
        return root  # a job folder, even with its manifest gone: verify says so
    return find_job_root(storage, path)


def _print_ok(report: AuditReport, out: Console) -> None:
    out.print(
        f"audit trail intact: job {escape(report.job_id)}, {report.objects} parts, "
        f"{report.records:,} records, every chain matches its manifest anchor",
        highlight=False,
    )
    out.print(
        f"anchors sha256 {report.anchors_sha256} (keep a copy in an append-only log; "
        "`--expect` checks a later run against it)",
        highlight=False,
    )


def _print_problems(report: AuditReport, err: Console) -> None:
    first, *rest = report.problems
    err.print(
        f"[red]audit trail broken:[/] job {escape(report.job_id)}: {escape(str(first))}",
        highlight=False,
    )
    for problem in rest[: _SHOWN - 1]:
        err.print(f"  also: {escape(str(problem))}", highlight=False)
    if len(rest) >= _SHOWN:
        err.print(f"  … {len(rest) - _SHOWN + 1} more (--json lists all)", highlight=False)
