"""The learned scorer's sentence-embedding block (routing/embedding.py) with the real
all-MiniLM-L6-v2 weights: what the vectors are, that a scorer trained with them saves,
loads and scores the same, and that other weights or a missing model are refused."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import skops.io as sio

from routing import embedding
from routing.embedding import (
    MODEL,
    NeighbourVote,
    SentenceEmbedding,
    embed,
    model_dir,
    weights_sha256,
)
from routing.errors import ConfigError
from routing.features import compute_features
from routing.learned.artifact import TRUSTED_TYPES, load_scorer, save_scorer
from routing.learned.config import TrainConfig
from routing.learned.training import fit_scorer
from tests.embeddings import EASY, HARD, require_embeddings

require_embeddings()

WORDS = ["red", "small", "old", "happy", "quiet", "tall", "lazy", "green", "young", "fast"]


def _scorer(config: TrainConfig | None = None):  # type: ignore[no-untyped-def]
    prompts = [EASY.format(w) for w in WORDS] + [HARD.format(w) for w in WORDS]
    quality = np.array([[1.0, 1.0]] * len(WORDS) + [[0.0, 1.0]] * len(WORDS))
    tokens = np.array([len(p.split()) for p in prompts], dtype=np.int64)
    config = config or TrainConfig(label="needs", embedding=MODEL)
    return fit_scorer(prompts, tokens, quality, config=config, tiers=[["w", "s"]])


def _score(scorer, prompts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    texts = pl.Series("prompt", prompts)
    tokens = np.array([len(p.split()) for p in prompts])
    return np.asarray(scorer.score_texts(texts, compute_features(texts), tokens))


def test_vectors_are_unit_length_deterministic_and_cached() -> None:
    texts = ["The cat sat on the mat.", None, "The cat sat on the mat.", "Derive Stokes' theorem."]
    vectors, sha = embed(MODEL, texts)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[2])
    assert np.array_equal(vectors[1], embed(MODEL, [""])[0][0])  # a null is the empty text
    # similar sentences are closer than unrelated ones
    near = embed(MODEL, ["A cat is sitting on a rug."])[0][0]
    assert float(vectors[0] @ near) > float(vectors[3] @ near) + 0.2
    assert len(sha) == 64 and embedding._key(sha, "The cat sat on the mat.") in embedding._cache
    cached = embedding._cache[embedding._key(sha, "The cat sat on the mat.")]
    assert cached.base is None  # its own copy, not a view keeping the whole batch alive


def test_unknown_or_missing_models_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="not a bundled model"):
        model_dir("no-such-model")
    # a path is never loaded, even the bundled model's own directory: an artifact names its
    # model, and must not point a worker at a directory of its choosing
    with pytest.raises(ConfigError, match="not given as paths"):
        model_dir(str(model_dir(MODEL)))
    monkeypatch.setitem(embedding.BUNDLED, "ghost", ("no_such_package_here", "path"))
    with pytest.raises(ConfigError, match=r"batch-router\[embeddings\]"):
        model_dir("ghost")


def test_trained_scorer_ranks_and_round_trips(tmp_path: Path) -> None:
    scorer = _scorer()
    easy, hard = [EASY.format("blue")], [HARD.format("blue")]
    assert _score(scorer, hard)[0] > _score(scorer, easy)[0]
    assert scorer.metadata["config"]["embedding"] == MODEL
    path = tmp_path / "router.zip"
    save_scorer(scorer, path)
    loaded = load_scorer(path)
    probe = [EASY.format("pink"), HARD.format("pink"), "", "Translate 'good night' to French."]
    assert np.array_equal(_score(loaded, probe), _score(scorer, probe))


def test_the_embedding_block_changes_the_scores() -> None:
    """With the block on, the scores differ from the same model without it."""
    probe = ["Summarise the causes of the French revolution.", "What is 2 + 2?"]
    on = _score(_scorer(), probe)
    off = _score(_scorer(TrainConfig(label="needs")), probe)
    assert not np.allclose(on, off)


def test_other_weights_are_refused_at_load(tmp_path: Path) -> None:
    scorer = _scorer()
    block = scorer.parts()["featurizer"].named_transformers_["embedding"]
    assert isinstance(block, SentenceEmbedding)
    block.weights_sha256_ = "0" * 64  # as if trained on another copy of the model
    path = tmp_path / "router.zip"
    save_scorer(scorer, path)
    with pytest.raises(ConfigError, match="retrain") as err:
        load_scorer(path)
    assert str(path.resolve()) in str(err.value)
    with pytest.raises(ConfigError, match="retrain"):
        block.transform(["x"])


def test_artifact_holds_no_weights_and_only_trusted_types(tmp_path: Path) -> None:
    """The artifact names the model and its hash; the 90 MB of weights stay in the package."""
    path = tmp_path / "router.zip"
    save_scorer(_scorer(), path)
    assert path.stat().st_size < 5_000_000
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["metadata.json", "model.skops"]
    model = zipfile.ZipFile(path).read("model.skops")
    assert set(sio.get_untrusted_types(data=model)) <= set(TRUSTED_TYPES)


def test_neighbour_vote_is_the_weighted_share_above_each_cut() -> None:
    texts = ["alpha beta gamma", "the cat sat", "integral of x squared", "prove Fermat"]
    levels = np.array([0, 1, 2, 2])
    vote = NeighbourVote(MODEL, k=1).fit(texts, levels, np.ones(4), cuts=2)
    # each training text is its own nearest neighbour
    assert np.array_equal(vote.cumulative(texts), [[0, 0], [1, 0], [1, 1], [1, 1]])
    everyone = NeighbourVote(MODEL, k=99).fit(texts, levels, [1.0, 1.0, 1.0, 5.0], cuts=2)
    # k is clipped to the training set; weights count: (1 + 1 + 5) / 8 and (1 + 5) / 8
    assert np.allclose(everyone.cumulative(["anything"]), [[7 / 8, 6 / 8]])
    assert vote.vectors_.dtype == np.float16 and vote.levels_.dtype == np.int8


def test_scorer_blends_the_vote_and_can_leave_it_out() -> None:
    with_vote = _scorer()
    assert isinstance(with_vote.parts()["neighbours"], NeighbourVote)
    without = _scorer(TrainConfig(label="needs", embedding=MODEL, neighbours=0))
    assert without.parts()["neighbours"] is None
    probe = [EASY.format("blue"), HARD.format("blue")]
    assert not np.allclose(_score(with_vote, probe), _score(without, probe))
    assert with_vote.version != without.version  # another config, another classifier_version


def test_a_vote_on_other_weights_is_refused_at_load(tmp_path: Path) -> None:
    scorer = _scorer()
    scorer.parts()["neighbours"].weights_sha256_ = "1" * 64
    save_scorer(scorer, tmp_path / "router.zip")
    with pytest.raises(ConfigError, match="retrain"):
        load_scorer(tmp_path / "router.zip")


def test_a_vote_that_does_not_fit_the_model_is_refused_at_load(tmp_path: Path) -> None:
    """Damaged or hostile ``neighbours`` parts fail at load as ConfigError, not mid-job."""
    scorer = _scorer()
    path = tmp_path / "router.zip"

    def rewrite(neighbours: object) -> None:
        save_scorer(scorer, path)
        parts = {**scorer.parts(), "neighbours": neighbours}
        model = sio.dumps(parts, compression=zipfile.ZIP_DEFLATED)
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("metadata.json"))
        meta["model_sha256"] = hashlib.sha256(model).hexdigest()
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("metadata.json", json.dumps(meta))
            zf.writestr("model.skops", model)

    rewrite(np.zeros(3))
    with pytest.raises(ConfigError, match="not a NeighbourVote"):
        load_scorer(path)
    narrow = NeighbourVote(MODEL).fit(["a", "b"], [0, 1], [1.0, 1.0], cuts=1)
    narrow.vectors_ = narrow.vectors_[:, :10]  # another width than the model's vectors
    rewrite(narrow)
    with pytest.raises(ConfigError, match="cannot load the model"):
        load_scorer(path)
    wrong_cuts = NeighbourVote(MODEL).fit(["a", "b"], [0, 1], [1.0, 1.0], cuts=2)
    rewrite(wrong_cuts)
    with pytest.raises(ConfigError, match="does not match the model"):
        load_scorer(path)


def test_an_artifact_keeps_the_version_it_was_saved_with(tmp_path: Path) -> None:
    """Artifacts saved before the config was hashed into the version keep their version."""
    path = tmp_path / "router.zip"
    save_scorer(_scorer(), path)
    with zipfile.ZipFile(path) as zf:
        meta, model = json.loads(zf.read("metadata.json")), zf.read("model.skops")
    meta["classifier_version"] = "learned-1/0ld0ld00"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps(meta))
        zf.writestr("model.skops", model)
    loaded = load_scorer(path)
    assert loaded.version == "learned-1/0ld0ld00"
    assert loaded.with_metadata(fingerprint="e" * 64).version != loaded.version


def test_the_model_hash_covers_what_shapes_the_vectors(tmp_path: Path) -> None:
    """Same weights with another pooling config is another model; its README is not."""
    source = model_dir(MODEL)
    copy = tmp_path / "model"
    for path in source.rglob("*"):
        target = copy / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix in (".safetensors", ".bin"):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)  # the 90 MB of weights, not copied
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    original = weights_sha256(source)
    assert weights_sha256(copy) == original
    (copy / "README.md").write_text("edited")
    assert weights_sha256(copy) == original
    pooling = copy / "1_Pooling" / "config.json"
    pooling.write_text(
        pooling.read_text().replace(
            '"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": false'
        )
    )
    assert weights_sha256(copy) != original
