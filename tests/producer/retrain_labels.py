"""Judged exploration labels for the retraining tests, written as exploration writes them
(``workers.explore.LABEL_SCHEMA`` under ``_labels/day=…/tenant=default/``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from workers.explore import LABEL_SCHEMA, label_id

FAST, BALANCED = "fast-model", "balanced-model"


def write_night(root: Path, day: datetime, n: int, offset: int) -> None:
    """A night of judged pairs: prompts mentioning 'ledger' need the balanced model."""
    rows = []
    for i in range(offset, offset + n):
        hard = i % 2 == 0
        prompt = f"Reconcile the ledger entry {i}" if hard else f"Say hello to visitor {i}"
        for model, tier, q in ((FAST, "fast", 0.0 if hard else 1.0), (BALANCED, "balanced", 1.0)):
            rows.append(
                {
                    "dataset": "feedback", "prompt_id": label_id(prompt), "prompt": prompt,
                    "model": model, "quality": q, "input_tokens": 10, "output_tokens": 5,
                    "cost_usd": 1e-6 if tier == "fast" else 1e-5, "response": "…", "tier": tier,
                    "judge": "reference", "tenant": "default", "customer_tier": None,
                    "job_id": f"night-{day:%d}", "source_prompt_id": f"p{i}",
                    "labelled_at": day.isoformat(timespec="seconds"),
                }
            )  # fmt: skip
    folder = root / "_labels" / f"day={day.date()}" / "tenant=default"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=LABEL_SCHEMA), folder / f"n{offset}.parquet")
