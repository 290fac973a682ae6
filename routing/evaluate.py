"""Offline evaluation of a router on labelled prompts (pure: frames and arrays in, numbers out).

A labels frame is long: one row per (prompt, model) with ``prompt_id, prompt, model, quality,
cost_usd, input_tokens`` (the format of ``../shared/data/labels/*.parquet``). A router is a
score per prompt, higher meaning "needs the strong model". Sweeping a threshold over the
scores routes 0 % … 100 % of prompts to the strong model and traces the **frontier**; the
metrics summarise it (each is defined on its function and in ``docs/evaluation.md``):

- :func:`apgr` — average performance gap recovered (RouteLLM),
- :func:`cpt` — call-performance threshold, CPT(50 %) and CPT(80 %) (RouteLLM),
- :func:`aiq` — average improvement in quality over the cost range (RouterBench),
- :func:`saving_at` — cost saving at 95 % of the strong model's quality,
- :func:`decide` — one operating point: quality, cost, confusion matrix, regret.

Ties in the scores are broken at random *in expectation*: inside a group of equal scores the
frontier is the straight line between the group's ends. So a constant score is exactly the
random router (APGR 0.5), and every number is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from sklearn.metrics import roc_auc_score

from routing.errors import InputError

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

LABEL_COLUMNS = ("prompt_id", "prompt", "model", "quality", "cost_usd", "input_tokens")
BASELINES = ("random", "always-weak", "always-strong", "length-only", "oracle")
FRONTIER_SHARES = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
_EPS = 1e-12


# --- labels ------------------------------------------------------------------------------


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
    weak_ok, strong_ok = _adequacy(pair, threshold)
    return ~weak_ok & strong_ok


def _adequacy(pair: Pair, threshold: float | None) -> tuple[Bools, Bools]:
    if threshold is None and pair.binary:
        threshold = 1.0
    if threshold is None:
        return pair.q_weak >= pair.q_strong - _EPS, np.ones(pair.n, dtype=np.bool_)
    return pair.q_weak >= threshold - _EPS, pair.q_strong >= threshold - _EPS


# --- the frontier ------------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """The operating points of a score-ranked router, from all-weak (share 0) to all-strong.

    ``share`` is the fraction of prompts sent to the strong model, ``quality`` the mean
    quality and ``cost`` the mean cost per prompt (USD) at that point.
    """

    share: Floats
    quality: Floats
    cost: Floats

    def at(self, share: float) -> tuple[float, float]:
        """(quality, cost) at a strong share, linear between points (random tie-breaking)."""
        return (
            float(np.interp(share, self.share, self.quality)),
            float(np.interp(share, self.share, self.cost)),
        )


def _check_scores(pair: Pair, scores: npt.ArrayLike) -> Floats:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (pair.n,):
        raise ValueError(f"need one score per prompt ({pair.n}), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite numbers")
    return s


def frontier(pair: Pair, scores: npt.ArrayLike) -> Curve:
    """Route the highest-scored prompts to the strong model, 0 … n of them.

    One point per group of equal scores (a threshold cannot split a tie); between points the
    curve is linear, which is the expectation of breaking the tie at random.
    """
    s = _check_scores(pair, scores)
    order = np.argsort(-s, kind="stable")
    ends = np.flatnonzero(np.append(s[order][1:] != s[order][:-1], True)) + 1
    k = np.concatenate([[0], ends]) if pair.n else np.zeros(1, dtype=np.int64)
    gain = np.concatenate([[0.0], np.cumsum((pair.q_strong - pair.q_weak)[order])])[k]
    extra = np.concatenate([[0.0], np.cumsum((pair.c_strong - pair.c_weak)[order])])[k]
    n = max(pair.n, 1)
    return Curve(k / n, pair.q_weak.mean() + gain / n, pair.c_weak.mean() + extra / n)


def selection(scores: npt.ArrayLike, share: float) -> Floats:
    """P(routed to strong) per prompt when the top ``share`` of prompts by score go strong.

    1 above the cut, 0 below, and, for the group of equal scores the cut falls in, the
    fraction of that group still needed (random tie-breaking in expectation).
    """
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    starts_mask = np.append(True, ss[1:] != ss[:-1]) if n else np.zeros(0, dtype=np.bool_)
    group = np.cumsum(starts_mask) - 1
    starts = np.flatnonzero(starts_mask)
    ends = np.append(starts[1:], n)
    lo, hi = starts[group], ends[group]
    p = np.empty(n)
    p[order] = np.clip((share * n - lo) / (hi - lo), 0.0, 1.0)
    return p


# --- metrics -----------------------------------------------------------------------------


def pgr(pair: Pair, quality: npt.ArrayLike) -> Floats:
    """Performance gap recovered: ``(q - q_weak) / (q_strong - q_weak)`` (mean qualities);
    0 at all-weak, 1 at all-strong, above 1 when routing beats the strong model."""
    gap = pair.gap
    q = np.asarray(quality, dtype=np.float64)
    return (q - pair.q_weak.mean()) / gap if abs(gap) > _EPS else np.full(q.shape, np.nan)


def apgr(pair: Pair, curve: Curve) -> float | None:
    """Average performance gap recovered (RouteLLM): the area under PGR versus the share of
    calls to the strong model, over shares 0 … 1 (trapezoids over every operating point;
    RouteLLM samples 10 bins). 0.5 is the random router; None when the gap is 0."""
    values = pgr(pair, curve.quality)
    return None if np.isnan(values).any() else _area(curve.share, values)


def _area(x: Floats, y: Floats) -> float:
    """Trapezoidal area under y(x) (``np.trapezoid``, which numpy < 2 lacks)."""
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def cpt(pair: Pair, curve: Curve, target: float) -> float | None:
    """Call-performance threshold CPT(target) (RouteLLM): the smallest share of calls to the
    strong model at which PGR reaches ``target`` (0.5 for CPT(50 %)), interpolated between
    operating points; None if never reached."""
    values = pgr(pair, curve.quality)
    hits = np.flatnonzero(values >= target - _EPS)
    if len(hits) == 0:
        return None
    i = int(hits[0])
    return float(curve.share[0]) if i == 0 else _cross(curve.share, values, i, target)


def _cross(x: Floats, y: Floats, i: int, target: float) -> float:
    """x where the segment (i-1, i) reaches y = target (y[i-1] < target <= y[i])."""
    t = (target - y[i - 1]) / (y[i] - y[i - 1])
    return float(x[i - 1] + t * (x[i] - x[i - 1]))


def aiq(pair: Pair, curve: Curve) -> float | None:
    """Average improvement in quality (RouterBench): the area under the router's quality-
    versus-cost curve divided by the cost range, from all-weak cost to all-strong cost.

    As in RouterBench the curve is first replaced by its non-decreasing concave hull (any
    two operating points can be mixed at random, and spending more is never forced), so
    AIQ is in quality units: the random router scores the mean of the two models'
    qualities. None when both models cost the same.
    """
    lo, hi = float(pair.c_weak.mean()), float(pair.c_strong.mean())
    if hi - lo <= _EPS:
        return None
    x, y = _upper_hull(curve.cost, curve.quality)
    y = np.maximum.accumulate(y)
    grid = np.unique(np.clip(np.concatenate([x, [lo, hi]]), lo, hi))
    return _area(grid, np.interp(grid, x, y)) / (hi - lo)


def _upper_hull(x: Floats, y: Floats) -> tuple[Floats, Floats]:
    """The upper concave hull of points (monotone chain), by increasing x."""
    hull: list[tuple[float, float]] = []
    for px, py in sorted(zip(x.tolist(), y.tolist(), strict=True)):
        if hull and hull[-1][0] == px:  # same cost: keep the better quality (sorted last)
            hull.pop()
        while len(hull) >= 2:
            (ax, ay), (bx, by) = hull[-2], hull[-1]
            if (bx - ax) * (py - ay) - (by - ay) * (px - ax) >= 0:  # b is not above a→p
                hull.pop()
            else:
                break
        hull.append((px, py))
    return np.array([p[0] for p in hull]), np.array([p[1] for p in hull])


def saving_at(pair: Pair, curve: Curve, fraction: float = 0.95) -> float | None:
    """Cost saving at ``fraction`` of the strong model's quality: ``1 - cost / all-strong
    cost`` at the cheapest operating point (along the curve, interpolated) whose quality
    reaches ``fraction × q_strong``; None if the curve never reaches it."""
    target = fraction * float(pair.q_strong.mean())
    hits = np.flatnonzero(curve.quality >= target - _EPS)
    all_strong = float(pair.c_strong.mean())
    if len(hits) == 0 or all_strong <= 0:
        return None
    i = int(hits[0])
    cost = float(curve.cost[0]) if i == 0 else _cross(curve.cost, curve.quality, i, target)
    return 1.0 - cost / all_strong


def needs_strong_auc(pair: Pair, scores: npt.ArrayLike, threshold: float | None = None) -> float:
    """ROC AUC of the scores for "the strong model is the cheapest adequate one" (for 0/1
    labels: the weak model fails and the strong one succeeds); NaN if one class is empty."""
    y = needs_strong(pair, threshold)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, _check_scores(pair, scores)))


# --- one operating point -----------------------------------------------------------------


@dataclass(frozen=True)
class Confusion:
    """Routing confusion matrix: rows the cheapest adequate model, columns the one chosen.

    Counts are expected values (fractional inside a tie group cut by the operating point).
    ``no_adequate`` prompts (neither model adequate) are in the "weak" row.
    """

    weak_to_weak: float
    weak_to_strong: float  # money wasted: the weak model was enough
    strong_to_weak: float  # quality lost: only the strong model was adequate
    strong_to_strong: float
    no_adequate: int


@dataclass(frozen=True)
class Decision:
    """A router at one operating point."""

    strong_share: float
    quality: float
    cost: float  # mean USD per prompt
    cost_ratio: float  # cost / all-strong cost
    pgr: float | None
    regret: float  # oracle's best quality at this cost minus this quality
    confusion: Confusion


def decide(pair: Pair, p_strong: npt.ArrayLike, oracle: Curve, threshold: float | None) -> Decision:
    """Evaluate one routing decision, ``p_strong`` = P(strong) per prompt (0/1, or expected).

    Regret is the quality lost against the oracle *at the same cost*: the best mean quality
    on the oracle's frontier (its running maximum, interpolated) at this decision's mean
    cost, minus this decision's quality; 0 for a perfect router.
    """
    p = np.asarray(p_strong, dtype=np.float64)
    quality = float(np.mean(pair.q_weak + p * (pair.q_strong - pair.q_weak)))
    cost = float(np.mean(pair.c_weak + p * (pair.c_strong - pair.c_weak)))
    weak_ok, strong_ok = _adequacy(pair, threshold)
    need = ~weak_ok & strong_ok
    by_cost = np.argsort(oracle.cost, kind="stable")
    best = float(
        np.interp(cost, oracle.cost[by_cost], np.maximum.accumulate(oracle.quality[by_cost]))
    )
    all_strong = float(pair.c_strong.mean())
    gain = pgr(pair, [quality])[0]
    return Decision(
        strong_share=float(p.mean()) if pair.n else 0.0,
        quality=quality,
        cost=cost,
        cost_ratio=cost / all_strong if all_strong > 0 else float("nan"),
        pgr=None if np.isnan(gain) else float(gain),
        regret=0.0 if abs(best - quality) < 1e-9 else best - quality,
        confusion=Confusion(
            weak_to_weak=float(((1 - p) * ~need).sum()),
            weak_to_strong=float((p * ~need).sum()),
            strong_to_weak=float(((1 - p) * need).sum()),
            strong_to_strong=float((p * need).sum()),
            no_adequate=int((~weak_ok & ~strong_ok).sum()),
        ),
    )


def oracle_scores(pair: Pair, threshold: float | None = None) -> Floats:
    """The hindsight router's scores (distinct, in (0, 1]), best candidates for strong first:
    prompts whose cheapest adequate model is the strong one, then other quality gains (both
    by quality gained per extra dollar), then no change (cheapest first), then losses."""
    gain = pair.q_strong - pair.q_weak
    extra = pair.c_strong - pair.c_weak
    per_dollar = gain / np.maximum(extra, _EPS)
    category = np.select([needs_strong(pair, threshold), gain > _EPS, gain >= -_EPS], [3, 2, 1], 0)
    within = np.where(np.abs(gain) <= _EPS, -extra, per_dollar)
    ranks = np.empty(pair.n)
    ranks[np.lexsort((within, category))] = np.arange(1, pair.n + 1)
    return ranks / max(pair.n, 1)


def length_scores(pair: Pair) -> Floats:
    """The length-only baseline: the prompt's input tokens as its score."""
    return pair.input_tokens.astype(np.float64)


def random_scores(n: int, seed: int) -> Floats:
    """One draw of a random router (the ``random`` baseline uses the exact expectation)."""
    return np.random.default_rng(seed).random(n)


# --- a whole evaluation ------------------------------------------------------------------


@dataclass(frozen=True)
class RouterResult:
    """A router's (or baseline's) metrics; curve metrics are None for fixed policies."""

    name: str
    decision: Decision
    curve: Curve | None = None
    apgr: float | None = None
    cpt50: float | None = None
    cpt80: float | None = None
    aiq: float | None = None
    saving_at_95: float | None = None
    auc: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.decision
        return {
            "apgr": self.apgr,
            "cpt50": self.cpt50,
            "cpt80": self.cpt80,
            "aiq": self.aiq,
            "saving_at_95": self.saving_at_95,
            "auc": self.auc,
            "operating_point": {
                "strong_share": d.strong_share,
                "quality": d.quality,
                "cost_per_prompt_usd": d.cost,
                "cost_ratio": _num(d.cost_ratio),
                "pgr": d.pgr,
                "regret": d.regret,
                "confusion": d.confusion.__dict__,
            },
        }


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def score_router(
    pair: Pair,
    name: str,
    scores: npt.ArrayLike,
    share: float,
    oracle: Curve,
    threshold: float | None = None,
) -> RouterResult:
    """Every metric of a score-ranked router, with its decision at strong share ``share``."""
    s = _check_scores(pair, scores)
    curve = frontier(pair, s)
    return RouterResult(
        name=name,
        decision=decide(pair, selection(s, share), oracle, threshold),
        curve=curve,
        apgr=apgr(pair, curve),
        cpt50=cpt(pair, curve, 0.5),
        cpt80=cpt(pair, curve, 0.8),
        aiq=aiq(pair, curve),
        saving_at_95=saving_at(pair, curve, 0.95),
        auc=_num(needs_strong_auc(pair, s, threshold)),
    )


@dataclass(frozen=True)
class Evaluation:
    """A router and the baselines on one weak/strong pair, at one operating point."""

    pair: Pair
    share: float
    threshold: float | None
    router: RouterResult
    baselines: tuple[RouterResult, ...] = field(default_factory=tuple)

    def baseline(self, name: str) -> RouterResult:
        return next(b for b in self.baselines if b.name == name)

    def _point(self, result: RouterResult, share: float) -> dict[str, float]:
        assert result.curve is not None
        quality, cost = result.curve.at(share)
        return {"quality": quality, "cost_ratio": cost / float(self.pair.c_strong.mean())}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the router's metrics at the top level, baselines by name, frontier."""
        p = self.pair
        rows = (self.router, *self.baselines)
        return {
            "router": self.router.name,
            **self.router.to_dict(),
            "prompts": p.n,
            "weak": {"model": p.weak, "quality": p.q_weak.mean(), "cost_usd": p.c_weak.mean()},
            "strong": {
                "model": p.strong,
                "quality": p.q_strong.mean(),
                "cost_usd": p.c_strong.mean(),
            },
            "operating_share": self.share,
            "adequacy_threshold": self.threshold,
            "baselines": {b.name: b.to_dict() for b in self.baselines},
            "frontier": [
                {"strong_share": x, **{r.name: self._point(r, x) for r in rows if r.curve}}
                for x in FRONTIER_SHARES
            ],
        }


def evaluate(
    pair: Pair,
    scores: npt.ArrayLike,
    name: str = "router",
    share: float | None = None,
    threshold: float | None = None,
) -> Evaluation:
    """Evaluate ``scores`` and the baselines with the same code.

    ``share`` is the operating point for the decision metrics (confusion matrix, regret):
    the fraction of prompts routed strong, by default the oracle's (the share whose
    cheapest adequate model is the strong one). Baselines: ``random`` (the expected value,
    i.e. a constant score: the straight line from all-weak to all-strong), ``always-weak``
    and ``always-strong`` (fixed policies: points, no curve metrics), ``length-only``
    (score = input tokens) and ``oracle`` (:func:`oracle_scores`; its decision is the
    cheapest adequate model per prompt).
    """
    need = needs_strong(pair, threshold)
    share = float(need.mean()) if share is None else share
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"operating share must be in [0, 1], got {share}")
    oracle_s = oracle_scores(pair, threshold)
    oracle_curve = frontier(pair, oracle_s)

    def ranked(label: str, s: npt.ArrayLike) -> RouterResult:
        return score_router(pair, label, s, share, oracle_curve, threshold)

    def fixed(label: str, p: float) -> RouterResult:
        return RouterResult(label, decide(pair, np.full(pair.n, p), oracle_curve, threshold))

    oracle = replace(
        ranked("oracle", oracle_s), decision=decide(pair, need, oracle_curve, threshold)
    )
    baselines = (
        ranked("random", np.zeros(pair.n)),
        fixed("always-weak", 0.0),
        fixed("always-strong", 1.0),
        ranked("length-only", length_scores(pair)),
        oracle,
    )
    return Evaluation(pair, share, threshold, ranked(name, scores), baselines)


# --- more than two models ----------------------------------------------------------------


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
    ok = q >= (threshold - _EPS if threshold is not None else ref - _EPS)
    adequate = np.where(ok.any(axis=1), ok.argmax(axis=1), 0)
    best = (q >= q.max(axis=1, keepdims=True) - _EPS).argmax(axis=1)
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
