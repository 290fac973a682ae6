"""The learned scorer's design matrix: the featurizer (word / char n-grams, counts, ratio,
optional sentence embedding; see :mod:`routing.learned`) and the frame it reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import (
    HashingVectorizer,
    TfidfTransformer,
    TfidfVectorizer,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from routing.embedding import SentenceEmbedding
from routing.features import FEATURES
from routing.learned.answer import ANSWER_COUNTS, ANSWER_FEATURES
from routing.learned.config import TrainConfig

COUNT_COLUMNS: tuple[str, ...] = (*(f for f in FEATURES if f != "non_ascii_ratio"), "input_tokens")
SIGNAL_COLUMNS: tuple[str, ...] = tuple(f for f in ANSWER_FEATURES if f not in ANSWER_COUNTS)


# Words of one character count too: digits ("5 apples") and option letters ("A.").
TOKEN_PATTERN = r"(?u)\b\w+\b"


def _hashed(analyzer: str, ngrams: tuple[int, int], bits: int, **options: Any) -> Any:
    vectorizer = HashingVectorizer(
        analyzer=analyzer,
        ngram_range=ngrams,
        n_features=bits,
        alternate_sign=False,
        norm=None,
        **options,
    )
    return make_pipeline(vectorizer, TfidfTransformer(sublinear_tf=True))


def _words(config: TrainConfig, min_df: int | None = None) -> Any:
    ngrams = (1, config.word_ngrams)
    options = {"token_pattern": TOKEN_PATTERN} if config.short_words else {}
    if not config.word_vocabulary:
        return _hashed("word", ngrams, config.word_features, **options)
    return TfidfVectorizer(
        ngram_range=ngrams,
        min_df=config.min_df if min_df is None else min_df,
        sublinear_tf=True,
        **options,
    )


def _featurizer(config: TrainConfig, min_df: int | None = None) -> ColumnTransformer:
    """The design matrix; a block with 0 buckets / 0 weight is left out."""
    w = config.numeric_weight
    counts = make_pipeline(FunctionTransformer(np.log1p), StandardScaler())
    blocks = [
        ("word", _words(config, min_df), "prompt", 1.0),
        ("char", _hashed("char_wb", (3, 5), config.char_features), "prompt", 1.0),
        ("counts", counts, list(COUNT_COLUMNS), w),
        ("ratio", StandardScaler(), ["non_ascii_ratio"], w),
    ]
    if config.embedding:
        embedding = SentenceEmbedding(config.embedding)
        blocks.append(("embedding", embedding, "prompt", config.embedding_weight))
    if config.answers:  # a verifier: the cheapest model's answer, its size and signals
        a = config.answer_weight
        sizes = make_pipeline(FunctionTransformer(np.log1p), StandardScaler())
        blocks += [
            ("answer_word", _hashed("word", (1, config.answer_ngrams), 2**18), "answer", 1.0),
            ("answer_sizes", sizes, list(ANSWER_COUNTS), a),
            ("answer_signals", StandardScaler(), list(SIGNAL_COLUMNS), a),
        ]
    kept = [b for b in blocks if b[3] > 0 and not _off(b[0], config)]
    if not kept:
        raise ValueError("TrainConfig leaves no feature block")
    return ColumnTransformer(
        [(name, est, cols) for name, est, cols, _ in kept],
        transformer_weights={name: weight for name, _, _, weight in kept},
    )


def _off(block: str, config: TrainConfig) -> bool:
    if block in ("counts", "ratio", "embedding", "answer_sizes", "answer_signals"):
        return False  # weight 0 drops these; the embedding/answer blocks exist only when asked
    if block == "answer_word":
        return config.answer_ngrams <= 0
    if block == "word":
        return config.word_ngrams <= 0 or (not config.word_vocabulary and config.word_features <= 0)
    return config.char_features <= 0


def fit_features(config: TrainConfig, frame: pl.DataFrame) -> tuple[ColumnTransformer, Any]:
    """Fit the featurizer. ``min_df`` drops the word n-grams of fewer training prompts: the
    vocabulary leaves them out; with hashing, the buckets seen in fewer than ``min_df``
    prompts get IDF 0 (a zero column, left out of each row's norm), unless that would drop
    every bucket (a handful of prompts with no word in common keeps every n-gram)."""
    featurizer = _featurizer(config)
    try:
        x = featurizer.fit_transform(frame)
    except ValueError as exc:
        if not config.word_vocabulary or "no terms remain" not in str(exc):
            raise
        featurizer = _featurizer(config, min_df=1)
        return featurizer, featurizer.fit_transform(frame)
    words = featurizer.named_transformers_.get("word")
    if config.word_vocabulary or config.min_df <= 1 or words is None:
        return featurizer, x
    hashed = words[0].transform(frame.get_column("prompt"))
    df = np.bincount(hashed.indices, minlength=hashed.shape[1])
    rare = df < config.min_df
    if rare.all():
        return featurizer, x
    tfidf = words[-1]
    tfidf.idf_ = np.where(rare, 0.0, tfidf.idf_)
    return featurizer, featurizer.transform(frame)


def design_frame(
    prompts: Sequence[str | None] | pl.Series,
    features: pl.DataFrame,
    input_tokens: npt.ArrayLike,
    answers: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The model's input: ``prompt``, the feature columns and ``input_tokens``, checked; for
    a verifier also ``answers`` (:func:`routing.learned.answer.answer_frame`)."""
    text = pl.Series("prompt", prompts, dtype=pl.String).fill_null("")
    tokens = np.asarray(input_tokens, dtype=np.float64)
    missing = [f for f in FEATURES if f not in features.columns]
    if missing:
        raise ValueError(f"features frame lacks {missing} (compute it with routing.features)")
    if not len(text) == features.height == len(tokens):
        raise ValueError(
            f"batch sizes differ: {len(text)} prompts, {features.height} feature rows, "
            f"{len(tokens)} token counts"
        )
    frame = features.select(FEATURES).with_columns(text, pl.Series("input_tokens", tokens))
    if answers is None:
        return frame
    lacking = [c for c in ("answer", *ANSWER_FEATURES) if c not in answers.columns]
    if lacking:
        raise ValueError(f"answers frame lacks {lacking} (build it with answer_frame)")
    if answers.height != frame.height:
        raise ValueError(f"{frame.height} prompts but {answers.height} answers")
    return pl.concat([frame, answers.select("answer", *ANSWER_FEATURES)], how="horizontal")
