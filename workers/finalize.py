"""The job finalizer: runs once all chunks are written (and is safe to run again).

It reads the result parts (only the columns it needs), checks that row count out equals
row count in, writes the cost summary and the cost rollup (workers.rollup), then
``manifest.json``, then ``_SUCCESS`` —
in that order, so a reader that sees ``_SUCCESS`` sees a complete job. The manifest
anchors every part's audit chain (record count and last hash; workers.audit).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from routing.cost import call_cost
from routing.plan import JobContext
from routing.policy import Policy
from routing.schema import COST_SUMMARY_SCHEMA, Status
from workers import audit, dedupe, layout, rollup
from workers.stages import Runtime, drop_staging

_COLUMNS = [*rollup.INPUTS, rollup.ATTEMPTS]  # what the rollup, summary and savings read
NOT_ROUTED = "(not routed)"  # breakdown label of rows that never reached a tier (rejected)


def cost_summary(built: pa.Table, job_id: str) -> pa.Table:
    """Rows, tokens, cost and baseline by tenant, tier, model and status: the job's cost
    rollup (workers.rollup, already grouped and sorted that way) without its extra columns."""
    columns = {"job_id": pa.array([job_id] * built.num_rows, pa.string())}
    columns.update({name: built.column(name) for name in COST_SUMMARY_SCHEMA.names[1:]})
    return pa.table(columns).cast(COST_SUMMARY_SCHEMA)


def _money(table: pa.Table, column: str) -> Decimal:
    value = pc.sum(table.column(column)).as_py()
    return value if value is not None else Decimal(0)


def _breakdown(summary: pa.Table, key: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in summary.to_pylist():
        name = row[key] if row[key] is not None else NOT_ROUTED
        entry = out.setdefault(
            name, {"rows": 0, "cost_usd": Decimal(0), "baseline_cost_usd": Decimal(0)}
        )
        entry["rows"] += row["rows"]
        entry["cost_usd"] += row["cost_usd"] or 0
        entry["baseline_cost_usd"] += row["baseline_cost_usd"] or 0
    return {
        k: {**v, "cost_usd": str(v["cost_usd"]), "baseline_cost_usd": str(v["baseline_cost_usd"])}
        for k, v in out.items()
    }


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
            "cost_usd": str(cost),
            "baseline_cost_usd": str(baseline),
            "saving_usd": str(saving),
            "saving_pct": float(saving / baseline * 100) if baseline else 0.0,
        },
        "by_tier": _breakdown(summary, "tier"),
        "by_model": _breakdown(summary, "model"),
        "by_tenant": _breakdown(summary, "tenant"),
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
        zero = str(Decimal(0))
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
        out[f"{name}_saved_usd"] = str(saved)
    return out


def finalize(rt: Runtime, ctx: JobContext) -> dict[str, Any]:
    """Write cost summary, manifest and ``_SUCCESS``; return the manifest."""
    storage, root = rt.storage, ctx.job_root
    plan = json.loads(storage.read_bytes(layout.plan(root)))
    dedupe.fill_duplicates(rt, ctx, rt.policy(ctx))  # job-wide duplicates' result parts
    drop_staging(rt, ctx, rt.policy(ctx))  # under minimise: no staged prompt text remains
    parts = storage.list_files(layout.results_dir(root), ".parquet")
    tables = [storage.read_parquet(p, columns=_COLUMNS) for p in parts]
    table = pa.concat_tables(tables) if tables else pa.table({c: [] for c in _COLUMNS})
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
    storage.write_bytes(layout.manifest(root), json.dumps(manifest, indent=2).encode())
    if not manifest["complete"]:
        rt.tracker.set_state(ctx.job_id, "failed", error="row count out != row count in")
        raise RuntimeError(
            f"job {ctx.job_id}: {manifest['rows_out']} rows out, {manifest['rows_in']} in"
        )
    storage.write_bytes(layout.success(root), b"")
    rt.tracker.set_state(ctx.job_id, "succeeded", cost_usd=manifest["totals"]["cost_usd"])
    return manifest
