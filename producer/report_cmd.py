"""``batch-router report``: the cost report of finished jobs."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from producer.app import _settings, app, console
from workers.storage import Storage


@app.command()
def report(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Argument(metavar="PATH", help="a job folder (…/job_id=ID) or its output root"),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest as JSON")] = False,
) -> None:
    """Print a finished job's cost report.

    Example: `batch-router report ./out/job_id=20261128T021500Z-3fa2c1`
    """
    from producer.report import find_job_root, load_manifest

    storage = Storage(_settings(ctx).s3)
    try:
        root = find_job_root(storage, path)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="PATH") from exc
    _print_manifest(load_manifest(storage, root), as_json)


def _print_manifest(manifest: dict[str, object], as_json: bool) -> None:
    from producer.report import render

    if as_json:
        console.print_json(json.dumps(manifest))
    else:
        console.print(render(manifest))
