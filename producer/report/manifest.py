"""The cost report of a finished job, from its ``manifest.json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rich.console import Group
from rich.table import Table

from workers import layout
from workers.storage import Storage


def find_job_root(storage: Storage, path: str) -> str:
    """``path`` is a job root (…/job_id=<id>) or an output root holding exactly one job."""
    if "job_id=" in path.rstrip("/").rsplit("/", 1)[-1]:
        root = path.rstrip("/")
        if not storage.exists(layout.manifest(root)):
            raise FileNotFoundError(f"{path}: no manifest.json (no such job, or not finished)")
        return root
    manifests = [u for u in storage.list_files(path, "manifest.json") if "/job_id=" in u]
    roots = sorted({m.rsplit("/", 1)[0] for m in manifests})
    if not roots:
        raise FileNotFoundError(f"{path}: no finished job found (no job_id=*/manifest.json)")
    if len(roots) > 1:
        found = ", ".join(r.rsplit("/", 1)[-1] for r in roots)
        raise FileNotFoundError(f"{path}: holds {len(roots)} jobs ({found}); give one job folder")
    return roots[0]


def load_manifest(storage: Storage, job_root: str) -> dict[str, Any]:
    return dict(json.loads(storage.read_bytes(layout.manifest(job_root))))


def usd(value: str | Decimal) -> str:
    amount = Decimal(value)
    return f"${amount:,.4f}" if amount < 100 else f"${amount:,.2f}"


def _by_mode(title: str, lines: dict[str, dict[str, Any]], rows_total: int) -> Table:
    """Cost by mode (realtime, batch, no call): rows, cost, baseline, batch saved."""
    return _table(title, "mode", lines, rows_total, "batch saved", _batch_saved)


def _batch_saved(entry: dict[str, Any]) -> str:
    return usd(entry.get("batch_saved_usd", "0"))


def _saving(entry: dict[str, Any]) -> str:
    return f"{usd(entry['saving_usd'])} ({entry['saving_pct']:.1f}%)"


def _batch_line(totals: dict[str, Any], lines: dict[str, dict[str, Any]]) -> str:
    rows = lines.get("batch", {}).get("rows", 0)
    return (
        f"{usd(totals['batch_saved_usd'])} saved by provider batches vs realtime prices "
        f"({rows:,} rows answered in batch mode)"
    )


def render(manifest: dict[str, Any]) -> Group:
    """A terminal report: totals, then cost by tier against the all-expert baseline, and
    by mode when provider batches answered rows."""
    totals = manifest["totals"]
    by_tier = Table(title=f"job {manifest['job_id']} — cost by tier", title_justify="left")
    for col in ("tier", "rows", "cost", "all-expert baseline"):
        by_tier.add_column(col, justify="left" if col == "tier" else "right")
    order = {name: i for i, name in enumerate(manifest.get("tiers", []))}
    tiers = sorted(
        manifest["by_tier"].items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])
    )
    for tier, entry in tiers:
        by_tier.add_row(
            tier, f"{entry['rows']:,}", usd(entry["cost_usd"]), usd(entry["baseline_cost_usd"])
        )
    by_tier.add_section()
    by_tier.add_row(
        "total",
        f"{manifest['rows_out']:,}",
        usd(totals["cost_usd"]),
        usd(totals["baseline_cost_usd"]),
    )
    summary = Table.grid(padding=(0, 2))
    statuses = ", ".join(f"{k} {v:,}" for k, v in manifest["rows_by_status"].items() if v)
    summary.add_row(
        "rows",
        f"{manifest['rows_in']:,} in, {manifest['rows_out']:,} out"
        + (f" ({statuses})" if statuses else "")
        + f"; {manifest['duplicates']:,} duplicates answered once",
    )
    summary.add_row(
        "saving", f"{usd(totals['saving_usd'])} ({totals['saving_pct']:.1f}% vs all-expert)"
    )
    if "cache_saved_usd" in totals:
        summary.add_row(
            "reuse",
            f"{totals['cache_hits']:,} answered from the cache ({usd(totals['cache_saved_usd'])}"
            f" not spent), {totals['duplicates_answered']:,} duplicates "
            f"({usd(totals['dedupe_saved_usd'])} not spent)",
        )
    by_mode = manifest.get("by_mode", {})
    tables: list[Any] = [by_tier]
    if "batch" in by_mode:  # a manifest from before batch mode has no by_mode
        tables.append(_by_mode("cost by mode", by_mode, manifest["rows_out"]))
        summary.add_row("batch", _batch_line(totals, by_mode))
    summary.add_row("policy", manifest["policy_version"])
    return Group(*tables, summary)


def _pct(part: int, whole: int) -> str:
    return f"{part / whole * 100:.1f}%" if whole else "–"


def _table(
    title: str,
    key: str,
    lines: dict[str, dict[str, Any]],
    rows_total: int,
    last: str = "saving",
    last_cell: Callable[[dict[str, Any]], str] = _saving,
) -> Table:
    table = Table(title=title, title_justify="left")
    for col in (key, "rows", "share", "cost", "all-expert baseline", last):
        table.add_column(col, justify="left" if col == key else "right")
    for name, entry in lines.items():
        table.add_row(
            name,
            f"{entry['rows']:,}",
            _pct(entry["rows"], rows_total),
            usd(entry["cost_usd"]),
            usd(entry["baseline_cost_usd"]),
            last_cell(entry),
        )
    return table


def _scope(report: dict[str, Any]) -> str:
    filters = report["filters"]
    days = (
        f"{report['first_day']} … {report['last_day']}"
        if report["first_day"] != report["last_day"]
        else str(report["first_day"])
    )
    text = f"{report['jobs']:,} job{'s' if report['jobs'] != 1 else ''}, {days}"
    if filters.get("tenant") is not None:
        text += f", tenant {filters['tenant']}"
    return text


def render_report(report: dict[str, Any]) -> Group:
    """A terminal report of cost rollups: by tier, tenant, model and day, then totals."""
    totals = report["totals"]
    rows = totals["rows"]
    if rows == 0:
        return Group(f"cost report — no rows match ({_scope_filters(report)})")
    parts: list[Any] = [
        _table(f"cost report — {_scope(report)} — by tier", "tier", report["by_tier"], rows)
    ]
    for key, title in (("tenant", "by tenant"), ("model", "by model"), ("day", "by day")):
        lines = report[f"by_{key}"]
        if len(lines) > 1:
            parts.append(_table(title, key, lines, rows))
    by_mode = report["by_mode"]
    if "batch" in by_mode:
        parts.append(_by_mode("by mode", by_mode, rows))
    if report.get("by_arm"):
        from producer.report.experiment import table

        parts.append(table(report["by_arm"]))
    summary = Table.grid(padding=(0, 2))
    statuses = ", ".join(f"{k} {v['rows']:,}" for k, v in report["by_status"].items())
    summary.add_row("rows", f"{rows:,} ({statuses})")
    summary.add_row(
        "cost", f"{usd(totals['cost_usd'])} of {usd(totals['baseline_cost_usd'])} all-expert"
    )
    summary.add_row(
        "saving", f"{usd(totals['saving_usd'])} ({totals['saving_pct']:.1f}% vs all-expert)"
    )
    summary.add_row(
        "reuse",
        f"{totals['cache_hits']:,} answered from the cache ({usd(totals['cache_saved_usd'])}"
        f" not spent), {totals['duplicates']:,} duplicates ({usd(totals['dedupe_saved_usd'])}"
        " not spent)",
    )
    if "batch" in by_mode:
        summary.add_row("batch", _batch_line(totals, by_mode))
    lat = totals["latency_ms"]
    if lat["count"]:
        summary.add_row(
            "latency",
            f"mean {lat['mean_ms']:,.0f} ms, p50 ≈ {lat['p50_ms']:,.0f}, p95 ≈ "
            f"{lat['p95_ms']:,.0f}, p99 ≈ {lat['p99_ms']:,.0f}, max {lat['max_ms']:,.0f} ms "
            f"({lat['count']:,} calls)",
        )
    parts.append(summary)
    return Group(*parts)


def _scope_filters(report: dict[str, Any]) -> str:
    filters = {k: v for k, v in report["filters"].items() if v is not None}
    shown = ", ".join(f"{k} {v}" for k, v in filters.items()) or "no filter"
    n = report["jobs_searched"]
    return f"{n:,} job{'' if n == 1 else 's'} searched; {shown}"
