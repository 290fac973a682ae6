"""Held-out metrics of the learned scorer on label sets: k-fold cross-validation and
leave-one-dataset-out (ROC AUC, APGR, length-only APGR, Brier), feedback always training."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from routing.evaluation.curve import frontier
from routing.evaluation.labels import Pair
from routing.evaluation.metrics import apgr
from routing.features import compute_features
from routing.learned.answer import answer_frame
from routing.learned.config import TrainConfig, levels
from routing.learned.labels import LabelSet
from routing.learned.scorer import LearnedScorer
from routing.learned.training import fit_scorer


def _apgr(labels: LabelSet, scores: np.ndarray) -> float | None:
    pair = Pair.from_labels(labels.rows, labels.models[0], labels.models[-1])
    by_id = dict(zip(labels.prompt_ids, scores.tolist(), strict=True))
    aligned = np.array([by_id[str(i)] for i in pair.prompt_ids.to_list()])
    value = apgr(pair, frontier(pair, aligned))
    return None if value is None else float(value)


def metrics(
    labels: LabelSet, scores: np.ndarray, p_needs: np.ndarray, tolerance: float
) -> dict[str, Any]:
    """AUC / APGR / length-only APGR / Brier of one scored evaluation set."""
    needs = levels(labels.quality, "needs", tolerance) > 0
    both = bool(needs.any() and not needs.all())
    return {
        "prompts": labels.n,
        "needs_rate": float(needs.mean()),
        "auc": float(roc_auc_score(needs, scores)) if both else None,
        "apgr": _apgr(labels, scores),
        "length_apgr": _apgr(labels, labels.input_tokens.astype(np.float64)),
        "brier": float(brier_score_loss(needs, p_needs)) if both else None,
    }


def answers_of(labels: LabelSet) -> pl.DataFrame:
    """What a verifier reads of the set's cheapest-model answers (``--responses``)."""
    if labels.answers is None:
        raise ValueError(f"{labels.name}: no answers (train a verifier with --responses)")
    return answer_frame(labels.prompts, labels.answers)


def fit_sets(
    parts: Sequence[LabelSet], weights: Sequence[float], config: TrainConfig
) -> LearnedScorer:
    answers = pl.concat([answers_of(s) for s in parts]) if config.answers else None
    return fit_scorer(
        [p for s in parts for p in s.prompts],
        np.concatenate([s.input_tokens for s in parts]),
        np.vstack([s.quality for s in parts]),
        config=config,
        sample_weight=np.concatenate(
            [np.full(s.n, w) for s, w in zip(parts, weights, strict=True)]
        ),
        groups=np.concatenate([np.full(s.n, i) for i, s in enumerate(parts)]),
        tiers=list(dict.fromkeys(s.models for s in parts)),
        answers=answers,
    )


def _score(model: LearnedScorer, labels: LabelSet) -> tuple[np.ndarray, np.ndarray]:
    texts = pl.Series("prompt", labels.prompts, dtype=pl.String)
    feats = compute_features(texts)
    answers = answers_of(labels) if model.verifier else None
    probs = model.tier_probabilities(texts, feats, labels.input_tokens, answers)
    return model.score_texts(texts, feats, labels.input_tokens, answers), 1.0 - probs[:, 0]


def unseen(labels: LabelSet, feedback: Sequence[LabelSet]) -> LabelSet:
    """``labels`` minus the prompts whose text is in the feedback (never score training rows)."""
    seen = {p for f in feedback for p in f.prompts}
    keep = np.array([i for i, p in enumerate(labels.prompts) if p not in seen], dtype=np.int64)
    return labels if len(keep) == labels.n else labels.take(keep)


def cross_validate(
    sets: Sequence[LabelSet],
    feedback: Sequence[LabelSet],
    fb_weight: float,
    folds: int,
    config: TrainConfig,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """k-fold out-of-fold metrics per dataset of the pooled model (feedback always trains)."""
    evals = [unseen(s, feedback) for s in sets]
    n_levels = 3 if config.label == "win_rate" else len(sets[0].models)
    strata = np.concatenate(
        [
            i * n_levels + levels(s.quality, config.label, config.tolerance)
            for i, s in enumerate(evals)
        ]
    )
    offsets = np.cumsum([0] + [s.n for s in evals])
    scores, p_needs = np.zeros(len(strata)), np.zeros(len(strata))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(splitter.split(np.zeros(len(strata)), strata))
    for train, test in splits:
        parts = [s.take(_local(train, offsets, i)) for i, s in enumerate(evals)]
        model = fit_sets(
            [*parts, *feedback], [1.0] * len(parts) + [fb_weight] * len(feedback), config
        )
        for i, s in enumerate(evals):
            idx = _local(test, offsets, i)
            scores[idx + offsets[i]], p_needs[idx + offsets[i]] = _score(model, s.take(idx))
    return {
        s.name: metrics(
            s,
            scores[offsets[i] : offsets[i + 1]],
            p_needs[offsets[i] : offsets[i + 1]],
            config.tolerance,
        )
        for i, s in enumerate(evals)
    }


def _local(idx: np.ndarray, offsets: np.ndarray, i: int) -> np.ndarray:
    sel = idx[(idx >= offsets[i]) & (idx < offsets[i + 1])]
    return np.sort(sel - offsets[i])


def leave_one_out(
    sets: Sequence[LabelSet], feedback: Sequence[LabelSet], fb_weight: float, config: TrainConfig
) -> dict[str, dict[str, Any]]:
    """Per dataset: train on the other datasets (+ feedback), score the held-out one."""
    out = {}
    for i, held in enumerate(sets):
        others = [s for j, s in enumerate(sets) if j != i]
        model = fit_sets(
            [*others, *feedback], [1.0] * len(others) + [fb_weight] * len(feedback), config
        )
        target = unseen(held, feedback)
        out[held.name] = metrics(target, *_score(model, target), config.tolerance)
    return out


DEFAULT_FEEDBACK_WEIGHT = 10.0  # the measured plateau is 5–20 (docs/training.md)


def fingerprint(sets: Sequence[LabelSet], feedback: Sequence[LabelSet], fb_weight: float) -> str:
    """SHA-256 of the label rows used (dataset, prompt_id, model, quality, prompt) + weights."""
    h = hashlib.sha256()
    for role, group in (("train", sets), ("feedback", feedback)):
        for s in group:
            rows = s.rows.select("prompt_id", "model", "quality", "prompt").sort(
                "prompt_id", "model"
            )
            h.update(json.dumps([role, s.name, list(s.models)]).encode())
            for row in rows.iter_rows():
                h.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
            if s.answers is not None:  # a verifier's answers are training data too
                h.update(json.dumps(["answers", *s.answers], ensure_ascii=False).encode())
    h.update(json.dumps({"feedback_weight": fb_weight}).encode())
    return h.hexdigest()
