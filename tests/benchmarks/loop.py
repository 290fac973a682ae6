"""The learning loop of issue 16 on recorded data:
``python -m tests.benchmarks.loop [--seeds 3] [--nights 5] [--rate 0.1] [--no-pooled]``.

A router trained on MMLU + GSM8K only (pair ``mixtral-8x7b-instruct-v0.1`` →
``gpt-4-1106-preview``) meets arena_bench_v1 traffic (``Mixtral-8x7B-Instruct-v0.1`` →
``gpt-4-0314``) for ``--nights`` nights with ``explore: {rate: --rate}`` and retrains every
night. Everything is the production code: ``routing.learned.validation.fit_sets`` /
``_score`` / ``metrics`` / ``cross_validate`` and ``routing.explore.sampled``.

Protocol, per night salt ``s`` (``--seeds``: ``s = 0 … N - 1``):

- arena: the arena prompts the weak model has an answer for (``with_answers``), used by
  both variants so that their held-out set is the same (``arena_without_answers`` says how
  many were dropped); every night the same prompts arrive again (one distribution);
- night k (1 … nights) samples ``sampled(f"night-{k}-s{s}", prompt, rate)``, exactly as
  production does; the sampled prompts not explored on an earlier night become labelled
  (recorded arena quality of both models stands in for the judge; a prompt is labelled once);
- held out, fixed up front: the arena prompts no night samples — every night is measured on
  the same prompts, none of which was ever trained on;
- night 0 champion: ``fit_sets([mmlu, gsm8k], [1, 1])``; after night k:
  ``fit_sets([mmlu, gsm8k, explored so far], [1, 1, DEFAULT_FEEDBACK_WEIGHT])``;
- after every night (night 0 included): APGR and AUC (``validation.metrics``) of the
  champion on the held-out prompts, and the length-only APGR there.

``verifier`` is the same loop with ``answers=True`` (it reads the weak model's answer): its
night-0 champion is trained on GSM8K alone with its answers (MMLU has none), its feedback is
the explored arena prompts with their recorded Mixtral answers.

``reference``: arena's in-domain figure, ``cross_validate([arena], [], 1.0, folds, config,
seed=0)`` for both variants (all arena prompts), the same out-of-fold scores restricted to
each salt's held-out set (``*_held_out``: the same prompts as the loop), and arena's figure
in a pooled CV (``mmlu + gsm8k + arena`` for the router, ``gsm8k + arena`` for the verifier;
``--no-pooled`` skips them, ~25 s).

Extra spend (prompt-only router, from the labels' ``cost_usd``): night k is served by the
champion of night k - 1 at its 50 % strong-share operating point (the half of the arena
prompts it scores highest go strong). Every prompt sampled that night — also one sampled on
an earlier night, since production pays it again — pays the partner's call too: the strong
model's cost when it was routed weak, the weak model's when routed strong. Reported as a
percentage of that night's routed cost (all arena prompts once) and of an all-strong night;
``both_calls`` counts both models' calls of every sampled prompt instead. Prints one JSON
line; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from routing.explore import sampled
from routing.learned.config import TrainConfig, levels
from routing.learned.labels import LabelSet, load_labels, load_responses, parse_spec, with_answers
from routing.learned.scorer import LearnedScorer
from routing.learned.validation import (
    DEFAULT_FEEDBACK_WEIGHT,
    _score,
    cross_validate,
    fit_sets,
    metrics,
)
from tests.benchmarks.common import git_rev

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT.parent / "shared" / "data" / "labels"
BASE = ("mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview")
ARENA = ("Mixtral-8x7B-Instruct-v0.1", "gpt-4-0314")
FILES = ("mmlu", "gsm8k", "arena_bench_v1", "responses/gsm8k", "responses/arena_bench_v1")
CONFIGS = {"router": TrainConfig(), "verifier": replace(TrainConfig(), answers=True)}
STRONG_SHARE = 0.5


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _missing() -> list[str]:
    files = [LABELS / f"{name}.parquet" for name in FILES]
    return [str(f) for f in files if not f.is_file()]


def _labels(name: str, models: tuple[str, str]) -> LabelSet:
    return load_labels(parse_spec(f"{LABELS / f'{name}.parquet'}:{','.join(models)}"))


@dataclass(frozen=True)
class Data:
    mmlu: LabelSet
    gsm8k: LabelSet  # with its answers (every gsm8k prompt has one)
    arena: LabelSet  # the arena prompts with a weak answer, with it
    arena_without_answers: int

    def base(self, config: TrainConfig) -> list[LabelSet]:
        """The night-0 training sets: MMLU + GSM8K; GSM8K alone for a verifier."""
        return [self.gsm8k] if config.answers else [self.mmlu, self.gsm8k]


def _load() -> Data:
    responses = load_responses([LABELS / f"{name}.parquet" for name in FILES[3:]])
    arena = _labels("arena_bench_v1", ARENA)
    answered = with_answers(arena, responses)
    return Data(
        mmlu=_labels("mmlu", BASE),
        gsm8k=with_answers(_labels("gsm8k", BASE), responses),
        arena=answered,
        arena_without_answers=arena.n - answered.n,
    )


@dataclass(frozen=True)
class Schedule:
    """One night salt: the indices each night samples and explores, and the held-out set."""

    seed: int
    sampled: list[np.ndarray]  # per night 1…N: every prompt the night samples
    new: list[np.ndarray]  # per night: the sampled prompts not explored before
    held_out: np.ndarray  # no night samples them


def _schedule(arena: LabelSet, seed: int, nights: int, rate: float) -> Schedule:
    picks, new, seen = [], [], np.zeros(arena.n, dtype=bool)
    for k in range(1, nights + 1):
        hit = np.array([sampled(f"night-{k}-s{seed}", p, rate) for p in arena.prompts])
        picks.append(np.flatnonzero(hit))
        new.append(np.flatnonzero(hit & ~seen))
        seen |= hit
    return Schedule(seed, picks, new, np.flatnonzero(~seen))


def _costs(labels: LabelSet) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt (in ``labels`` order): the weak and the strong model's ``cost_usd``."""
    found = {
        (str(p), str(m)): float(c)
        for p, m, c in labels.rows.select("prompt_id", "model", "cost_usd").iter_rows()
    }
    weak, strong = labels.models[0], labels.models[-1]
    return (
        np.array([found[(p, weak)] for p in labels.prompt_ids]),
        np.array([found[(p, strong)] for p in labels.prompt_ids]),
    )


def _spend(
    model: LearnedScorer, data: Data, picks: np.ndarray, costs: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """One night's routed cost and exploration spend (see the module doc)."""
    c_weak, c_strong = costs
    scores, _ = _score(model, data.arena)
    strong = np.zeros(data.arena.n, dtype=bool)
    strong[np.argsort(-scores, kind="stable")[: round(STRONG_SHARE * data.arena.n)]] = True
    partner = np.where(strong, c_weak, c_strong)
    return {
        "routed": float(np.where(strong, c_strong, c_weak).sum()),
        "all_strong": float(c_strong.sum()),
        "extra": float(partner[picks].sum()),
        "both_calls": float((c_weak + c_strong)[picks].sum()),
    }


def _loop(
    data: Data, config: TrainConfig, plan: Schedule, champion: LearnedScorer, spend: bool
) -> dict[str, Any]:
    """Nights 0…N of one salt: held-out metrics after each night, spend of each night."""
    held = data.arena.take(plan.held_out)
    base = data.base(config)
    costs = _costs(data.arena)
    found, nights = [metrics(held, *_score(champion, held), config.tolerance)], []
    explored = np.zeros(0, dtype=np.int64)
    for k, new in enumerate(plan.new, start=1):
        if spend:
            nights.append(_spend(champion, data, plan.sampled[k - 1], costs))
        explored = np.sort(np.concatenate([explored, new]))
        feedback = data.arena.take(explored)
        weights = [1.0] * len(base) + [DEFAULT_FEEDBACK_WEIGHT]
        champion = fit_sets([*base, feedback], weights, config)
        found.append(metrics(held, *_score(champion, held), config.tolerance))
    return {"metrics": found, "spend": nights}


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _mean_std(rows: list[list[float | None]]) -> tuple[list[float | None], list[float | None]]:
    """Per column (night): mean and sample std over the salts (None values left out)."""
    means: list[float | None] = []
    stds: list[float | None] = []
    for column in zip(*rows, strict=True):
        have = np.array([v for v in column if v is not None], dtype=np.float64)
        means.append(_r(have.mean()) if len(have) else None)
        stds.append(_r(have.std(ddof=1)) if len(have) > 1 else (0.0 if len(have) else None))
    return means, stds


def _one(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std over the salts of one value."""
    means, stds = _mean_std([[v] for v in values])
    return means[0], stds[0]


def _summary(runs: list[dict[str, Any]], spend: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("apgr", "auc"):
        rows = [[m[key] for m in run["metrics"]] for run in runs]
        out[key], out[f"{key}_std"] = _mean_std(rows)
        gain = [None if r[-1] is None or r[0] is None else r[-1] - r[0] for r in rows]
        out[f"{key}_gain"], out[f"{key}_gain_std"] = _one(gain)
    length = [run["metrics"][0]["length_apgr"] for run in runs]
    out["length_apgr"], out["length_apgr_std"] = _one(length)
    if not spend:
        return out
    for key, base in (
        ("extra_spend_pct_of_routed_night", "routed"),
        ("extra_spend_pct_of_all_strong", "all_strong"),
        ("both_calls_pct_of_routed_night", "routed"),
    ):
        part = "both_calls" if key.startswith("both") else "extra"
        rows = [[100 * n[part] / n[base] for n in run["spend"]] for run in runs]
        out[key], out[f"{key}_std"] = _mean_std(rows)
        totals = [
            100 * sum(n[part] for n in run["spend"]) / sum(n[base] for n in run["spend"])
            for run in runs
        ]
        out[f"{key}_total"], out[f"{key}_total_std"] = _one(totals)
    return out


def _out_of_fold(
    labels: LabelSet, folds: int, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold scores and P(needs) on the folds ``cross_validate(..., seed=0)`` uses."""
    strata = levels(labels.quality, config.label, config.tolerance)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
    scores, p_needs = np.zeros(labels.n), np.zeros(labels.n)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(splitter.split(np.zeros(labels.n), strata))
    for train, test in splits:
        model = fit_sets([labels.take(np.sort(train))], [1.0], config)
        test = np.sort(test)
        scores[test], p_needs[test] = _score(model, labels.take(test))
    return scores, p_needs


def _reference(data: Data, plans: list[Schedule], folds: int, pooled: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, config in CONFIGS.items():
        cv = cross_validate([data.arena], [], 1.0, folds, config, 0)[data.arena.name]
        out[f"arena_cv_{name}_apgr"], out[f"arena_cv_{name}_auc"] = _r(cv["apgr"]), _r(cv["auc"])
        scores, p_needs = _out_of_fold(data.arena, folds, config)
        on_held = [
            metrics(data.arena.take(h), scores[h], p_needs[h], config.tolerance)
            for h in (p.held_out for p in plans)
        ]
        key = f"arena_cv_{name}_apgr_held_out"
        out[key], out[f"{key}_std"] = _one([m["apgr"] for m in on_held])
        _log(f"reference {name}: arena CV APGR {cv['apgr']:.4f}")
    if pooled:
        for name, config in CONFIGS.items():
            sets = [*data.base(config), data.arena]
            cv = cross_validate(sets, [], 1.0, folds, config, 0)[data.arena.name]
            out[f"pooled_cv_{name}_apgr"] = _r(cv["apgr"])
            _log(f"reference {name}: arena APGR in a pooled CV {cv['apgr']:.4f}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="night salts 0 … N-1")
    parser.add_argument("--nights", type=int, default=5)
    parser.add_argument("--rate", type=float, default=0.1, help="explore: {rate}")
    parser.add_argument("--folds", type=int, default=5, help="of the reference CV")
    parser.add_argument("--no-pooled", action="store_true", help="skip the pooled CVs (~25 s)")
    parser.add_argument("--no-verifier", action="store_true", help="prompt-only router only")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    head = {
        "benchmark": "loop",
        "git_rev": git_rev(),
        "rate": args.rate,
        "nights": args.nights,
        "seeds": args.seeds,
        "feedback_weight": DEFAULT_FEEDBACK_WEIGHT,
    }
    missing = _missing()
    if missing:
        print(json.dumps({**head, "error": f"shared labels not found: {', '.join(missing)}"}))
        return 0
    data = _load()
    plans = [_schedule(data.arena, s, args.nights, args.rate) for s in range(args.seeds)]
    sampled_counts, _ = _mean_std([[len(x) for x in p.sampled] for p in plans])
    new_counts, _ = _mean_std([[len(x) for x in p.new] for p in plans])
    result: dict[str, Any] = {
        **head,
        "arena_prompts": data.arena.n,
        "arena_without_answers": data.arena_without_answers,
        "held_out": [len(p.held_out) for p in plans],
        "sampled": sampled_counts,
        "explored": new_counts,
        "reference": _reference(data, plans, args.folds, not args.no_pooled),
    }
    variants = ["router"] if args.no_verifier else list(CONFIGS)
    for name in variants:
        config = CONFIGS[name]
        champion = fit_sets(data.base(config), [1.0] * len(data.base(config)), config)
        runs = []
        for plan in plans:
            runs.append(_loop(data, config, plan, champion, spend=name == "router"))
            apgrs = " ".join(f"{m['apgr']:.3f}" for m in runs[-1]["metrics"])
            _log(f"{name} salt {plan.seed}: held-out APGR by night {apgrs}")
        result[name] = _summary(runs, spend=name == "router")
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
