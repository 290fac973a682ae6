"""``report --html``: one self-contained HTML file (plotly.js inlined, no CDN, works offline).

Charts, all from the cost rollup rows (never result rows): cost by day stacked by tier,
model and tenant; cost against the all-expert baseline by day; cache and dedupe savings
by day; the routing mix (rows by tier and by status); latency (the rollup's buckets, and
estimated percentiles by tier). Tables carry the exact amounts; charts plot them as floats.
A card shows what provider batches saved; a table by mode (realtime, batch, no call) when
batch mode answered rows.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs

from producer.report.data import BUCKETS, grouped, label, latency
from producer.report.manifest import usd
from routing.schema import LATENCY_BUCKETS_MS

_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "height": 380,
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
    "legend": {"orientation": "h", "y": -0.18},
}
_DAYS = {"type": "category", "categoryorder": "category ascending"}  # one bar per day, in order
_STATUS_COLORS = {
    "ok": "#2ca02c",
    "failed": "#d62728",
    "rejected": "#7f7f7f",
    "over_budget": "#ff7f0e",
}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1320px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 4px; } .scope { color: #666; margin-bottom: 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0 20px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px 16px; flex: 1 1 170px; }
.card .v { font-size: 1.35em; font-weight: 600; } .card .k { color: #666; font-size: .85em; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.chart { border: 1px solid #eee; border-radius: 6px; }
table { border-collapse: collapse; margin: 8px 0 20px; font-size: .9em; }
td, th { border-bottom: 1px solid #eee; padding: 4px 10px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
"""


def _float_money(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Money as floats for plotting, days as ISO strings (a category axis: one bar per day)."""
    out = frame.with_columns(pl.col(c).cast(pl.Float64) for c in columns)
    return out.with_columns(pl.col("day").cast(pl.String)) if "day" in out.columns else out


def _colors(frame: pl.DataFrame, key: str) -> dict[str, str]:
    """One colour per value of ``key``, the same in every chart of the page."""
    names = sorted({label(key, v) for v in frame[key].unique().to_list()})
    if key == "status":
        return {n: _STATUS_COLORS.get(n, "#7f7f7f") for n in names}
    palette = qualitative.Plotly + qualitative.D3
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _stacked_by_day(frame: pl.DataFrame, key: str, title: str) -> go.Figure:
    data = _float_money(grouped(frame, ["day", key]), "cost_usd")
    colors = _colors(frame, key)
    fig = go.Figure()
    for name in data[key].unique(maintain_order=True).to_list():
        part = data.filter(pl.col(key).eq_missing(name))
        shown = label(key, name)
        fig.add_bar(
            x=part["day"].to_list(),
            y=part["cost_usd"].to_list(),
            name=shown,
            marker_color=colors[shown],
        )
    fig.update_layout(title=title, barmode="stack", yaxis_title="USD", **_LAYOUT)
    fig.update_xaxes(_DAYS)
    return fig


def _saving(frame: pl.DataFrame) -> go.Figure:
    data = _float_money(grouped(frame, ["day"]), "cost_usd", "baseline_cost_usd")
    days = data["day"].to_list()
    fig = go.Figure()
    fig.add_bar(x=days, y=data["baseline_cost_usd"].to_list(), name="all-expert baseline")
    fig.add_bar(x=days, y=data["cost_usd"].to_list(), name="cost (routed)")
    saving = (data["baseline_cost_usd"] - data["cost_usd"]).to_list()
    fig.add_scatter(x=days, y=saving, name="saving", mode="lines+markers")
    fig.update_layout(
        title="Cost vs the all-expert baseline", yaxis_title="USD", barmode="group", **_LAYOUT
    )
    fig.update_xaxes(_DAYS)
    return fig


def _reuse(frame: pl.DataFrame) -> go.Figure:
    data = _float_money(grouped(frame, ["day"]), "cache_saved_usd", "dedupe_saved_usd")
    days = data["day"].to_list()
    fig = go.Figure()
    fig.add_bar(x=days, y=data["cache_saved_usd"].to_list(), name="response cache")
    fig.add_bar(x=days, y=data["dedupe_saved_usd"].to_list(), name="exact dedupe")
    fig.update_layout(
        title="Saved by calls never made (list prices)",
        barmode="stack",
        yaxis_title="USD",
        **_LAYOUT,
    )
    fig.update_xaxes(_DAYS)
    return fig


def _mix(frame: pl.DataFrame) -> go.Figure:
    fig = go.Figure()
    for key, domain in (("tier", [0, 0.48]), ("status", [0.52, 1])):
        data = grouped(frame, [key])
        names = [label(key, v) for v in data[key].to_list()]
        colors = _colors(frame, key)
        fig.add_pie(
            labels=names,
            values=data["rows"].to_list(),
            hole=0.45,
            name=key,
            title={"text": f"rows by {key}"},
            domain={"x": domain},
            sort=False,
            marker={"colors": [colors[n] for n in names]},
        )
    fig.update_layout(title="Routing mix", **_LAYOUT)
    return fig


def _latency(frame: pl.DataFrame) -> go.Figure:
    sums = frame.select(pl.col(BUCKETS).sum(), pl.col("latency_count").sum()).row(0, named=True)
    cumulative = [int(sums[b] or 0) for b in BUCKETS] + [int(sums["latency_count"] or 0)]
    counts = [c - p for c, p in zip(cumulative, [0, *cumulative[:-1]], strict=True)]
    edges = [0, *LATENCY_BUCKETS_MS]
    names = [f"{lo:,}–{hi:,}" for lo, hi in zip(edges, LATENCY_BUCKETS_MS, strict=False)]
    names.append(f"> {LATENCY_BUCKETS_MS[-1]:,}")
    fig = go.Figure()
    fig.add_bar(x=names, y=counts, name="provider calls")
    fig.update_layout(
        title="Latency (ms) of provider calls", xaxis_title="ms", yaxis_title="calls", **_LAYOUT
    )
    return fig


def _latency_by_tier(frame: pl.DataFrame) -> go.Figure:
    data = grouped(frame, ["tier"]).filter(pl.col("latency_count") > 0)
    fig = go.Figure()
    stats = [latency(row) for row in data.iter_rows(named=True)]
    tiers = [label("tier", t) for t in data["tier"].to_list()]
    fig.update_xaxes(type="category")
    for q in ("p50_ms", "p95_ms", "p99_ms"):
        fig.add_bar(x=tiers, y=[s[q] for s in stats], name=q.removesuffix("_ms"))
    fig.update_layout(
        title="Latency percentiles by tier (estimated)",
        yaxis_title="ms",
        barmode="group",
        **_LAYOUT,
    )
    return fig


def figures(frame: pl.DataFrame) -> list[go.Figure]:
    """The report's charts, in page order."""
    return [
        _stacked_by_day(frame, "tier", "Cost by tier over time"),
        _saving(frame),
        _stacked_by_day(frame, "model", "Cost by model over time"),
        _stacked_by_day(frame, "tenant", "Cost by tenant over time"),
        _reuse(frame),
        _mix(frame),
        _latency(frame),
        _latency_by_tier(frame),
    ]


def _cards(totals: dict[str, Any], batch_rows: int) -> str:
    cards = [
        ("cost", usd(totals["cost_usd"])),
        ("all-expert baseline", usd(totals["baseline_cost_usd"])),
        ("saving", f"{usd(totals['saving_usd'])} ({totals['saving_pct']:.1f}%)"),
        ("rows", f"{totals['rows']:,}"),
        ("cache saved", f"{usd(totals['cache_saved_usd'])} ({totals['cache_hits']:,} rows)"),
        ("dedupe saved", f"{usd(totals['dedupe_saved_usd'])} ({totals['duplicates']:,} rows)"),
        ("batch saved", f"{usd(totals['batch_saved_usd'])} ({batch_rows:,} batch rows)"),
    ]
    return "".join(
        f'<div class="card"><div class="v">{html.escape(v)}</div>'
        f'<div class="k">{html.escape(k)}</div></div>'
        for k, v in cards
    )


def _table(key: str, lines: dict[str, dict[str, Any]]) -> str:
    batch = key == "mode"  # the by-mode table adds what the batch discount saved
    head = ("cost USD", "baseline USD", "saving USD", "saving %")
    head = (key, "rows", *head, *(("batch saved USD",) if batch else ()))
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                name,
                f"{e['rows']:,}",
                e["cost_usd"],
                e["baseline_cost_usd"],
                e["saving_usd"],
                f"{e['saving_pct']:.1f}",
                *((e["batch_saved_usd"],) if batch else ()),
            )
        )
        + "</tr>"
        for name, e in lines.items()
    )
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<h3>by {html.escape(key)}</h3><table><tr>{cells}</tr>{body}</table>"


def render_html(frame: pl.DataFrame, report: dict[str, Any]) -> str:
    """The whole page: totals, charts, then the exact breakdown tables."""
    filters = {k: v for k, v in report["filters"].items() if v is not None}
    scope = (
        f"{report['jobs']:,} of {report['jobs_searched']:,} jobs, "
        f"{report['first_day'] or '–'} … {report['last_day'] or '–'}"
        + "".join(f"; {k} {v}" for k, v in filters.items())
    )
    if report["totals"]["rows"] == 0:
        charts = "<p>No rows match.</p>"
    else:
        charts = "".join(
            '<div class="chart">'
            + pio.to_html(
                fig,
                full_html=False,
                include_plotlyjs=False,
                config={"displaylogo": False, "responsive": True},
            )
            + "</div>"
            for fig in figures(frame)
        )
    by_mode = report["by_mode"]
    keys = ("tier", "model", "tenant", "day", *(("mode",) if "batch" in by_mode else ()))
    tables = "".join(_table(k, report[f"by_{k}"]) for k in keys)
    batch_rows = by_mode.get("batch", {}).get("rows", 0)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>batch-router cost report</title>"
        f"<style>{_STYLE}</style><script>{get_plotlyjs()}</script></head><body>"
        f"<h1>batch-router cost report</h1><div class='scope'>{html.escape(scope)}</div>"
        f"<div class='cards'>{_cards(report['totals'], batch_rows)}</div>"
        f"<div class='grid'>{charts}</div>{tables}</body></html>"
    )
