"""The report's experiment section: per arm, what it cost (from the cost rollups, like every
other breakdown) and how good its answers were judged (from the exploration labels under
the jobs' output roots, ``workers/labels.py``).

Per arm (``<experiment>:<arm>``): rows, cost, cost per 1,000 rows; and over its judged
answers (explored rows: the served answer graded with the partner tier's):

- ``judged``: how many; ``quality``: the mean grade of the served answers, with a 95 %
  confidence interval (normal approximation: mean ± 1.96 · sd / √n; null below 2);
- ``regret``: the mean of (the better grade of the pair − the served grade): the quality
  the arm left on the table where the partner tier did better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl
from rich.table import Table

from producer.report.data import entry, grouped
from routing.errors import InputError
from workers.labels import collect_labels
from workers.storage import Storage

Z95 = 1.96


def judged(labels: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Per arm: judged answers, mean grade and its 95 % interval, regret (see the doc)."""
    if labels.height == 0 or "arm" not in labels.columns or "served" not in labels.columns:
        return {}
    pairs = (
        labels.filter(pl.col("arm").is_not_null())
        .group_by("arm", "prompt_id", "job_id")
        .agg(
            pl.col("quality").filter(pl.col("served")).first().alias("served"),
            pl.col("quality").max().alias("best"),
        )
        .drop_nulls("served")
    )
    out = {}
    for (arm,), group in pairs.group_by("arm"):
        q = group["served"].to_numpy()
        n = len(q)
        mean = float(q.mean())
        half = Z95 * float(q.std(ddof=1)) / math.sqrt(n) if n > 1 else None
        out[str(arm)] = {
            "judged": n,
            "quality": round(mean, 4),
            "quality_ci95": None
            if half is None
            else [round(mean - half, 4), round(mean + half, 4)],
            "regret": round(float((group["best"] - group["served"]).to_numpy().mean()), 4),
        }
    return out


def section(
    storage: Storage, frame: pl.DataFrame, job_roots: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``by_arm`` of the report: cost per arm (rollups) joined with its judged quality."""
    if "arm" not in frame.columns or frame["arm"].drop_nulls().len() == 0:
        return {}
    costs = {r["arm"]: entry(r) for r in grouped(frame, ["arm"]).iter_rows(named=True) if r["arm"]}
    jobs = {root.rstrip("/").rsplit("job_id=", 1)[-1] for root in job_roots}
    roots = sorted({root.rstrip("/").rsplit("/", 1)[0] for root in job_roots})
    frames = []
    for root in roots:
        try:
            frames.append(collect_labels(storage, root, newest=False)[0])
        except InputError:  # no exploration under this root
            continue
    labels = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    if labels.height:
        labels = labels.filter(pl.col("job_id").is_in(sorted(jobs)))
    quality = judged(labels)
    empty = {"judged": 0, "quality": None, "quality_ci95": None, "regret": None}
    return {arm: {**cost, **quality.get(arm, empty)} for arm, cost in sorted(costs.items())}


def table(by_arm: dict[str, dict[str, Any]]) -> Table:
    """The terminal table of ``by_arm``."""
    out = Table(title="by experiment arm (judged: explored rows)", title_justify="left")
    for col in ("arm", "rows", "cost", "per 1k rows", "judged", "quality (95% CI)", "regret"):
        out.add_column(col, justify="left" if col == "arm" else "right")
    for arm, line in by_arm.items():
        per_1k = float(line["cost_usd"]) / max(line["rows"], 1) * 1000
        ci = line["quality_ci95"]
        shown = (
            "—"
            if line["quality"] is None
            else f"{line['quality']:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
        )
        out.add_row(
            arm,
            f"{line['rows']:,}",
            f"${float(line['cost_usd']):,.4f}",
            f"${per_1k:,.4f}",
            f"{line['judged']:,}",
            shown,
            "—" if line["regret"] is None else f"{line['regret']:.3f}",
        )
    return out
