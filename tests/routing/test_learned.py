"""The learned scorer: targets, ordering on a separable set, the artifact's safety."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import skops.io as sio

from routing.classify import Scorer
from routing.errors import ConfigError
from routing.features import compute_features
from routing.learned.artifact import load_scorer, save_scorer
from routing.learned.config import TrainConfig, levels
from routing.learned.scorer import LearnedScorer, classifier_version
from routing.learned.training import fit_scorer

EASY = "what colour is the {} cat, quickly?"
HARD = "prove the theorem on the integral of the {} polynomial and derive each step"
MID = "summarise the {} report about the quarterly sales figures"


def synthetic(n: int = 60) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Easy prompts: the weak model suffices; hard ones: only the strong one succeeds."""
    words = [f"w{i}" for i in range(n)]
    prompts = [EASY.format(w) for w in words] + [HARD.format(w) for w in words]
    quality = np.array([[1.0, 1.0]] * n + [[0.0, 1.0]] * n)
    return prompts, tokens(prompts), quality


def tokens(prompts: list[str]) -> np.ndarray:
    return np.array([len(p.split()) for p in prompts], dtype=np.int64)


def score(model: LearnedScorer, prompts: list[str]) -> np.ndarray:
    series = pl.Series("prompt", prompts)
    return model.score_texts(prompts, compute_features(series), tokens(prompts))


@pytest.fixture(scope="module")
def model() -> LearnedScorer:
    prompts, toks, quality = synthetic()
    return fit_scorer(prompts, toks, quality, config=TrainConfig(label="needs"), tiers=[["w", "s"]])


@pytest.fixture
def artifact(model: LearnedScorer, tmp_path: Path) -> Path:
    path = tmp_path / "scorer.zip"
    save_scorer(model, path)
    return path


def test_levels_needs_and_win_rate() -> None:
    q = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.65]])
    assert levels(q, "needs").tolist() == [0, 1, 0, 1]
    assert levels(q, "needs", tolerance=0.1).tolist() == [0, 1, 0, 0]
    assert levels(q, "win_rate").tolist() == [1, 2, 0, 2]
    three = np.array([[0.2, 0.9, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    assert levels(three, "needs", tolerance=0.1).tolist() == [1, 0, 2]
    with pytest.raises(ValueError):
        levels(three, "win_rate")


def test_separable_set_is_ordered(model: LearnedScorer) -> None:
    easy = score(model, [EASY.format(w) for w in ("new1", "new2")])
    hard = score(model, [HARD.format(w) for w in ("new1", "new2")])
    assert hard.min() > easy.max()
    assert hard.min() > 0.5 > easy.max()
    as_protocol: Scorer = model  # structurally a Scorer
    assert as_protocol.version.startswith("learned-1/")
    assert model.version.startswith("learned-1/")


def test_win_rate_orders_and_reports_tiers() -> None:
    prompts, toks, quality = synthetic(40)
    m = fit_scorer(prompts, toks, quality, config=TrainConfig(label="win_rate"))
    easy, hard = score(m, [EASY.format("x")]), score(m, [HARD.format("x")])
    assert hard[0] > easy[0]
    feats = compute_features(pl.Series("prompt", [HARD.format("x")]))
    probs = m.tier_probabilities([HARD.format("x")], feats, [9])
    assert probs.shape == (1, 2) and np.allclose(probs.sum(axis=1), 1.0)


def test_ordinal_three_tiers() -> None:
    words = [f"w{i}" for i in range(40)]
    prompts = [t.format(w) for t in (EASY, MID, HARD) for w in words]
    quality = np.array([[1, 1, 1]] * 40 + [[0, 1, 1]] * 40 + [[0, 0, 1]] * 40, dtype=float)
    m = fit_scorer(prompts, tokens(prompts), quality, config=TrainConfig(label="needs"))
    new = [t.format("zz") for t in (EASY, MID, HARD)]
    feats = compute_features(pl.Series("prompt", new))
    probs = m.tier_probabilities(new, feats, tokens(new))
    assert np.allclose(probs.sum(axis=1), 1.0) and (probs >= 0).all()
    assert probs.argmax(axis=1).tolist() == [0, 1, 2]
    s = m.score_texts(new, feats, tokens(new))
    assert s[0] < s[1] and s[0] < s[2]


def test_score_needs_the_prompt_column(model: LearnedScorer) -> None:
    prompts = [EASY.format("a"), HARD.format("b")]
    feats = compute_features(pl.Series("prompt", prompts))
    with pytest.raises(ConfigError, match="prompt"):
        model.score(feats, tokens(prompts))
    with_text = feats.with_columns(pl.Series("prompt", prompts))
    assert np.array_equal(model.score(with_text, tokens(prompts)), score(model, prompts))


def test_empty_batch(model: LearnedScorer) -> None:
    feats = compute_features(pl.Series("prompt", [], dtype=pl.String))
    assert model.score_texts([], feats, np.zeros(0)).shape == (0,)


def test_round_trip_identical_scores(model: LearnedScorer, artifact: Path) -> None:
    loaded = load_scorer(artifact)
    prompts = [EASY.format("q"), HARD.format("r"), "", "ünïcode — text {}"]
    assert np.array_equal(score(loaded, prompts), score(model, prompts))
    assert loaded.version == model.version
    with zipfile.ZipFile(artifact) as zf:
        meta = json.loads(zf.read("metadata.json"))
    assert meta["feature_version"] == model.metadata["feature_version"]
    assert meta["classifier_version"] == model.version
    assert meta["fingerprint"] == model.metadata["fingerprint"]
    assert load_scorer(artifact) is loaded  # once per process


def test_reload_after_the_file_changes(model: LearnedScorer, artifact: Path) -> None:
    first = load_scorer(artifact)
    save_scorer(model.with_metadata(fingerprint="f" * 64), artifact)
    os.utime(artifact, ns=(1, 1))
    second = load_scorer(artifact)
    assert second is not first and second.version != first.version
    assert second.version == classifier_version({**model.metadata, "fingerprint": "f" * 64})


def _rewrite(path: Path, meta: dict[str, object] | None = None, model: bytes | None = None) -> None:
    with zipfile.ZipFile(path) as zf:
        old_meta, old_model = json.loads(zf.read("metadata.json")), zf.read("model.skops")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({**old_meta, **(meta or {})}))
        zf.writestr("model.skops", old_model if model is None else model)


def test_missing_or_corrupt_files_raise_config_error(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_scorer(tmp_path / "nope.zip")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ConfigError, match="not a valid artifact"):
        load_scorer(junk)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(artifact.read_bytes()[:2000])
    with pytest.raises(ConfigError):
        load_scorer(truncated)


def test_tampered_model_raises_config_error(artifact: Path) -> None:
    with zipfile.ZipFile(artifact) as zf:
        model = bytearray(zf.read("model.skops"))
    model[len(model) // 2] ^= 0xFF
    _rewrite(artifact, model=bytes(model))
    with pytest.raises(ConfigError, match="checksum"):
        load_scorer(artifact)


def test_untrusted_types_are_refused(artifact: Path) -> None:
    import collections
    import hashlib

    evil = sio.dumps({"featurizer": collections.Counter(a=1), "classifiers": []})
    _rewrite(artifact, {"model_sha256": hashlib.sha256(evil).hexdigest()}, model=evil)
    with pytest.raises(ConfigError, match="untrusted"):
        load_scorer(artifact)


def test_wrong_feature_version_raises_config_error(artifact: Path) -> None:
    _rewrite(artifact, {"feature_version": "f0"})
    with pytest.raises(ConfigError, match="retrain"):
        load_scorer(artifact)


def test_wrong_format_raises_config_error(artifact: Path) -> None:
    _rewrite(artifact, {"format": "something-else/9"})
    with pytest.raises(ConfigError, match="format"):
        load_scorer(artifact)


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(label="needs", word_ngrams=3, short_words=True, min_df=2),
        TrainConfig(label="needs", word_ngrams=3, short_words=True, word_vocabulary=True),
        TrainConfig(label="needs", char_features=2**10),
        TrainConfig(label="needs", word_ngrams=0),  # numeric features only
    ],
)
def test_other_feature_blocks_round_trip(config: TrainConfig, tmp_path: Path) -> None:
    prompts, toks, quality = synthetic(30)
    m = fit_scorer(prompts, toks, quality, config=config)
    save_scorer(m, tmp_path / "m.zip")
    probe = [EASY.format("new"), HARD.format("new")]
    assert np.array_equal(score(load_scorer(tmp_path / "m.zip"), probe), score(m, probe))
    if config.word_ngrams:
        assert score(m, probe)[1] > score(m, probe)[0]


def test_vocabulary_keeps_one_character_words() -> None:
    # Only a single digit tells the two kinds apart (the default token pattern drops it).
    prompts = [f"add the numbers {d} please" for d in "1234" * 10]
    quality = np.array([[0.0, 1.0] if p.split()[3] in "12" else [1.0, 1.0] for p in prompts])
    config = TrainConfig(label="needs", short_words=True)
    m = fit_scorer(prompts, tokens(prompts), quality, config=config)
    s = score(m, ["add the numbers 1 please", "add the numbers 3 please"])
    assert s[0] > 0.5 > s[1]


def test_tiny_training_set_without_shared_words_still_fits() -> None:
    prompts = ["alpha beta", "gamma delta", "epsilon zeta", "eta theta"]
    quality = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    for vocabulary in (False, True):
        config = TrainConfig(label="needs", min_df=2, word_vocabulary=vocabulary)
        m = fit_scorer(prompts, tokens(prompts), quality, config=config)
        assert score(m, ["gamma delta", "alpha beta"]).shape == (2,)


def test_min_df_zeroes_the_idf_of_rare_hashed_ngrams() -> None:
    prompts, toks, quality = synthetic(20)  # "w0" … "w19": each in 2 prompts
    prompts = [*prompts, "a singleton zebra", "a singleton zebra"[::-1]]
    quality = np.vstack([quality, [[1.0, 1.0], [0.0, 1.0]]])
    toks = tokens(prompts)
    idf = {}
    for min_df in (1, 3):
        m = fit_scorer(prompts, toks, quality, config=TrainConfig(label="needs", min_df=min_df))
        idf[min_df] = m.parts()["featurizer"].named_transformers_["word"][-1].idf_
    kept = idf[3] > 0
    assert kept.sum() < (idf[1] > 0).sum()
    assert np.allclose(idf[3][kept], idf[1][kept])
