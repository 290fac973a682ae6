"""The trained scorer: cumulative probabilities per prompt, its score, and its version."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from routing.embedding import NeighbourVote
from routing.errors import ConfigError
from routing.learned.config import Label
from routing.learned.design import design_frame

CLASSIFIER_FAMILY = "learned-1"
_SLICE_ROWS = 8192  # rows scored at once (< routing.embedding.CACHE_SIZE)

Floats = npt.NDArray[np.float64]


def classifier_version(metadata: Mapping[str, Any]) -> str:
    """``learned-1/`` + 8 hex digits of SHA-256 over the training data's fingerprint and the
    training config: two models trained on the same labels with different options (an
    embedding, say) are told apart in every decision's ``classifier_version``."""
    key = json.dumps(
        {"fingerprint": metadata["fingerprint"], "config": metadata.get("config")},
        sort_keys=True,
        default=str,
    )
    return f"{CLASSIFIER_FAMILY}/{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _positive(classifier: Any, x: Any) -> Floats:
    """P(class 1) from a fitted binary classifier (0 or 1 if it only ever saw one class)."""
    classes = list(classifier.classes_)
    if 1 not in classes:
        return np.zeros(x.shape[0])
    proba: Floats = classifier.predict_proba(x)[:, classes.index(1)]
    return proba


class LearnedScorer:
    """A trained scorer. It needs the prompt text besides the features: call
    :meth:`score_texts`, or :meth:`score` with a ``prompt`` column in the features frame."""

    def __init__(
        self,
        featurizer: Any,
        classifiers: Sequence[Any],
        metadata: Mapping[str, Any],
        neighbours: NeighbourVote | None = None,
    ) -> None:
        self._featurizer = featurizer
        self._classifiers = tuple(classifiers)
        self._neighbours = neighbours
        self.metadata: dict[str, Any] = dict(metadata)
        # An artifact keeps the version it was saved with (those saved before the config was
        # part of it keep theirs); a freshly trained model computes it.
        self.version: str = str(metadata.get("classifier_version") or classifier_version(metadata))

    @property
    def label(self) -> Label:
        label: Label = self.metadata["config"]["label"]
        return label

    @property
    def verifier(self) -> bool:
        """True when the model reads the cheapest tier's answer too (``train --verifier``)."""
        return bool(self.metadata["config"].get("answers", False))

    @property
    def tiers(self) -> list[list[str]]:
        """The models the tiers were learned from, cheapest first (one list per SPEC)."""
        return [list(t) for t in self.metadata["tiers"]]

    def cumulative(
        self,
        prompts: Sequence[str | None] | pl.Series,
        features: pl.DataFrame,
        input_tokens: npt.ArrayLike,
        answers: pl.DataFrame | None = None,
    ) -> Floats:
        """``(n, levels - 1)``: P(level > k), non-increasing in k. A verifier needs
        ``answers`` (:func:`routing.learned.answer.answer_frame` of the cheapest tier's
        answers); a prompt-only model ignores them."""
        if self.verifier and answers is None:
            raise ConfigError(
                "this model is a verifier: it scores a prompt with the cheapest tier's answer "
                "(pass answers=answer_frame(prompts, answers))"
            )
        frame = design_frame(prompts, features, input_tokens, answers if self.verifier else None)
        if frame.height == 0:
            return np.zeros((0, len(self._classifiers)))
        # Row-wise, so scored in slices: with an embedding, the block and the vote each embed
        # a slice's prompts, and a slice well under the embedding cache keeps that to once.
        slices = [frame.slice(i, _SLICE_ROWS) for i in range(0, frame.height, _SLICE_ROWS)]
        return np.vstack([self._cumulative(part) for part in slices])

    def _cumulative(self, frame: pl.DataFrame) -> Floats:
        x = self._featurizer.transform(frame)
        p = np.column_stack([_positive(c, x) for c in self._classifiers])
        if self._neighbours is not None:
            w = float(self.metadata["config"]["neighbour_weight"])
            p = (1.0 - w) * p + w * self._neighbours.cumulative(frame.get_column("prompt"))
        out: Floats = np.minimum.accumulate(p, axis=1)
        return out

    def score_texts(
        self,
        prompts: Sequence[str | None] | pl.Series,
        features: pl.DataFrame,
        input_tokens: npt.ArrayLike,
        answers: pl.DataFrame | None = None,
    ) -> Floats:
        """P(the prompt needs more than the cheapest tier) (``needs``), or the strong model's
        win rate (``win_rate``), one per prompt, in [0, 1] (a verifier: given the answer)."""
        cum = self.cumulative(prompts, features, input_tokens, answers)
        out: Floats = cum.mean(axis=1) if self.label == "win_rate" else cum[:, 0]
        return out

    def score(self, features: pl.DataFrame, input_tokens: np.ndarray) -> Floats:
        """The :class:`~routing.classify.Scorer` Protocol; ``features`` must carry ``prompt``."""
        if "prompt" not in features.columns:
            raise ConfigError(
                "the learned scorer needs the prompt text: add a 'prompt' column to the "
                "features frame, or call score_texts(prompts, features, input_tokens)"
            )
        return self.score_texts(features.get_column("prompt"), features, input_tokens)

    def tier_probabilities(
        self,
        prompts: Sequence[str | None] | pl.Series,
        features: pl.DataFrame,
        input_tokens: npt.ArrayLike,
        answers: pl.DataFrame | None = None,
    ) -> Floats:
        """``(n, tiers)``: P(the cheapest adequate tier is k). With ``win_rate`` the two
        columns are P(weak adequate) and P(strong strictly better)."""
        cum = self.cumulative(prompts, features, input_tokens, answers)
        if self.label == "win_rate":
            cum = cum[:, 1:]
        n = cum.shape[0]
        upper = np.column_stack([np.ones(n), cum])
        lower = np.column_stack([cum, np.zeros(n)])
        out: Floats = upper - lower
        return out

    def with_metadata(self, **extra: Any) -> LearnedScorer:
        """The same model with metadata entries added or replaced (e.g. metrics)."""
        meta = {**self.metadata, **extra}
        if "classifier_version" not in extra:
            meta.pop("classifier_version", None)  # recomputed from the new metadata
        return LearnedScorer(self._featurizer, self._classifiers, meta, self._neighbours)

    def parts(self) -> dict[str, Any]:
        """The scikit-learn objects, as saved in ``model.skops``."""
        return {
            "featurizer": self._featurizer,
            "classifiers": list(self._classifiers),
            "neighbours": self._neighbours,
        }
