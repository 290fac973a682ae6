"""Fitting the learned scorer: one logistic regression per cut of the ordinal target, with a
per-dataset intercept, and the fingerprint of the training data."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp
import sklearn
import skops
from sklearn.calibration import CalibratedClassifierCV
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from routing.embedding import NeighbourVote
from routing.features import FEATURE_VERSION, compute_features
from routing.learned.artifact import ARTIFACT_FORMAT
from routing.learned.config import TrainConfig, levels, n_levels
from routing.learned.design import design_frame, fit_features
from routing.learned.scorer import Floats, LearnedScorer


def _classifier(config: TrainConfig, y: np.ndarray) -> Any:
    if len(np.unique(y)) < 2:
        return DummyClassifier(strategy="prior")
    lr = LogisticRegression(C=config.c, solver="liblinear")
    if config.calibration == "none" or np.bincount(y).min() < 3:
        return lr
    return CalibratedClassifierCV(lr, method=config.calibration, cv=3, ensemble=False)


_OFFSET_SCALE = 10.0  # large, so the L2 penalty barely touches the per-dataset intercepts


def _fit_with_offsets(
    config: TrainConfig, x: Any, y: np.ndarray, weight: Floats, groups: np.ndarray
) -> LogisticRegression:
    """A logistic regression with its own intercept per training dataset.

    Datasets differ in base rate (MMLU needs the strong model for 18 % of prompts, the
    arena set for 58 %) and in style, so a pooled model learns "looks like dataset X" as a
    proxy for the label, which is useless on a new distribution. One-hot dataset columns
    absorb the base rates; they are then folded into a single intercept (their weighted
    mean), so a prompt from an unseen distribution is scored as from an average dataset.
    """
    ids, inverse = np.unique(groups, return_inverse=True)
    n, d = x.shape
    onehot = sp.csr_matrix(
        (np.full(n, _OFFSET_SCALE), (np.arange(n), inverse)), shape=(n, len(ids))
    )
    lr = LogisticRegression(C=config.c, solver="liblinear")
    lr.fit(sp.hstack([x, onehot]).tocsr(), y, sample_weight=weight)
    offsets = lr.coef_[0, d:] * _OFFSET_SCALE
    lr.intercept_ = lr.intercept_ + np.average(offsets, weights=np.bincount(inverse, weight))
    lr.coef_ = lr.coef_[:, :d].copy()
    lr.n_features_in_ = d
    return lr


def _fit_one(config: TrainConfig, x: Any, y: np.ndarray, weight: Floats, groups: np.ndarray) -> Any:
    if config.dataset_offsets and len(np.unique(groups)) > 1 and len(np.unique(y)) > 1:
        return _fit_with_offsets(config, x, y, weight, groups)
    return _classifier(config, y).fit(x, y, sample_weight=weight)


def data_fingerprint(
    prompts: Sequence[str],
    quality: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    answers: Sequence[str] = (),
) -> str:
    """SHA-256 over the training rows (text, answers, qualities, weights), order included."""
    h = hashlib.sha256()
    for text in (*prompts, *(("\x1d", *answers) if answers else ())):
        h.update(text.encode("utf-8", "surrogatepass") + b"\x1e")
    h.update(np.ascontiguousarray(quality, dtype=np.float64).tobytes())
    if weight is not None:
        h.update(np.ascontiguousarray(weight, dtype=np.float64).tobytes())
    return h.hexdigest()


def fit_scorer(
    prompts: Sequence[str],
    input_tokens: npt.ArrayLike,
    quality: npt.ArrayLike,
    *,
    config: TrainConfig | None = None,
    sample_weight: npt.ArrayLike | None = None,
    groups: npt.ArrayLike | None = None,
    tiers: Sequence[Sequence[str]] = (),
    fingerprint: str | None = None,
    answers: pl.DataFrame | None = None,
) -> LearnedScorer:
    """Train on ``quality`` — ``(n, models)``, the models cheapest first — for ``prompts``.

    ``groups`` names each row's dataset (for ``dataset_offsets``); ``sample_weight`` weighs
    rows (e.g. user feedback). Calibration applies only without dataset offsets. A verifier
    (``config.answers``) reads ``answers`` too: :func:`routing.learned.answer.answer_frame`
    of the cheapest model's answer to each prompt.
    """
    config = config or TrainConfig()
    q = np.asarray(quality, dtype=np.float64)
    target = levels(q, config.label, config.tolerance)
    weight = (
        np.ones(len(q)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    )
    group = np.zeros(len(q), dtype=np.int64) if groups is None else np.asarray(groups)
    if config.answers and answers is None:
        raise ValueError("a verifier (config.answers) is trained on answers: pass answers=")
    texts = pl.Series("prompt", prompts, dtype=pl.String).fill_null("")
    frame = design_frame(
        texts, compute_features(texts), input_tokens, answers if config.answers else None
    )
    featurizer, x = fit_features(config, frame)
    classifiers = []
    for k in range(n_levels(q.shape[1], config.label) - 1):
        y = (target > k).astype(np.int64)
        classifiers.append(_fit_one(config, x, y, weight, group))
    vote = None
    if config.embedding and config.neighbours > 0 and config.neighbour_weight > 0:
        vote = NeighbourVote(config.embedding, config.neighbours)
        vote.fit(texts, target, weight, cuts=len(classifiers))
    metadata = {
        "format": ARTIFACT_FORMAT,
        "feature_version": FEATURE_VERSION,
        "fingerprint": fingerprint
        or data_fingerprint(
            texts.to_list(),
            q,
            weight,
            answers.get_column("answer").to_list()
            if answers is not None and config.answers
            else (),
        ),
        "config": asdict(config),
        "tiers": [list(t) for t in tiers],
        "rows": int(q.shape[0]),
        "sklearn_version": sklearn.__version__,
        "skops_version": skops.__version__,
    }
    return LearnedScorer(featurizer, classifiers, metadata, vote)
