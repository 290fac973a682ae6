"""Offline evaluation: the metrics on hand-made examples, against an independent
re-computation, and the known facts of the shared labels (skipped when they are absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from routing.errors import InputError
from routing.evaluation.baselines import length_scores, oracle_scores, random_scores
from routing.evaluation.curve import frontier, selection
from routing.evaluation.decision import decide
from routing.evaluation.labels import Pair, needs_strong
from routing.evaluation.metrics import aiq, apgr, cpt, saving_at
from routing.evaluation.multitier import multi_tier
from routing.evaluation.scorecard import BASELINES, evaluate
from tests import data

LABELS = data.LABELS
WEAK, STRONG = "mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview"


def long_labels(
    models: dict[str, tuple[list[float], list[float]]], tokens: list[int]
) -> pl.DataFrame:
    """A labels frame in the shared long format: model → (qualities, costs) per prompt."""
    return pl.DataFrame(
        [
            {
                "prompt_id": f"p{i}",
                "prompt": f"prompt {i}",
                "model": model,
                "quality": q,
                "cost_usd": c,
                "input_tokens": tokens[i],
            }
            for model, (qs, cs) in models.items()
            for i, (q, c) in enumerate(zip(qs, cs, strict=True))
        ]
    )


def make_pair(
    q_weak: list[float],
    q_strong: list[float],
    c_weak: list[float] | None = None,
    c_strong: list[float] | None = None,
    tokens: list[int] | None = None,
) -> Pair:
    n = len(q_weak)
    frame = long_labels(
        {
            "weak": (q_weak, c_weak or [1.0] * n),
            "strong": (q_strong, c_strong or [10.0] * n),
        },
        tokens or list(range(n)),
    )
    return Pair.from_labels(frame, "weak", "strong")


def synthetic(n: int = 2000, seed: int = 7, loss: float = 0.05) -> Pair:
    """0/1 labels: the weak model right 60 %, the strong one right where the weak is or
    half the time otherwise, except on a random ``loss`` share where it fails."""
    rng = np.random.default_rng(seed)
    q_w = (rng.random(n) < 0.6).astype(float)
    q_s = np.maximum(q_w, rng.random(n) < 0.5) * (rng.random(n) >= loss)
    return make_pair(
        q_w.tolist(),
        q_s.tolist(),
        rng.uniform(0.5, 1.5, n).tolist(),
        rng.uniform(5, 15, n).tolist(),
        rng.integers(10, 500, n).tolist(),
    )


# --- a tiny example computed by hand -----------------------------------------------------
# q_weak 1 0 0 0 (mean .25), q_strong 1 1 1 0 (mean .75), cost 1 vs 10 each.
# Scores .2 .9 .4 .6 route p1, p3, p2, p0: qualities .25 .5 .5 .75 .75, PGR 0 .5 .5 1 1.
HAND = make_pair([1, 0, 0, 0], [1, 1, 1, 0])
HAND_SCORES = np.array([0.2, 0.9, 0.4, 0.6])


def test_hand_example_frontier() -> None:
    c = frontier(HAND, HAND_SCORES)
    assert c.share.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert c.quality == pytest.approx([0.25, 0.5, 0.5, 0.75, 0.75])
    assert c.cost == pytest.approx([1, 3.25, 5.5, 7.75, 10])


def test_hand_example_metrics() -> None:
    c = frontier(HAND, HAND_SCORES)
    # trapezoids of width .25 over PGR 0 .5 .5 1 1: (.25 + .5 + .75 + 1) / 4
    assert apgr(HAND, c) == pytest.approx(0.625)
    assert cpt(HAND, c, 0.5) == pytest.approx(0.25)
    assert cpt(HAND, c, 0.8) == pytest.approx(0.5 + 0.3 / 0.5 * 0.25)
    # hull (1,.25) (3.25,.5) (7.75,.75) (10,.75) over cost 1..10
    area = (0.25 + 0.5) / 2 * 2.25 + (0.5 + 0.75) / 2 * 4.5 + 0.75 * 2.25
    assert aiq(HAND, c) == pytest.approx(area / 9)
    # 95% of .75 = .7125, reached between cost 5.5 (q .5) and 7.75 (q .75)
    assert saving_at(HAND, c) == pytest.approx(1 - (5.5 + 0.2125 / 0.25 * 2.25) / 10)


def test_hand_example_decision_and_confusion() -> None:
    oracle = frontier(HAND, oracle_scores(HAND))
    d = decide(HAND, selection(HAND_SCORES, 0.5), oracle, None)  # p1 and p3 go strong
    assert d.quality == pytest.approx(0.5)
    assert d.cost == pytest.approx(5.5)
    c = d.confusion
    # needs strong: p1, p2; chosen strong: p1, p3
    assert (c.weak_to_weak, c.weak_to_strong, c.strong_to_weak, c.strong_to_strong) == (
        1,
        1,
        1,
        1,
    )
    assert c.no_adequate == 1  # p3: both fail
    # the oracle reaches .75 at cost 1 + 2 * 9 / 4 = 5.5: the regret is the missing .25
    assert d.regret == pytest.approx(0.25)


def independent_apgr(pair: Pair, scores: np.ndarray) -> tuple[float, list[float]]:
    """APGR by thresholds, as RouteLLM routes: strong iff score >= t, t over the scores."""
    shares, quality = [0.0], [pair.q_weak.mean()]
    for t in np.unique(scores)[::-1]:
        strong = scores >= t
        shares.append(strong.mean())
        quality.append(np.where(strong, pair.q_strong, pair.q_weak).mean())
    q_w, q_s = pair.q_weak.mean(), pair.q_strong.mean()
    pgr = [(q - q_w) / (q_s - q_w) for q in quality]
    area = sum((shares[i] - shares[i - 1]) * (pgr[i] + pgr[i - 1]) / 2 for i in range(1, len(pgr)))
    return area, pgr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_apgr_matches_an_independent_computation(seed: int) -> None:
    pair = synthetic(300, seed)
    scores = np.round(random_scores(pair.n, seed), 2)  # with ties
    expected, _ = independent_apgr(pair, scores)
    assert apgr(pair, frontier(pair, scores)) == pytest.approx(expected)


# --- baselines and properties ------------------------------------------------------------


def test_constant_score_is_the_random_router() -> None:
    pair = synthetic()
    c = frontier(pair, np.zeros(pair.n))
    assert c.share.tolist() == [0, 1]
    assert apgr(pair, c) == pytest.approx(0.5)
    assert cpt(pair, c, 0.5) == pytest.approx(0.5)
    assert cpt(pair, c, 0.8) == pytest.approx(0.8)
    assert aiq(pair, c) == pytest.approx((pair.q_weak.mean() + pair.q_strong.mean()) / 2)


def test_random_scores_average_to_half() -> None:
    pair = synthetic()
    values = [apgr(pair, frontier(pair, random_scores(pair.n, s))) for s in range(100)]
    assert np.mean([v for v in values if v is not None]) == pytest.approx(0.5, abs=0.015)


@pytest.mark.parametrize("loss", [0.0, 0.05])
def test_perfect_router_recovers_the_gap_as_fast_as_the_oracle(loss: float) -> None:
    pair = synthetic(loss=loss)
    need = needs_strong(pair)
    perfect = need + 0.001 * random_scores(pair.n, 3)  # the right prompts first, any order
    ev = evaluate(pair, perfect)
    router, oracle = ev.router, ev.baseline("oracle")
    # each prompt that needs the strong model adds 1/n to the quality: PGR = share / gap
    assert router.cpt50 == pytest.approx(0.5 * pair.gap)
    assert (router.cpt50, router.cpt80) == pytest.approx((oracle.cpt50, oracle.cpt80))
    assert router.apgr is not None and oracle.apgr is not None
    if loss == 0:  # after the gap is closed nothing changes: the same area as the oracle
        assert router.apgr == pytest.approx(oracle.apgr)
        assert router.apgr == pytest.approx(1 - pair.gap / 2)  # gap = share needing strong
    else:  # the oracle also defers the prompts where the strong model is worse
        assert 0.95 < router.apgr < oracle.apgr
    d = router.decision
    assert d.quality == pytest.approx(np.maximum(pair.q_weak, pair.q_strong).mean())
    assert d.confusion.weak_to_strong == d.confusion.strong_to_weak == 0
    assert d.regret == pytest.approx(0)
    assert router.auc == 1.0


def test_always_weak_and_always_strong_are_the_ends_of_every_curve() -> None:
    pair = synthetic()
    ev = evaluate(pair, length_scores(pair))
    assert tuple(b.name for b in ev.baselines) == BASELINES
    weak, strong = ev.baseline("always-weak"), ev.baseline("always-strong")
    assert weak.curve is None and weak.apgr is None
    assert (weak.decision.strong_share, strong.decision.strong_share) == (0, 1)
    assert weak.decision.quality == pytest.approx(pair.q_weak.mean())
    assert strong.decision.quality == pytest.approx(pair.q_strong.mean())
    assert weak.decision.cost == pytest.approx(pair.c_weak.mean())
    assert strong.decision.cost_ratio == pytest.approx(1)
    assert weak.decision.regret == pytest.approx(0)  # nothing beats all-weak at its cost
    for r in (ev.router, *ev.baselines):
        if r.curve is not None:
            assert r.curve.at(0) == pytest.approx((weak.decision.quality, weak.decision.cost))
            assert r.curve.at(1) == pytest.approx((strong.decision.quality, strong.decision.cost))


@pytest.mark.parametrize("scores", ["length", "random", "reversed-oracle"])
def test_cpt_is_monotonic_in_the_target(scores: str) -> None:
    pair = synthetic()
    s = {
        "length": length_scores(pair),
        "random": random_scores(pair.n, 5),
        "reversed-oracle": -oracle_scores(pair),
    }[scores]
    c = frontier(pair, s)
    values = [cpt(pair, c, t) for t in np.linspace(0, 1, 21)]
    reached = [v for v in values if v is not None]
    assert reached == sorted(reached)
    assert values[0] == 0
    # once a target is out of reach, every higher one is too
    assert values[len(reached) :] == [None] * (len(values) - len(reached))


def test_a_worse_router_scores_lower() -> None:
    pair = synthetic()
    good, bad = oracle_scores(pair), -oracle_scores(pair)
    good_apgr, bad_apgr = apgr(pair, frontier(pair, good)), apgr(pair, frontier(pair, bad))
    assert good_apgr is not None and bad_apgr is not None
    assert good_apgr > 0.9 and bad_apgr < 0.1
    # RouterBench's hull lifts a below-random curve to the random line, never below it
    assert aiq(pair, frontier(pair, bad)) == pytest.approx(
        aiq(pair, frontier(pair, np.zeros(pair.n)))
    )


def test_selection_breaks_ties_in_expectation() -> None:
    p = selection(np.array([3.0, 1, 1, 1, 1, 0]), 0.5)  # 3 of 6: the top one + 2 of the 4 ties
    assert p.tolist() == [1, 0.5, 0.5, 0.5, 0.5, 0]
    assert selection(np.zeros(4), 0.25).tolist() == [0.25] * 4


def test_graded_labels_adequate_means_as_good_as_strong() -> None:
    pair = make_pair([0.9, 0.5, 0.7, 0.2], [0.8, 0.9, 0.7, 0.1])
    assert not pair.binary
    assert needs_strong(pair).tolist() == [False, True, False, False]
    assert needs_strong(pair, threshold=0.6).tolist() == [False, True, False, False]
    assert needs_strong(pair, threshold=0.15).tolist() == [False] * 4  # the weak is enough


def test_binary_labels_no_adequate_model_counts_as_weak() -> None:
    pair = make_pair([0, 0, 1], [0, 1, 0])
    assert needs_strong(pair).tolist() == [False, True, False]
    ev = evaluate(pair, np.array([0.0, 1.0, 0.5]))
    assert ev.router.decision.confusion.no_adequate == 1


def test_oracle_decision_is_the_cheapest_adequate_model() -> None:
    pair = synthetic()
    d = evaluate(pair, length_scores(pair)).baseline("oracle").decision
    need = needs_strong(pair)
    assert d.quality == pytest.approx(np.maximum(pair.q_weak, pair.q_strong).mean())
    assert d.cost == pytest.approx(np.where(need, pair.c_strong, pair.c_weak).mean())


def test_to_dict_has_the_headline_metrics() -> None:
    d = evaluate(synthetic(200), length_scores(synthetic(200))).to_dict()
    for key in ("apgr", "cpt50", "cpt80", "aiq", "saving_at_95", "operating_point"):
        assert key in d
    assert set(d["baselines"]) == set(BASELINES)
    assert d["frontier"][0]["strong_share"] == 0


# --- input errors ------------------------------------------------------------------------


def test_labels_errors_are_input_errors() -> None:
    frame = long_labels({"a": ([1.0], [1.0]), "b": ([0.0], [2.0])}, [5])
    with pytest.raises(InputError, match="missing column"):
        Pair.from_labels(frame.drop("cost_usd"), "a", "b")
    with pytest.raises(InputError, match=r"no strong model 'c'.*\['a', 'b'\]"):
        Pair.from_labels(frame, "a", "c")
    with pytest.raises(InputError, match="more than one row"):
        Pair.from_labels(pl.concat([frame, frame]), "a", "b")
    apart = frame.with_columns(prompt_id=pl.col("prompt_id") + pl.col("model"))
    with pytest.raises(InputError, match="no prompt is labelled for both"):
        Pair.from_labels(apart, "a", "b")
    with pytest.raises(ValueError, match="one score per prompt"):
        frontier(Pair.from_labels(frame, "a", "b"), np.zeros(3))


def test_multi_tier_orders_by_cost_and_picks_the_cheapest_adequate() -> None:
    frame = long_labels(
        {
            "big": ([1, 1, 1, 0], [9, 9, 9, 9]),
            "small": ([1, 0, 0, 0], [1, 1, 1, 1]),
            "mid": ([1, 1, 0, 1], [3, 3, 3, 3]),
        },
        [1, 2, 3, 4],
    )
    mt = multi_tier(frame)
    assert [r.model for r in mt.rows] == ["small", "mid", "big"]
    assert [r.cheapest_adequate_share for r in mt.rows] == [0.25, 0.5, 0.25]
    assert mt.oracle_quality == 1.0
    assert mt.adequate_cost == pytest.approx((1 + 3 + 9 + 3) / 4)


# --- the known facts of the shared labels ------------------------------------------------


@pytest.fixture(scope="module")
def labels_dir() -> Path:
    return data.require(LABELS)


@pytest.fixture(scope="module")
def mmlu(labels_dir: Path) -> Pair:
    return Pair.from_labels(pl.read_parquet(labels_dir / "mmlu.parquet"), WEAK, STRONG)


@pytest.fixture(scope="module")
def gsm8k(labels_dir: Path) -> Pair:
    return Pair.from_labels(pl.read_parquet(labels_dir / "gsm8k.parquet"), WEAK, STRONG)


def test_mmlu_known_facts(mmlu: Pair) -> None:
    ev = evaluate(mmlu, length_scores(mmlu))
    assert mmlu.n == 14_042
    assert round(ev.baseline("always-weak").decision.quality, 3) == 0.681
    assert round(ev.baseline("always-strong").decision.quality, 3) == 0.806
    assert round(ev.baseline("oracle").decision.quality, 3) == 0.859
    assert round(ev.baseline("length-only").auc or 0, 2) == 0.58


def test_gsm8k_known_facts(gsm8k: Pair) -> None:
    ev = evaluate(gsm8k, length_scores(gsm8k))
    assert gsm8k.n == 1_319
    assert round(ev.baseline("always-weak").decision.quality, 3) == 0.638
    assert round(ev.baseline("always-strong").decision.quality, 3) == 0.857
    oracle = ev.baseline("oracle").decision
    assert round(oracle.quality, 3) == 0.929
    assert round(oracle.cost_ratio, 3) == 0.347
    assert round(ev.baseline("length-only").auc or 0, 2) == 0.59


@pytest.mark.parametrize("name", ["mmlu", "gsm8k"])
def test_real_apgr_matches_an_independent_computation(name: str, labels_dir: Path) -> None:
    pair = Pair.from_labels(pl.read_parquet(labels_dir / f"{name}.parquet"), WEAK, STRONG)
    scores = length_scores(pair)  # many ties: equal token counts
    expected, pgr = independent_apgr(pair, scores)
    c = frontier(pair, scores)
    assert apgr(pair, c) == pytest.approx(expected)
    assert 0.55 < expected < 0.62  # length alone: barely better than random
    # CPT(50%) is where the threshold sweep first reaches half the gap
    first = next(i for i, v in enumerate(pgr) if v >= 0.5)
    assert c.share[first - 1] <= (cpt(pair, c, 0.5) or 2) <= c.share[first]


def test_arena_multi_tier_known_facts(labels_dir: Path) -> None:
    mt = multi_tier(pl.read_parquet(labels_dir / "arena_bench_v1.parquet"))
    assert mt.prompts == 286
    quality = {r.model: round(r.quality, 3) for r in mt.rows}
    assert quality["gpt-4-turbo"] == 0.886
    assert quality["gpt-4-0314"] == 0.855
    assert quality["Mixtral-8x7B-Instruct-v0.1"] == 0.656
    assert quality["Mistral-7B-Instruct-v0.1"] == 0.354
    assert mt.rows[0].model == "Mistral-7B-Instruct-v0.1"  # cheapest first
    assert mt.oracle_quality >= max(r.quality for r in mt.rows)
    assert sum(r.cheapest_adequate_share for r in mt.rows) == pytest.approx(1)
