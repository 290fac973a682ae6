"""What the learned scorer learns and how: :class:`TrainConfig` (stored in the artifact's
metadata) and the ordinal target it is trained on (:func:`levels`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Label = Literal["needs", "win_rate"]
Calibration = Literal["none", "sigmoid", "isotonic"]


@dataclass(frozen=True)
class TrainConfig:
    """What to learn and how; stored in the artifact's metadata."""

    label: Label = "win_rate"
    tolerance: float = 0.0  # quality within this of the best counts as adequate / a tie
    word_ngrams: int = 2  # word 1…n-grams; 0 drops the word block
    short_words: bool = False  # one-character words count too (digits, option letters)
    word_features: int = 2**18  # hashing buckets
    word_vocabulary: bool = False  # a learned vocabulary instead of hashing (5x slower scoring)
    min_df: int = 1  # drop word n-grams seen in fewer training prompts (docs/training.md)
    char_features: int = 0  # 2**18 adds char_wb 3–5-grams (7x slower, no clear gain)
    numeric_weight: float = 0.1
    c: float = 1.0  # inverse L2 strength of each LogisticRegression
    calibration: Calibration = "none"
    # Sentence embeddings of the prompt (routing.embedding): "" (off) or a bundled model's
    # name ("all-MiniLM-L6-v2"); +0.015-0.03 APGR, ~350x slower scoring.
    embedding: str = ""
    embedding_weight: float = 0.5
    # With an embedding: the k nearest training prompts vote (routing.embedding.NeighbourVote),
    # blended into every cumulative probability with this weight; 0 neighbours turns it off.
    neighbours: int = 100
    neighbour_weight: float = 0.35
    dataset_offsets: bool = True  # one intercept per training dataset (see _fit_with_offsets)
    # A verifier (issue 16): the model also reads the cheapest model's answer — its signals
    # (routing.learned.answer) weighted answer_weight, and its word n-grams (0 drops them).
    answers: bool = False
    answer_ngrams: int = 2
    answer_weight: float = 0.3


# --- targets ---------------------------------------------------------------------------


def levels(quality: npt.ArrayLike, label: Label = "needs", tolerance: float = 0.0) -> np.ndarray:
    """The ordinal target per prompt from an ``(n, models)`` quality matrix, cheapest first.

    ``needs``: index of the cheapest model within ``tolerance`` of the prompt's best quality.
    ``win_rate`` (two models): 0 weak better, 1 tie (within ``tolerance``), 2 strong better.
    """
    q = np.asarray(quality, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] < 2:
        raise ValueError(f"quality must be (prompts, models ≥ 2), got shape {q.shape}")
    if label == "win_rate":
        if q.shape[1] != 2:
            raise ValueError("label 'win_rate' needs exactly two models (weak, strong)")
        diff = q[:, 1] - q[:, 0]
        return np.where(diff > tolerance, 2, np.where(diff < -tolerance, 0, 1))
    adequate = q >= q.max(axis=1, keepdims=True) - tolerance - 1e-12
    return np.asarray(adequate.argmax(axis=1), dtype=np.int64)


def n_levels(n_models: int, label: Label) -> int:
    return 3 if label == "win_rate" else n_models
