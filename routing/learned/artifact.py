"""The learned scorer's artifact: a zip of ``model.skops`` (loaded with an explicit
trusted-types list, never pickle) and ``metadata.json``, written atomically, checked and
cached on load."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import skops.io as sio

from routing.embedding import NeighbourVote, SentenceEmbedding
from routing.errors import ConfigError
from routing.features import FEATURE_VERSION
from routing.learned.scorer import LearnedScorer

ARTIFACT_FORMAT = "batch-router-learned-scorer/1"
# Types in model.skops beyond skops' defaults; anything else in a file is refused.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "routing.embedding.SentenceEmbedding",
    "routing.embedding.NeighbourVote",
)
_MODEL, _META = "model.skops", "metadata.json"


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
