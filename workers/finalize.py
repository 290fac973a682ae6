"""The job finalizer: runs once all chunks are written (and is safe to run again).

It reads the result parts (only the columns it needs; a part written before a column
existed reads it as nulls: :func:`read_results`), checks that row count out equals
row count in, writes the cost summary and the cost rollup (workers.rollup), then
``manifest.json``, then ``_SUCCESS`` —
in that order, so a reader that sees ``_SUCCESS`` sees a complete job. The manifest
anchors every part's audit chain (record count and last hash; workers.audit).

A job that cannot finish ends here too: :func:`fail_job` marks it ``failed`` in the tracker
(the first reason wins), then writes ``_job/failed.json`` — the durable record that
reconcile, the beat sweep and a fleet restarted without Redis read — and a
``manifest.json`` with ``state: failed`` and the reason; never ``_SUCCESS``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from routing.cost import ZERO, call_cost, pct, usd_text
from routing.errors import StorageError
from routing.plan import JobContext
from routing.policy import Policy
from routing.schema import COST_SUMMARY_SCHEMA, RESULT_SCHEMA, Status
from workers import audit, dedupe, layout, rollup
from workers.redact import redact_error
from workers.runtime import Runtime
from workers.stages import drop_staging
from workers.storage import Storage, join

_COLUMNS = [*rollup.INPUTS, rollup.ATTEMPTS]  # what the rollup, summary and savings read
NOT_ROUTED = "(not routed)"  # breakdown label of rows that never reached a tier (rejected)
NO_CALL = rollup.NO_CALL  # by_mode label of rows that made no call (mode null)


def read_results(storage: Storage, parts: list[str]) -> pa.Table:
    """``_COLUMNS`` of every result part, typed as in ``RESULT_SCHEMA``: what a part has is
    read, a column it lacks (a part written before an upgrade added it) is nulls."""
    schema = pa.schema([pa.field(c, RESULT_SCHEMA.field(c).type) for c in _COLUMNS])
    tables = []
    for uri in parts:
        with storage.parquet_file(uri) as source:
            present = [c for c in _COLUMNS if c in source.schema_arrow.names]
            try:
                table = source.read(columns=present)
            except OSError as exc:
                raise StorageError(f"cannot read {uri}: {exc}") from exc
        tables.append(
            pa.table(
                [
                    table.column(f.name).cast(f.type)
                    if f.name in present
                    else pa.nulls(table.num_rows, f.type)
                    for f in schema
                ],
                schema=schema,
            )
        )
    return pa.concat_tables(tables) if tables else schema.empty_table()


def cost_summary(built: pa.Table, job_id: str) -> pa.Table:
    """Rows, tokens, cost, baseline and batch saving by tenant, tier, model, status and
    mode: the job's cost rollup (workers.rollup, already grouped and sorted that way)
    without its extra columns."""
    columns = {"job_id": pa.array([job_id] * built.num_rows, pa.string())}
    columns.update({name: built.column(name) for name in COST_SUMMARY_SCHEMA.names[1:]})
    return pa.table(columns).cast(COST_SUMMARY_SCHEMA)


def _money(table: pa.Table, column: str) -> Decimal:
    value = pc.sum(table.column(column)).as_py()
    return value if value is not None else Decimal(0)


def _breakdown(
    summary: pa.Table, key: str, unset: str = NOT_ROUTED, money: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """Rows and exact money by ``key`` (``unset``: the label of a null), money as strings."""
    columns = ("cost_usd", "baseline_cost_usd", *money)
    out: dict[str, dict[str, Any]] = {}
    for row in summary.to_pylist():
        name = row[key] if row[key] is not None else unset
        entry = out.setdefault(name, {"rows": 0, **{c: Decimal(0) for c in columns}})
        entry["rows"] += row["rows"]
        for column in columns:
            entry[column] += row[column] or 0
    return {k: {**v, **{c: usd_text(v[c]) for c in columns}} for k, v in out.items()}


def build_manifest(
    ctx: JobContext, plan: dict[str, Any], parts: list[str], table: pa.Table, summary: pa.Table
) -> dict[str, Any]:
    cost, baseline = _money(table, "cost_usd"), _money(table, "baseline_cost_usd")
    saving = baseline - cost
    rows_out, rows_in = table.num_rows, int(plan["rows_total"])
    duplicates = pc.sum(pc.is_valid(table.column("dedupe_of"))).as_py() or 0
    return {
        "job_id": ctx.job_id,
        "tenant": ctx.tenant,
        "policy_version": ctx.policy_version,
        "input_uri": plan["input_uri"],
        "created_at": plan["created_at"],
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "complete": rows_in == rows_out,
        "rows_by_status": {s.value: _count(summary, "status", s.value) for s in Status},
        "duplicates": duplicates,
        "totals": {
            "cost_usd": usd_text(cost),
            "baseline_cost_usd": usd_text(baseline),
            "saving_usd": usd_text(saving),
            "saving_pct": pct(saving, baseline),
            "batch_saved_usd": usd_text(_money(table, "batch_saved_usd")),
        },
        "by_tier": _breakdown(summary, "tier"),
        "by_model": _breakdown(summary, "model"),
        "by_tenant": _breakdown(summary, "tenant"),
        "by_mode": _breakdown(summary, "mode", NO_CALL, ("batch_saved_usd",)),
        "parts": [p.rsplit("/", 1)[-1] for p in parts],
        "cost_summary": "cost/summary.parquet",
    }


def _count(summary: pa.Table, key: str, value: str) -> int:
    mask = pc.equal(summary.column(key), value)
    return int(pc.sum(summary.filter(mask).column("rows")).as_py() or 0)


def savings(table: pa.Table, policy: Policy) -> dict[str, Any]:
    """What calls never made saved, at the serving model's list prices and the answer's
    tokens: ``cache_saved_usd`` (answered from the response cache) and ``dedupe_saved_usd``
    (exact duplicates answered with their canonical row's answer), with their row counts."""
    if table.num_rows == 0:  # an empty job's columns are untyped (all null)
        zero = usd_text(ZERO)
        return {"cache_hits": 0, "cache_saved_usd": zero, "duplicates_answered": 0,
                "dedupe_saved_usd": zero}  # fmt: skip
    models = {(t.name, m.name): m for t in policy.tiers for m in t.models}
    ok = pc.equal(table.column("status"), Status.OK.value)
    out: dict[str, Any] = {}
    for name, mask in (
        (  # a duplicate of a cache hit counts as a duplicate
            "cache",
            pc.and_(
                pc.and_(ok, pc.fill_null(table.column("cache_hit"), False)),
                pc.is_null(table.column("dedupe_of")),
            ),
        ),
        ("dedupe", pc.and_(ok, pc.is_valid(table.column("dedupe_of")))),
    ):
        rows = table.filter(mask)
        grouped = rows.group_by(["tier", "model"], use_threads=False).aggregate(
            [("input_tokens", "sum"), ("output_tokens", "sum")]
        )
        saved = Decimal(0)
        for g in grouped.to_pylist():
            model = models.get((g["tier"], g["model"]))
            if model is not None:
                saved += call_cost(model, g["input_tokens_sum"] or 0, g["output_tokens_sum"] or 0)
        key = "cache_hits" if name == "cache" else "duplicates_answered"
        out[key] = rows.num_rows
        out[f"{name}_saved_usd"] = usd_text(saved)
    return out


def finalize(rt: Runtime, ctx: JobContext) -> dict[str, Any]:
    """Write cost summary, manifest and ``_SUCCESS``; return the manifest."""
    storage, root = rt.storage, ctx.job_root
    plan = json.loads(storage.read_bytes(layout.plan(root)))
    dedupe.fill_duplicates(rt, ctx, rt.policy(ctx))  # job-wide duplicates' result parts
    drop_staging(rt, ctx, rt.policy(ctx))  # under minimise: no staged prompt text remains
    parts = storage.list_files(layout.results_dir(root), ".parquet")
    table = read_results(storage, parts)
    policy = rt.policy(ctx)
    built = rollup.build(table, policy)  # the one aggregation: summary and rollup files
    summary = cost_summary(built, ctx.job_id)
    storage.write_parquet(layout.cost_summary(root), summary)
    manifest = build_manifest(ctx, plan, parts, table, summary)
    manifest["tiers"] = list(policy.tier_names)
    manifest["classifier_version"] = rt.scorer_for(ctx, policy).version
    manifest["totals"].update(savings(table, policy))
    manifest["cost_rollup"] = rollup.write_built(
        storage, root, built, plan["created_at"], ctx.tenant
    )
    manifest["audit"] = audit.anchor_parts(storage, root, ctx.job_id)
    if not manifest["complete"]:
        reason = (
            f"row count out != row count in: {manifest['rows_out']} rows out, "
            f"{manifest['rows_in']} in"
        )
        fail_job(rt, ctx.job_id, root, f"finalize: {reason}", {"task": "finalize"}, manifest)
        raise RuntimeError(f"job {ctx.job_id}: {reason}")
    manifest["state"] = "succeeded"
    storage.write_bytes(layout.manifest(root), json.dumps(manifest, indent=2).encode())
    storage.delete(failure_uri(root))  # a record left by an earlier plan of this job id
    storage.write_bytes(layout.success(root), b"")
    rt.tracker.set_state(ctx.job_id, "succeeded", cost_usd=manifest["totals"]["cost_usd"])
    return manifest


# ---------------------------------------------------------------- a job that fails


def failure_uri(root: str) -> str:
    """``_job/failed.json``: why the job failed for good, and under which plan."""
    return join(root, "_job", "failed.json")


def failure_reason(exc: BaseException, failed_in: dict[str, Any], note: str = "") -> str:
    """One line: where (``ingest chunk 3``, ``dispatch chunk 0 tier fast``), ``note`` if
    any, the exception's type and its message (whitespace folded, at most 500 characters)."""
    where = " ".join(
        f"{label}{value}"
        for key, label in (("task", ""), ("chunk", "chunk "), ("tier", "tier "))
        if (value := failed_in.get(key)) is not None
    )
    text = redact_error(" ".join(str(exc).split()), 500)
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return ": ".join(part for part in (where, note, what) if part)


def _plan(storage: Storage, root: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(storage.read_bytes(layout.plan(root))))
    except (StorageError, ValueError):
        return None


def failure_of(storage: Storage, root: str) -> dict[str, Any] | None:
    """The job's failure record, if it failed for good under its current plan (a record
    left by an earlier plan of the same job id is not this job's)."""
    uri = failure_uri(root)
    if not storage.exists(uri):
        return None
    try:
        record = dict(json.loads(storage.read_bytes(uri)))
    except ValueError:
        return {"error": f"{uri}: unreadable failure record"}
    plan = _plan(storage, root)
    if plan is not None and record.get("plan_created_at") != plan.get("created_at"):
        return None
    return record


def fail_job(
    rt: Runtime,
    job_id: str,
    root: str,
    reason: str,
    failed_in: dict[str, Any],
    manifest: dict[str, Any] | None = None,
) -> bool:
    """The job failed for good: mark it ``failed`` with ``reason`` in the tracker, then —
    if this call is the one that failed it — write ``_job/failed.json`` and a
    ``manifest.json`` saying why (on ``manifest``, the finalizer's, when there is one).
    A job that has already ended stays as it is (False)."""
    if rt.storage.exists(layout.success(root)):
        return False  # a stale redelivered task of a finished job
    at = datetime.now(UTC).isoformat(timespec="seconds")
    if not rt.tracker.fail(job_id, reason, failed_at=at):
        return False
    plan = _plan(rt.storage, root) or {}
    record = {
        "job_id": job_id,
        "state": "failed",
        "error": reason,
        "failed_in": failed_in,
        "failed_at": at,
        "plan_created_at": plan.get("created_at"),
    }
    rt.storage.write_bytes(failure_uri(root), json.dumps(record, indent=2).encode())
    base = manifest if manifest is not None else _partial_manifest(rt, job_id, plan)
    out = {**base, **record, "complete": False}
    out.pop("plan_created_at")
    rt.storage.write_bytes(layout.manifest(root), json.dumps(out, indent=2).encode())
    return True


def _partial_manifest(rt: Runtime, job_id: str, plan: dict[str, Any]) -> dict[str, Any]:
    """What a failed job's manifest says besides why: the plan, and the rows written before
    the failure (their parts stay in ``results/``; no ``_SUCCESS``)."""
    ctx = plan.get("context", {})
    status = rt.tracker.status(job_id)
    by_status = status.rows_by_status if status is not None else {}
    return {
        "job_id": job_id,
        "tenant": ctx.get("tenant"),
        "policy_version": ctx.get("policy_version"),
        "input_uri": plan.get("input_uri"),
        "created_at": plan.get("created_at"),
        "rows_in": plan.get("rows_total"),
        "rows_out": sum(by_status.values()),
        "rows_by_status": by_status,
    }
