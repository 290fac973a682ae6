"""The learned scorer: hashed word/char n-grams of the prompt plus the numeric features of
:mod:`routing.features`, into logistic regressions; saved as a safe artifact.

Model. A scikit-learn ``ColumnTransformer`` turns a batch into one sparse matrix:

- ``word``: ``HashingVectorizer`` word 1–2-grams (2**18 buckets) → sublinear TF-IDF
  (``word_ngrams``, ``short_words``, ``min_df`` and ``word_vocabulary`` change it: +0.01 APGR
  on GSM8K with 1–3-grams, short words and ``min_df=2``, none on MMLU, 2.8× slower scoring);
- ``char`` (off by default, ``char_features=2**18`` turns it on): ``HashingVectorizer``
  ``char_wb`` 3–5-grams → sublinear TF-IDF. Measured on MMLU/GSM8K it moves APGR by less
  than the fold-to-fold noise (−0.005 / +0.008) and scores 7× slower (``docs/training.md``);
- ``counts``: ``log1p`` of the count features and of the input tokens, standardised;
- ``ratio``: ``non_ascii_ratio``, standardised (both numeric blocks weighted 0.1);
- ``embedding`` (off by default, ``embedding="all-MiniLM-L6-v2"`` turns it on): the prompt's
  sentence embedding (:mod:`routing.embedding`), weighted ``embedding_weight`` (0.5), plus a
  vote of the 100 nearest training prompts blended into the probabilities (0.35): MMLU APGR
  0.685 → 0.700, GSM8K 0.638 → 0.666, but ~60 prompts/s, 350× slower scoring.

Hashing keeps no vocabulary, so the artifact holds only the IDF and scaler vectors and the
coefficients. The target is ordinal, learned as cumulative binary classifiers
``P(level > k)`` (one ``LogisticRegression`` each, made monotone in ``k``). Their own
probabilities are used: ``CalibratedClassifierCV`` (sigmoid or isotonic, ``calibration=``)
gave no better Brier score on MMLU or GSM8K. Trained on several datasets, each gets its own
intercept (:func:`_fit_with_offsets`), which helps on unseen distributions.

- ``label="needs"``: the level is the index of the cheapest *adequate* model (quality ≥ the
  best quality on that prompt − ``tolerance``), models listed cheapest first. With two models
  that is ``y = q_strong > q_weak + tolerance``. ``score`` = P(level > 0), "needs more than
  the cheapest tier"; :meth:`LearnedScorer.tier_probabilities` gives P(level = k).
- ``label="win_rate"`` (two models; RouteLLM's label): the level is weak better / tie /
  strong better, and ``score`` = P(strong better) + ½ P(tie), the strong model's win rate.
  It ranks by expected quality gain, which is what APGR rewards (see ``docs/training.md``).

Artifact. A zip holding ``model.skops`` (skops, loaded with an explicit trusted-types list,
never pickle) and ``metadata.json`` (format, feature version, classifier version, training
fingerprint, metrics, versions, the SHA-256 of ``model.skops``). :func:`load_scorer` checks all
of it and raises :class:`~routing.errors.ConfigError`; it caches by path and mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp
import sklearn
import skops
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import (
    HashingVectorizer,
    TfidfTransformer,
    TfidfVectorizer,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from routing.embedding import NeighbourVote, SentenceEmbedding
from routing.errors import ConfigError
from routing.features import FEATURE_VERSION, FEATURES, compute_features

ARTIFACT_FORMAT = "batch-router-learned-scorer/1"
CLASSIFIER_FAMILY = "learned-1"
COUNT_COLUMNS: tuple[str, ...] = (*(f for f in FEATURES if f != "non_ascii_ratio"), "input_tokens")
# Types in model.skops beyond skops' defaults; anything else in a file is refused.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "routing.embedding.SentenceEmbedding",
    "routing.embedding.NeighbourVote",
)
_MODEL, _META = "model.skops", "metadata.json"
_SLICE_ROWS = 8192  # rows scored at once (< routing.embedding.CACHE_SIZE)

Label = Literal["needs", "win_rate"]
Calibration = Literal["none", "sigmoid", "isotonic"]
Floats = npt.NDArray[np.float64]


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


# --- the design matrix -----------------------------------------------------------------


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
    kept = [b for b in blocks if b[3] > 0 and not _off(b[0], config)]
    if not kept:
        raise ValueError("TrainConfig leaves no feature block")
    return ColumnTransformer(
        [(name, est, cols) for name, est, cols, _ in kept],
        transformer_weights={name: weight for name, _, _, weight in kept},
    )


def _off(block: str, config: TrainConfig) -> bool:
    if block in ("counts", "ratio", "embedding"):
        return False  # weight 0 drops these; the embedding block exists only when named
    if block == "word":
        return config.word_ngrams <= 0 or (not config.word_vocabulary and config.word_features <= 0)
    return config.char_features <= 0


def _fit_features(config: TrainConfig, frame: pl.DataFrame) -> tuple[ColumnTransformer, Any]:
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
    prompts: Sequence[str | None] | pl.Series, features: pl.DataFrame, input_tokens: npt.ArrayLike
) -> pl.DataFrame:
    """The model's input: ``prompt``, the feature columns and ``input_tokens``, checked."""
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
    return features.select(FEATURES).with_columns(text, pl.Series("input_tokens", tokens))


# --- the scorer ------------------------------------------------------------------------


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
    def tiers(self) -> list[list[str]]:
        """The models the tiers were learned from, cheapest first (one list per SPEC)."""
        return [list(t) for t in self.metadata["tiers"]]

    def cumulative(
        self,
        prompts: Sequence[str | None] | pl.Series,
        features: pl.DataFrame,
        input_tokens: npt.ArrayLike,
    ) -> Floats:
        """``(n, levels - 1)``: P(level > k), non-increasing in k."""
        frame = design_frame(prompts, features, input_tokens)
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
    ) -> Floats:
        """P(the prompt needs more than the cheapest tier) (``needs``), or the strong model's
        win rate (``win_rate``), one per prompt, in [0, 1]."""
        cum = self.cumulative(prompts, features, input_tokens)
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
    ) -> Floats:
        """``(n, tiers)``: P(the cheapest adequate tier is k). With ``win_rate`` the two
        columns are P(weak adequate) and P(strong strictly better)."""
        cum = self.cumulative(prompts, features, input_tokens)
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


# --- training --------------------------------------------------------------------------


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
    prompts: Sequence[str], quality: npt.ArrayLike, weight: npt.ArrayLike | None = None
) -> str:
    """SHA-256 over the training rows (text, qualities, weights), order included."""
    h = hashlib.sha256()
    for text in prompts:
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
) -> LearnedScorer:
    """Train on ``quality`` — ``(n, models)``, the models cheapest first — for ``prompts``.

    ``groups`` names each row's dataset (for ``dataset_offsets``); ``sample_weight`` weighs
    rows (e.g. user feedback). Calibration applies only without dataset offsets.
    """
    config = config or TrainConfig()
    q = np.asarray(quality, dtype=np.float64)
    target = levels(q, config.label, config.tolerance)
    weight = (
        np.ones(len(q)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    )
    group = np.zeros(len(q), dtype=np.int64) if groups is None else np.asarray(groups)
    texts = pl.Series("prompt", prompts, dtype=pl.String).fill_null("")
    frame = design_frame(texts, compute_features(texts), input_tokens)
    featurizer, x = _fit_features(config, frame)
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
        "fingerprint": fingerprint or data_fingerprint(texts.to_list(), q, weight),
        "config": asdict(config),
        "tiers": [list(t) for t in tiers],
        "rows": int(q.shape[0]),
        "sklearn_version": sklearn.__version__,
        "skops_version": skops.__version__,
    }
    return LearnedScorer(featurizer, classifiers, metadata, vote)


# --- the artifact ----------------------------------------------------------------------


def save_scorer(scorer: LearnedScorer, path: str | os.PathLike[str]) -> None:
    """Write the artifact atomically: a zip of ``model.skops`` and ``metadata.json``."""
    model = sio.dumps(scorer.parts(), compression=zipfile.ZIP_DEFLATED)
    meta = {**scorer.metadata, "classifier_version": scorer.version}
    meta["model_sha256"] = hashlib.sha256(model).hexdigest()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as zf:
            zf.writestr(_META, json.dumps(meta, indent=2, sort_keys=True, default=str))
            zf.writestr(_MODEL, model)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_scorer(path: str | os.PathLike[str]) -> LearnedScorer:
    """Load an artifact once per process (cached by path, mtime and size).

    Raises :class:`ConfigError` when the file is missing, not an artifact, altered (its
    model hash differs), holds types outside :data:`TRUSTED_TYPES`, or was trained on
    another feature version than :data:`routing.features.FEATURE_VERSION`.
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as exc:
        raise ConfigError(f"learned scorer {path}: cannot read ({exc.strerror})") from exc
    return _load(str(p), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> LearnedScorer:
    meta, model = _read_zip(path)
    _check_metadata(path, meta, model)
    untrusted = [t for t in sio.get_untrusted_types(data=model) if t not in TRUSTED_TYPES]
    if untrusted:
        raise ConfigError(f"learned scorer {path}: refusing untrusted types {untrusted}")
    try:
        parts = sio.loads(model, trusted=list(TRUSTED_TYPES))
        scorer = LearnedScorer(
            parts["featurizer"], parts["classifiers"], meta, parts.get("neighbours")
        )
        embedding = getattr(parts["featurizer"], "named_transformers_", {}).get("embedding")
        vote = parts.get("neighbours")
        _check_vote(vote, len(parts["classifiers"]), meta)
        for part in (embedding, vote):
            if isinstance(part, SentenceEmbedding | NeighbourVote):
                part.check()  # the model is here, with the weights it was trained on
    except ConfigError as exc:
        raise ConfigError(f"learned scorer {path}: {exc}") from exc
    except Exception as exc:  # a trust boundary: any failure is a bad artifact
        raise ConfigError(f"learned scorer {path}: cannot load the model ({exc})") from exc
    return scorer


def _check_vote(vote: Any, cuts: int, meta: Mapping[str, Any]) -> None:
    """A nearest-neighbour vote, if any, fits the classifiers it is blended with."""
    if vote is None:
        return
    if not isinstance(vote, NeighbourVote):
        raise ConfigError(f"'neighbours' is a {type(vote).__name__}, not a NeighbourVote")
    vectors, levels_, weights = vote.vectors_, vote.levels_, vote.sample_weight_
    if not (
        vote.cuts_ == cuts
        and vote.k > 0
        and vectors.ndim == 2
        and len(vectors) == len(levels_) == len(weights)
        and "neighbour_weight" in meta.get("config", {})
    ):
        raise ConfigError("the nearest-neighbour vote does not match the model")


def _read_zip(path: str) -> tuple[dict[str, Any], bytes]:
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read(_META))
            model = zf.read(_MODEL)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ConfigError(f"learned scorer {path}: not a valid artifact ({exc})") from exc
    if not isinstance(meta, dict):
        raise ConfigError(f"learned scorer {path}: metadata.json is not an object")
    return meta, model


def _check_metadata(path: str, meta: Mapping[str, Any], model: bytes) -> None:
    if meta.get("format") != ARTIFACT_FORMAT:
        raise ConfigError(f"learned scorer {path}: unknown format {meta.get('format')!r}")
    if meta.get("model_sha256") != hashlib.sha256(model).hexdigest():
        raise ConfigError(f"learned scorer {path}: model.skops does not match its checksum")
    if meta.get("feature_version") != FEATURE_VERSION:
        raise ConfigError(
            f"learned scorer {path}: trained on features {meta.get('feature_version')!r}, "
            f"this build computes {FEATURE_VERSION!r}; retrain it (batch-router train)"
        )
    if "fingerprint" not in meta or "config" not in meta:
        raise ConfigError(f"learned scorer {path}: metadata lacks fingerprint/config")


__all__ = [
    "TRUSTED_TYPES",
    "LearnedScorer",
    "TrainConfig",
    "classifier_version",
    "data_fingerprint",
    "fit_scorer",
    "levels",
    "load_scorer",
    "save_scorer",
]
