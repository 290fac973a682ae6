"""The cost report of a finished job, from its ``manifest.json``."""

from __future__ import annotations

import json
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


def _usd(value: str | Decimal) -> str:
    amount = Decimal(value)
    return f"${amount:,.4f}" if amount < 100 else f"${amount:,.2f}"


def render(manifest: dict[str, Any]) -> Group:
    """A terminal report: totals, then cost by tier against the all-expert baseline."""
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
            tier, f"{entry['rows']:,}", _usd(entry["cost_usd"]), _usd(entry["baseline_cost_usd"])
        )
    by_tier.add_section()
    by_tier.add_row(
        "total",
        f"{manifest['rows_out']:,}",
        _usd(totals["cost_usd"]),
        _usd(totals["baseline_cost_usd"]),
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
        "saving", f"{_usd(totals['saving_usd'])} ({totals['saving_pct']:.1f}% vs all-expert)"
    )
    if "cache_saved_usd" in totals:
        summary.add_row(
            "reuse",
            f"{totals['cache_hits']:,} answered from the cache ({_usd(totals['cache_saved_usd'])}"
            f" not spent), {totals['duplicates_answered']:,} duplicates "
            f"({_usd(totals['dedupe_saved_usd'])} not spent)",
        )
    summary.add_row("policy", manifest["policy_version"])
    return Group(by_tier, summary)
