"""``batch-router feedback``: collect the judged labels that exploration wrote under an output
root into one labels file for ``batch-router train --feedback`` (``docs/training.md``).

Exploration (policy ``explore:``; ``workers/explore.py``) writes, per tier batch,
``<root>/_labels/day=<YYYY-MM-DD>/tenant=<t>/<job>-c<chunk>-<tier>.parquet``: two rows per
graded prompt in the label format (``prompt_id, prompt, model, quality, input_tokens,
output_tokens, cost_usd``) plus ``response``, ``tier``, ``judge``, ``tenant``, ``job_id``.
This command reads them (local or ``s3://``), keeps the days from ``--since`` and the
tenants of ``--tenant``, keeps the newest label of each (prompt, model) — the same prompt
text has the same ``prompt_id`` every night — and writes one Parquet file.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console

from routing.errors import InputError
from routing.names import encoded, validate_tenant
from workers.layout import LABELS_DIR
from workers.storage import Storage, join

_PARTITION = re.compile(r"/day=(\d{4}-\d{2}-\d{2})/tenant=([^/]+)/[^/]+\.parquet$")


def collect_labels(
    storage: Storage,
    root: str,
    *,
    tenants: list[str] | None = None,
    since: date | None = None,
) -> tuple[pl.DataFrame, int, int]:
    """The labels under ``root`` (newest per (prompt, model)), the files read and the rows
    read; InputError when there are none."""
    wanted = {encoded(validate_tenant(t)) for t in tenants or []}
    folder = join(root, LABELS_DIR)
    files = []
    for uri in storage.list_files(folder, ".parquet"):
        m = _PARTITION.search(uri)
        if m is None:
            continue
        day, tenant = m.group(1), m.group(2)
        if since is not None and day < since.isoformat():
            continue
        if wanted and tenant not in wanted:
            continue
        files.append(uri)
    if not files:
        raise InputError(
            f"no labels under {folder}"
            + (" for these --tenant / --since" if wanted or since else "")
            + " (a policy with explore: {rate: …} writes them)"
        )
    frames = [pl.DataFrame(pl.from_arrow(storage.read_parquet_file(uri))) for uri in files]
    frame = pl.concat(frames, how="diagonal_relaxed")  # files of older / newer writers
    rows = frame.height
    newest = frame.sort("labelled_at").unique(["prompt_id", "model"], keep="last")
    return newest.sort("prompt_id", "model"), len(files), rows


def run_feedback(
    storage: Storage,
    root: str,
    out: Path,
    console: Console,
    *,
    tenants: list[str] | None = None,
    since: date | None = None,
) -> dict[str, Any]:
    """Collect the labels under ``root`` into ``out``; return a summary."""
    if out.suffix.lower() != ".parquet":
        raise InputError(f"--out {out}: write the labels to a .parquet file")
    frame, n_files, rows = collect_labels(storage, root, tenants=tenants, since=since)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(out)
    models = dict(sorted(Counter(frame.get_column("model").to_list()).items()))
    summary: dict[str, Any] = {
        "files": n_files,
        "label_rows_read": rows,
        "label_rows": frame.height,
        "prompts": frame.get_column("prompt_id").n_unique(),
        "models": models,
        "tenants": sorted(set(frame.get_column("tenant").to_list())),
        "out": str(out),
    }
    console.print(
        f"{summary['prompts']:,} judged prompts ({summary['label_rows']:,} label rows from "
        f"{n_files:,} files) → {out}; models: "
        + ", ".join(f"{m} {n:,}" for m, n in models.items()),
        highlight=False,
    )
    return summary
