"""The labels of a weak/strong pair: the labels frame checked, pivoted to one row per prompt,
and which model is the cheapest adequate one (:mod:`routing.evaluation`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from routing.errors import InputError

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

LABEL_COLUMNS = ("prompt_id", "prompt", "model", "quality", "cost_usd", "input_tokens")
EPS = 1e-12


def check_labels(labels: pl.DataFrame) -> None:
    """Raise :class:`InputError` unless ``labels`` has the label columns, one row per pair."""
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise InputError(f"labels: missing column(s) {missing}; need {list(LABEL_COLUMNS)}")
    if labels.select(pl.struct("prompt_id", "model").is_duplicated().any()).item():
        raise InputError("labels: more than one row for the same (prompt_id, model)")


def models_by_cost(labels: pl.DataFrame) -> list[str]:
    """The models of a labels frame, cheapest mean cost per prompt first."""
    means = labels.group_by("model").agg(pl.col("cost_usd").mean()).sort("cost_usd", "model")
    return [str(m) for m in means.get_column("model")]


def pivot_pair(labels: pl.DataFrame, weak: str, strong: str) -> pl.DataFrame:
    """Per-prompt ``quality_weak, quality_strong, cost_weak, cost_strong`` (and ``prompt_id,
    prompt, input_tokens``) for the prompts labelled for both models, in file order."""
    check_labels(labels)
    known = set(labels.get_column("model").unique().to_list())
    for role, name in (("weak", weak), ("strong", strong)):
        if name not in known:
            raise InputError(f"labels: no {role} model {name!r}; models: {sorted(known)}")
    if weak == strong:
        raise InputError(f"weak and strong are the same model {weak!r}")

    rows = labels.drop_nulls(["quality", "cost_usd"])

    def side(name: str, suffix: str) -> pl.DataFrame:
        return rows.filter(pl.col("model") == name).select(
            "prompt_id",
            "prompt",
            "input_tokens",
            pl.col("quality").cast(pl.Float64).alias(f"quality_{suffix}"),
            pl.col("cost_usd").cast(pl.Float64).alias(f"cost_{suffix}"),
        )

    pair = (
        side(weak, "weak")
        .with_row_index("__row")
        .join(side(strong, "strong").drop("prompt", "input_tokens"), on="prompt_id")
        .sort("__row")
        .drop("__row")
    )
    if pair.height == 0:
        raise InputError(f"labels: no prompt is labelled for both {weak!r} and {strong!r}")
    return pair


@dataclass(frozen=True)
class Pair:
    """The labels of one weak/strong pair as arrays (one entry per prompt)."""

    weak: str
    strong: str
    prompt_ids: pl.Series
    prompts: pl.Series
    input_tokens: Floats
    q_weak: Floats
    q_strong: Floats
    c_weak: Floats
    c_strong: Floats

    @classmethod
    def from_labels(cls, labels: pl.DataFrame, weak: str, strong: str) -> Pair:
        f = pivot_pair(labels, weak, strong)

        def col(name: str) -> Floats:
            return f.get_column(name).cast(pl.Float64).to_numpy()

        return cls(
            weak,
            strong,
            f.get_column("prompt_id"),
            f.get_column("prompt"),
            col("input_tokens"),
            col("quality_weak"),
            col("quality_strong"),
            col("cost_weak"),
            col("cost_strong"),
        )

    @property
    def n(self) -> int:
        return len(self.q_weak)

    @property
    def binary(self) -> bool:
        """True when every quality is 0 or 1 (correctness labels)."""
        q = np.concatenate([self.q_weak, self.q_strong])
        return bool(np.all((q == 0) | (q == 1)))

    @property
    def gap(self) -> float:
        """Mean quality of all-strong minus all-weak: the gap a router recovers."""
        return float(self.q_strong.mean() - self.q_weak.mean())


def needs_strong(pair: Pair, threshold: float | None = None) -> Bools:
    """True where the strong model is the *cheapest adequate* one.

    Adequate means ``quality >= threshold``; by default the threshold is 1 for 0/1 labels and,
    for graded labels, the strong model's own quality on that prompt (the weak answer is
    adequate when it is at least as good). When neither model is adequate the cheapest is
    (paying more buys nothing), so such a prompt counts as "weak".
    """
    weak_ok, strong_ok = adequacy(pair, threshold)
    return ~weak_ok & strong_ok


def adequacy(pair: Pair, threshold: float | None) -> tuple[Bools, Bools]:
    if threshold is None and pair.binary:
        threshold = 1.0
    if threshold is None:
        return pair.q_weak >= pair.q_strong - EPS, np.ones(pair.n, dtype=np.bool_)
    return pair.q_weak >= threshold - EPS, pair.q_strong >= threshold - EPS
