"""``batch-router train --embedding`` as a user runs it: the artifact records the model,
``eval`` scores with it, a job is routed by it, and a wrong model name is one clean line."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import polars as pl
import pytest

from tests import policies
from tests.cli import CliRunner, assert_clean_error
from tests.embeddings import require_embeddings
from tests.producer.labels import WEAK, write_labels

require_embeddings()

pytestmark = pytest.mark.e2e


def test_train_eval_and_run_with_embeddings(tmp_path: Path, cli: CliRunner) -> None:
    write_labels(tmp_path / "labels.parquet", "mmlu", n=60)
    spec = f"labels.parquet:{WEAK},strong-x"
    proc = cli(
        "train", spec, "--out", "router.zip", "--folds", "3", "--embedding", "all-MiniLM-L6-v2"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Loading weights" not in proc.stderr  # no progress bars from the model loader

    meta = json.loads(zipfile.ZipFile(tmp_path / "router.zip").read("metadata.json"))
    assert meta["config"]["embedding"] == "all-MiniLM-L6-v2"
    assert meta["config"]["embedding_weight"] == 0.5
    # 'hard' prompts need the strong model 90 % of the time: the router must see it
    assert meta["metrics"]["cv"]["mmlu"]["auc"] > 0.8

    ev = cli(
        "eval", "labels.parquet", "--weak", WEAK, "--strong", "strong-x",
        "--router", "router.zip", "--json",
    )  # fmt: skip
    assert ev.returncode == 0, ev.stdout + ev.stderr
    assert json.loads(ev.stdout)["apgr"] > 0.7  # on its training prompts: wiring, not skill

    policies.write(tmp_path / "policy.yaml", classifier=policies.learned_classifier("router.zip"))
    run = cli("run", "--sample", "100", "--output", "out", "--policy", "policy.yaml", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = json.loads(run.stdout)
    assert manifest["classifier_version"] == meta["classifier_version"]
    root = tmp_path / "out" / f"job_id={manifest['job_id']}"
    rows = pl.concat(
        [pl.read_parquet(p) for p in sorted((root / "results").glob("part-*.parquet"))],
        how="diagonal_relaxed",
    )
    assert rows.height == 100
    ok = rows.filter(pl.col("status") == "ok")
    assert ok.height > 0
    assert set(ok.get_column("classifier_version")) == {meta["classifier_version"]}


def test_unknown_embedding_model_is_one_line(tmp_path: Path, cli: CliRunner) -> None:
    write_labels(tmp_path / "labels.parquet", "mmlu", n=20)
    proc = cli(
        "train", f"labels.parquet:{WEAK},strong-x", "--out", "router.zip",
        "--embedding", "no-such-model",
    )  # fmt: skip
    assert_clean_error(proc, "no-such-model", "not a bundled model")
    assert not (tmp_path / "router.zip").exists()
