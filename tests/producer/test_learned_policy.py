"""A policy that names a learned router: the job copies the model, every row is scored by
it (``classifier_version`` says so), and a missing or damaged model fails the submission
before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from routing.learned.artifact import save_scorer
from routing.learned.config import TrainConfig
from routing.learned.training import fit_scorer
from routing.policy import load_policy
from tests import policies
from tests.cli import CliRunner, assert_clean_error

pytestmark = pytest.mark.e2e

EASY = "what colour is the {} cat?"
HARD = "prove the theorem on the integral of the {} polynomial and derive every step"


def _train(path: Path) -> str:
    words = [f"w{i}" for i in range(40)]
    prompts = [EASY.format(w) for w in words] + [HARD.format(w) for w in words]
    quality = np.array([[1.0, 1.0]] * 40 + [[0.0, 1.0]] * 40)
    tokens = np.array([len(p.split()) for p in prompts], dtype=np.int64)
    model = fit_scorer(
        prompts, tokens, quality, config=TrainConfig(label="needs"), tiers=[["w", "s"]]
    )
    save_scorer(model, path)
    return model.version


def _policy(tmp_path: Path, model_path: str) -> Path:
    return policies.write(
        tmp_path / "policy.yaml", classifier=policies.learned_classifier(model_path)
    )


def test_policy_resolves_a_relative_model_path(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path, "models/router.zip"))
    assert policy.classifier.kind == "learned"
    assert policy.classifier.path == str(tmp_path / "models" / "router.zip")


def test_job_is_scored_by_the_learned_router(tmp_path: Path, cli: CliRunner) -> None:
    version = _train(tmp_path / "router.zip")
    _policy(tmp_path, "router.zip")
    proc = cli("run", "--sample", "200", "--output", "out", "--policy", "policy.yaml", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["classifier_version"] == version
    root = tmp_path / "out" / f"job_id={manifest['job_id']}"
    # the job holds its own copy of the model, byte for byte
    assert (root / "_job" / "classifier.zip").read_bytes() == (tmp_path / "router.zip").read_bytes()
    table = pa.concat_tables(
        [pq.read_table(p) for p in sorted((root / "results").glob("part-*.parquet"))],
        promote_options="default",
    )
    assert table.num_rows == 200
    routed = table.filter(pa.compute.equal(table.column("status"), "ok")).to_pydict()
    assert set(routed["classifier_version"]) == {version}
    scores = np.array(routed["complexity_score"])
    assert scores.min() >= 0 and scores.max() <= 1
    # the learned scores drive the decision; the reason quotes them
    for score, reason in zip(scores[:20], routed["route_reason"][:20], strict=True):
        assert f"score {score:.3f}" in reason


def test_missing_model_is_a_clean_error(tmp_path: Path, cli: CliRunner) -> None:
    _policy(tmp_path, "nowhere.zip")
    proc = cli("run", "--sample", "50", "--output", "out", "--policy", "policy.yaml")
    assert_clean_error(proc, "nowhere.zip", "no such file")
    assert not list((tmp_path / "out").glob("job_id=*/_job/plan.json"))


def test_damaged_model_is_a_clean_error(tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "router.zip").write_bytes(b"not a zip")
    _policy(tmp_path, "router.zip")
    proc = cli("run", "--sample", "50", "--output", "out", "--policy", "policy.yaml")
    assert_clean_error(proc, "router.zip")


def test_heuristic_takes_no_path(tmp_path: Path, cli: CliRunner) -> None:
    heuristic = {**policies.default_data()["classifier"], "path": "x.zip"}  # kind: heuristic
    policies.write(tmp_path / "policy.yaml", classifier=heuristic)
    proc = cli("run", "--sample", "50", "--output", "out", "--policy", "policy.yaml")
    assert_clean_error(proc, "classifier", "kind: learned")
