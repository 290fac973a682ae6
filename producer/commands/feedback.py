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

from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console

from routing.errors import InputError
from workers.labels import collect_labels
from workers.storage import Storage


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
