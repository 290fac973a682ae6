"""``batch-router report``: the cost report of finished jobs, from their cost rollups."""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer

from producer.app import _settings, app, console, err
from workers.storage import Storage

if TYPE_CHECKING:
    import polars as pl


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD, UTC)", param_hint=option
        ) from None


@app.command()
def report(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH",
            help="job folders (…/job_id=ID) or output roots holding job_id=* folders; s3:// too",
        ),
    ],
    tenant: Annotated[str | None, typer.Option(help="only this tenant's rows")] = None,
    since: Annotated[
        str | None, typer.Option(help="first day, YYYY-MM-DD (a job's day: UTC date created)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="last day, YYYY-MM-DD, inclusive")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print totals and breakdowns as one JSON object")
    ] = False,
    html: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="also write a self-contained HTML report with charts"),
    ] = None,
) -> None:
    """Cost, saving vs the all-expert baseline, cache and dedupe savings, routing mix and
    latency of finished jobs, from their cost rollups (cost/day=…/tenant=…/).

    Example: `batch-router report s3://out/ --tenant acme --since 2026-11-01 --html nov.html`
    """
    from producer.report import data as report_data
    from producer.report import query as report_query

    filters = report_query.Filters(tenant, _day(since, "--since"), _day(until, "--until"))
    if filters.since and filters.until and filters.since > filters.until:
        raise typer.BadParameter(f"--since {since} is after --until {until}", param_hint="--since")
    storage = Storage(_settings(ctx).s3)
    try:
        jobs, frame = report_query.load(storage, paths, filters)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="PATH") from exc
    for root in jobs.without_rollup:
        err.print(f"skipped {root}: finished before cost rollups (no cost/day=*/)")
    shown = {"tenant": tenant, "since": since, "until": until}
    result = report_data.build(frame, len(jobs.job_roots), shown)
    if "arm" in frame.columns and frame["arm"].drop_nulls().len():
        from producer.report.experiment import section

        result["by_arm"] = section(storage, frame, jobs.job_roots)
    if html is not None:
        _write_html(storage, html, frame, result)
    _print_report(result, as_json)


def _write_html(storage: Storage, path: str, frame: pl.DataFrame, result: dict[str, Any]) -> None:
    from producer.report.html import render_html

    storage.write_bytes(path, render_html(frame, result).encode())
    err.print(f"html report: {path}")


def _print_report(result: dict[str, Any], as_json: bool) -> None:
    from producer.report.manifest import render_report

    if as_json:
        console.print_json(json.dumps(result))
    else:
        console.print(render_report(result))


def _print_manifest(manifest: dict[str, object], as_json: bool) -> None:
    """One job's report from its manifest (what `run` and `submit --wait` print)."""
    from producer.report.manifest import render

    if as_json:
        console.print_json(json.dumps(manifest))
    else:
        console.print(render(manifest))
