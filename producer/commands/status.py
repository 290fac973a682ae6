"""``batch-router status`` and ``reconcile``: a job's state on the fleet, and resuming it."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from producer.app import JobIdArg, _duration, _settings, app, console, err
from routing.errors import ConfigError

if TYPE_CHECKING:
    from redis import Redis


@app.command()
def status(
    ctx: typer.Context,
    job_id: JobIdArg = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a job's progress: chunks done / total and rows by status; in batch mode, each
    provider batch (id, tier, round, provider status, request counts, age, collected).

    Example: `batch-router status 20261128T021500Z-3fa2c1d4`
    """
    settings = _settings(ctx)
    from workers import connections
    from workers.jobs.submit import tracker

    jobs = tracker(settings)
    state = connections.state_client(settings)
    now = time.time()
    ids = [job_id] if job_id else jobs.list_jobs()
    if not ids and not as_json:
        console.print("no jobs yet (`batch-router submit INPUT --output OUT` starts one)")
        return
    table = Table(
        "job", "state", "chunks", "rows done", "by status", "cost so far", "ETA", "dead letters"
    )
    rows: list[dict[str, Any]] = []
    dead_letters: dict[str, list[dict[str, Any]]] = {}
    batches: dict[str, list[dict[str, Any]]] = {}
    for jid in ids:
        st = jobs.status(jid)
        if st is None:
            if job_id is None:
                continue  # still in the index, but its state expired (job_ttl_s)
            err.print(f"[red]unknown job {escape(jid)}[/]")
            raise typer.Exit(1)
        eta = None if (e := st.eta_s()) is None else round(e, 1)
        if found := _job_batches(state, jid, now):
            batches[jid] = found
        rows.append(
            {
                "job_id": st.job_id,
                "state": st.state,
                "chunks_done": st.chunks_done,
                "total_chunks": st.total_chunks,
                "rows_total": st.rows_total,
                "rows_by_status": st.rows_by_status,
                "cost_usd": st.cost_usd,
                "eta_s": eta,
                "dead_letters": dead_letters.setdefault(jid, jobs.dead_letters(jid)),
                "error": st.error,
                **({"batches": batches[jid]} if jid in batches else {}),
            }
        )
        table.add_row(
            st.job_id,
            st.state,
            f"{st.chunks_done}/{st.total_chunks}",
            f"{st.rows_done:,}/{st.rows_total:,}",
            ", ".join(f"{k} {v:,}" for k, v in sorted(st.rows_by_status.items())),
            f"${st.cost_usd:,.4f}",
            "—" if eta is None else _duration(eta),
            str(len(dead_letters[jid])),
        )
    if as_json:
        console.print_json(json.dumps(rows))
    else:
        console.print(table)
        if batches:
            console.print(batch_table(batches))
        _print_problems(rows, dead_letters)


def _job_batches(state: Redis, job_id: str, now: float) -> list[dict[str, Any]]:
    """The job's provider batches, if it has any (the batch-mode modules, which import the
    provider SDKs, are loaded only then: ``status`` of a realtime job stays quick)."""
    from workers import keys

    if not state.exists(keys.job_batches(job_id)):
        return []
    from workers.batches.record import summaries

    try:
        found = summaries(state, job_id)
    except ValueError as exc:  # a damaged entry must not hide every other job's status
        what = escape(f"job {job_id}: unreadable provider batch summaries: {exc}")
        err.print(f"[yellow]{what}[/]")
        return []
    return provider_batches(found, now)


def provider_batches(found: dict[str, dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """A job's provider batches (``workers.batches.record.summaries``) as ``--json`` shows
    them, in chunk, round, attempt and tier order; ``age_s``: seconds since submitted."""
    out = []
    for batch_id, s in found.items():
        submitted = s.get("submitted_at")
        out.append(
            {
                "batch_id": batch_id,
                "chunk": s.get("chunk"),
                "tier": s.get("tier"),
                "round": s.get("round"),
                "attempt": s.get("attempt"),
                "provider": s.get("provider"),
                "status": s.get("status"),
                "requests": s.get("requests"),
                "counts": s.get("counts") or {},
                "submitted_at": submitted,
                "age_s": None if submitted is None else round(max(now - submitted, 0.0), 1),
                "ended": bool(s.get("ended")),
                "collected": bool(s.get("collected")),
            }
        )
    order = ("chunk", "round", "attempt")
    return sorted(out, key=lambda b: (*(b[k] or 0 for k in order), str(b["tier"]), b["batch_id"]))


def batch_table(batches: dict[str, list[dict[str, Any]]]) -> Table:
    """The provider batches of the jobs shown, one line each."""
    table = Table(
        "job", "provider batch", "chunk", "tier", "round", "provider", "status", "requests",
        "age", "collected", title="provider batches", title_justify="left",
    )  # fmt: skip
    for jid, found in batches.items():
        for b in found:
            counts = ", ".join(
                f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in b["counts"].items()
            )
            table.add_row(
                jid,
                escape(b["batch_id"]),
                str(b["chunk"]),
                escape(str(b["tier"])),
                str(b["round"]),
                escape(str(b["provider"])),
                escape(str(b["status"])),
                f"{b['requests'] or 0:,}" + (f" ({escape(counts)})" if counts else ""),
                "—" if b["age_s"] is None else _duration(b["age_s"]),
                "yes" if b["collected"] else "no",
            )
    return table


def _print_problems(rows: list[dict[str, Any]], dead_letters: dict[str, list[Any]]) -> None:
    """A failed job's reason; a running job's last dead letters (reconcile re-sends them)."""
    for row in rows:
        jid = row["job_id"]
        if row["error"]:
            console.print(f"[red]failed[/] {jid}: {escape(row['error'])}", highlight=False)
        hint = " (`batch-router reconcile` re-enqueues it)" if row["state"] == "running" else ""
        for dead in dead_letters.get(jid, [])[-5:]:
            tier = f" {dead['tier']}" if dead.get("tier") else ""
            console.print(
                f"[red]dead letter[/] {jid} {dead['task']} chunk {dead['chunk']}{tier}: "
                f"{escape(dead['error'])}{hint}",
                highlight=False,
            )


@app.command()
def reconcile(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Argument(metavar="PATH", help="the job folder (…/job_id=ID) in the object store"),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Resume a job whose Redis state or messages were lost: rebuild its progress from the
    object store and re-enqueue only the missing chunks and tier batches.

    Example: `batch-router reconcile s3://bucket/out/job_id=20261128T021500Z-3fa2c1d4`
    """
    settings = _settings(ctx)
    if not settings.distributed:
        raise ConfigError("reconcile needs the fleet: set BATCH_ROUTER_BROKER_URL=redis://…")
    from workers.jobs.submit import reconcile as run_reconcile

    result = run_reconcile(settings, path.rstrip("/"))
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    console.print(
        f"job {result.job_id}: {result.state} — {result.chunks_complete}/{result.chunks_total} "
        f"chunks complete" + (", state rebuilt from the object store" if result.registered else "")
    )
    for chunk in result.reingested:
        console.print(f"  chunk {chunk}: ingest again")
    for chunk, parts in result.parts_resent.items():
        console.print(f"  chunk {chunk}: dispatch again {', '.join(parts)}")
    if result.error:
        console.print(f"  failed: {escape(result.error)} (submit it again to re-run)")
