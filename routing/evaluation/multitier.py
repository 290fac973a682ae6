"""More than two models: each model's quality and cost on the prompts labelled for all of
them, the oracle, and the cheapest-adequate tier mix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from routing.errors import InputError
from routing.evaluation.labels import EPS, Floats, check_labels, models_by_cost


@dataclass(frozen=True)
class TierRow:
    """One model of a multi-tier file: mean quality and cost per prompt, and the share of
    prompts for which it is the cheapest adequate model."""

    model: str
    quality: float
    cost: float
    cheapest_adequate_share: float


@dataclass(frozen=True)
class MultiTier:
    """All models of a file on the prompts labelled for every one of them, cheapest first.

    ``oracle_*``: per prompt the best quality of any model (the cheapest model reaching it);
    ``adequate_*``: per prompt the cheapest adequate model (quality ≥ ``threshold``, else ≥
    the ``reference`` model's quality on that prompt; 1 for 0/1 labels)."""

    prompts: int
    reference: str
    rows: tuple[TierRow, ...]
    oracle_quality: float
    oracle_cost: float
    adequate_quality: float
    adequate_cost: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rows": [r.__dict__ for r in self.rows]}


def multi_tier(
    labels: pl.DataFrame, reference: str | None = None, threshold: float | None = None
) -> MultiTier:
    """Per-model quality and cost, the oracle, and the cheapest-adequate tier mix."""
    check_labels(labels)
    models = models_by_cost(labels)
    reference = models[-1] if reference is None else reference
    if reference not in models:
        raise InputError(f"labels: no model {reference!r}; models: {models}")
    rows = _complete(labels, models)
    q = _wide(rows, "quality", models)
    c = _wide(rows, "cost_usd", models)
    if len(q) == 0:
        raise InputError("labels: no prompt is labelled for every model")
    order = np.argsort(c.mean(axis=0), kind="stable")  # cheapest first on these prompts
    q, c, models = q[:, order], c[:, order], [models[i] for i in order]
    if threshold is None and np.all((q == 0) | (q == 1)):
        threshold = 1.0
    ref = q[:, [models.index(reference)]]
    ok = q >= (threshold - EPS if threshold is not None else ref - EPS)
    adequate = np.where(ok.any(axis=1), ok.argmax(axis=1), 0)
    best = (q >= q.max(axis=1, keepdims=True) - EPS).argmax(axis=1)
    idx = np.arange(len(q))
    return MultiTier(
        prompts=len(q),
        reference=reference,
        rows=tuple(
            TierRow(m, float(q[:, j].mean()), float(c[:, j].mean()), float((adequate == j).mean()))
            for j, m in enumerate(models)
        ),
        oracle_quality=float(q[idx, best].mean()),
        oracle_cost=float(c[idx, best].mean()),
        adequate_quality=float(q[idx, adequate].mean()),
        adequate_cost=float(c[idx, adequate].mean()),
    )


def _complete(labels: pl.DataFrame, models: list[str]) -> pl.DataFrame:
    """The labelled rows of the prompts that have a label for every model."""
    rows = labels.drop_nulls(["quality", "cost_usd"])
    full = pl.col("model").n_unique().over("prompt_id") == len(models)
    return rows.filter(full).sort("prompt_id")


def _wide(rows: pl.DataFrame, value: str, models: list[str]) -> Floats:
    """prompt × model matrix of ``value`` (``rows`` from :func:`_complete`)."""
    wide = rows.pivot(on="model", index="prompt_id", values=value, sort_columns=False)
    return wide.select(models).cast(pl.Float64).to_numpy()
