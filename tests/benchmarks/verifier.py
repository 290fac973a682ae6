"""The answer-aware verifier against the prompt-only learned router:
``python -m tests.benchmarks.verifier [--seeds 5] [--folds 5]``.

Both are the production learned scorer (``routing.learned.validation.fit_sets``):
``prompt_only`` is ``TrainConfig()``, ``verifier`` the same with ``answers=True`` (it also
reads the weak model's answer, issue 16). Both see the SAME prompts: those of the shared
labels the weak model answered (``routing.learned.labels.with_answers``), for the pairs

- ``gsm8k``: ``mixtral-8x7b-instruct-v0.1`` → ``gpt-4-1106-preview``;
- ``arena_bench_v1``: ``Mixtral-8x7B-Instruct-v0.1`` → ``gpt-4-0314``.

Measured, side by side on the same splits:

- ``cv``: per dataset, trained on that dataset alone, out-of-fold scores of ``--folds``
  stratified folds (on the win-rate level), repeated for split seeds ``0 … --seeds - 1``;
  APGR, AUC (``validation.metrics``) and CPT(50 %) of each seed's out-of-fold scores, as
  mean / sample std (split to split) / min / max; ``paired``: verifier minus prompt-only
  per seed (same folds), and on how many seeds the verifier's APGR is higher;
- ``cross``: trained on one dataset, scored on the other (deterministic);
- ``length_apgr``: the input-token-count baseline on the same prompts.

``cost50`` is the mean cost per prompt at CPT(50 %) over the cost of always calling the
strong model; the verifier's is that of a cascade (the weak call is paid on every prompt,
as ``batch-router eval`` counts it). Prints one JSON line; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from routing.evaluation.curve import frontier
from routing.evaluation.labels import Pair
from routing.evaluation.metrics import cpt
from routing.learned.config import TrainConfig, levels
from routing.learned.labels import LabelSet, load_labels, load_responses, parse_spec, with_answers
from routing.learned.validation import _score, fit_sets, metrics
from tests.benchmarks.common import git_rev

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT.parent / "shared" / "data" / "labels"
PAIRS = (
    ("gsm8k", "mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview"),
    ("arena_bench_v1", "Mixtral-8x7B-Instruct-v0.1", "gpt-4-0314"),
)
CONFIGS = {"prompt_only": TrainConfig(), "verifier": replace(TrainConfig(), answers=True)}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _missing() -> list[str]:
    files = [LABELS / f"{name}.parquet" for name, _, _ in PAIRS]
    files += [LABELS / "responses" / f"{name}.parquet" for name, _, _ in PAIRS]
    return [str(f) for f in files if not f.is_file()]


def _load(name: str, weak: str, strong: str) -> LabelSet:
    """The dataset's weak/strong labels, restricted to the prompts the weak model answered."""
    labels = load_labels(parse_spec(f"{LABELS / f'{name}.parquet'}:{weak},{strong}"))
    return with_answers(labels, load_responses([LABELS / "responses" / f"{name}.parquet"]))


def _frontier(labels: LabelSet, scores: np.ndarray, cascade: bool) -> dict[str, float | None]:
    """CPT(50 %) and the relative cost there (as a cascade when ``cascade``)."""
    pair = Pair.from_labels(labels.rows, labels.models[0], labels.models[-1])
    by_id = dict(zip(labels.prompt_ids, scores.tolist(), strict=True))
    aligned = np.array([by_id[str(i)] for i in pair.prompt_ids.to_list()])
    all_strong = float(pair.c_strong.mean())
    if cascade:  # the weak model answers every prompt; an escalated one pays both calls
        pair = replace(pair, c_strong=pair.c_weak + pair.c_strong)
    curve = frontier(pair, aligned)
    share = cpt(pair, curve, 0.5)
    cost = None if share is None or all_strong <= 0 else curve.at(share)[1] / all_strong
    return {"cpt50": share, "cost50": cost}


def _measure(
    labels: LabelSet, scores: np.ndarray, p_needs: np.ndarray, config: TrainConfig
) -> dict[str, float | None]:
    found = metrics(labels, scores, p_needs, config.tolerance)
    return {
        "apgr": found["apgr"],
        "auc": found["auc"],
        **_frontier(labels, scores, cascade=config.answers),
    }


def _out_of_fold(
    labels: LabelSet, splits: list[tuple[np.ndarray, np.ndarray]], config: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    scores, p_needs = np.zeros(labels.n), np.zeros(labels.n)
    for train, test in splits:
        model = fit_sets([labels.take(train)], [1.0], config)
        scores[test], p_needs[test] = _score(model, labels.take(test))
    return scores, p_needs


def _splits(labels: LabelSet, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    strata = levels(labels.quality, "win_rate")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(splitter.split(np.zeros(labels.n), strata))


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _spread(values: list[float | None], key: str, full: bool = True) -> dict[str, Any]:
    """mean / sample std / min / max of the seeds' values (None: never reached, left out)."""
    have = np.array([v for v in values if v is not None], dtype=np.float64)
    if len(have) == 0:
        return {f"{key}_mean": None}
    out: dict[str, Any] = {f"{key}_mean": _r(have.mean())}
    if full:
        out[f"{key}_std"] = _r(have.std(ddof=1) if len(have) > 1 else 0.0)
        out[f"{key}_min"], out[f"{key}_max"] = _r(have.min()), _r(have.max())
    if len(have) < len(values):
        out[f"{key}_missing"] = len(values) - len(have)
    return out


def _cv(labels: LabelSet, seeds: int, folds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float | None]]] = {name: [] for name in CONFIGS}
    for seed in range(seeds):
        splits = _splits(labels, folds, seed)  # the same folds for both configs
        for name, config in CONFIGS.items():
            runs[name].append(_measure(labels, *_out_of_fold(labels, splits, config), config))
        _log(
            f"{labels.name} seed {seed}: "
            + ", ".join(f"{n} APGR {r[-1]['apgr']:.4f}" for n, r in runs.items())
        )
    out: dict[str, Any] = {"prompts": labels.n}
    for name, found in runs.items():
        out[name] = {
            **_spread([r["apgr"] for r in found], "apgr"),
            **_spread([r["auc"] for r in found], "auc"),
            **_spread([r["cpt50"] for r in found], "cpt50"),
            **_spread([r["cost50"] for r in found], "cost50", full=False),
        }
    deltas = [
        None if v["apgr"] is None or p["apgr"] is None else v["apgr"] - p["apgr"]
        for p, v in zip(runs["prompt_only"], runs["verifier"], strict=True)
    ]
    out["paired"] = {
        **_spread(deltas, "apgr_delta"),
        "verifier_better_seeds": sum(d is not None and d > 0 for d in deltas),
    }
    out.update(_length(labels))
    return out


def _length(labels: LabelSet) -> dict[str, float | None]:
    tokens = labels.input_tokens.astype(np.float64)
    found = metrics(labels, tokens, np.zeros(labels.n), 0.0)
    return {
        "length_apgr": _r(found["apgr"]),
        "length_cpt50": _r(_frontier(labels, tokens, False)["cpt50"]),
    }


def _cross(source: LabelSet, target: LabelSet) -> dict[str, Any]:
    out: dict[str, Any] = {"prompts": target.n}
    for name, config in CONFIGS.items():
        model = fit_sets([source], [1.0], config)
        found = _measure(target, *_score(model, target), config)
        out[name] = {k: _r(v) for k, v in found.items()}
    out.update(_length(target))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="split seeds 0 … N-1")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    head = {
        "benchmark": "verifier",
        "git_rev": git_rev(),
        "seeds": args.seeds,
        "folds": args.folds,
    }
    missing = _missing()
    if missing:
        print(json.dumps({**head, "error": f"shared labels not found: {', '.join(missing)}"}))
        return 0
    sets = {name: _load(name, weak, strong) for name, weak, strong in PAIRS}
    cv = {name: _cv(labels, args.seeds, args.folds) for name, labels in sets.items()}
    (a, sa), (b, sb) = sets.items()
    cross = {f"{a}->{b}": _cross(sa, sb), f"{b}->{a}": _cross(sb, sa)}
    result = {
        **head,
        "pairs": {name: f"{weak},{strong}" for name, weak, strong in PAIRS},
        "cv": cv,
        "cross": cross,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
