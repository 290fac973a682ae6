"""A learned router with the sentence-embedding block on the real fleet: the ingest worker (a
forked Celery child) loads torch and the MiniLM weights itself and scores every row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from routing.embedding import MODEL
from routing.learned.artifact import save_scorer
from routing.learned.config import TrainConfig
from routing.learned.training import fit_scorer
from tests import policies, services
from tests.embeddings import EASY, HARD, require_embeddings
from workers.settings import S3Settings
from workers.storage import Storage

require_embeddings()

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_fleet_scores_with_an_embedding_router(
    bucket: str, fleet: dict, fleet_env: dict[str, str], tmp_path: Path
) -> None:
    words = [f"w{i}" for i in range(30)]
    prompts = [EASY.format(w) for w in words] + [HARD.format(w) for w in words]
    quality = np.array([[1.0, 1.0]] * 30 + [[0.0, 1.0]] * 30)
    model = fit_scorer(
        prompts,
        np.array([len(p.split()) for p in prompts]),
        quality,
        config=TrainConfig(label="needs", embedding=MODEL),
        tiers=[["w", "s"]],
    )
    save_scorer(model, tmp_path / "router.zip")
    classifier = policies.learned_classifier(tmp_path / "router.zip")
    policy = policies.write(tmp_path / "policy.yaml", classifier=classifier)
    rows = pl.DataFrame(
        {
            "prompt_id": [f"p{i}" for i in range(120)],
            "prompt": [(EASY if i % 2 else HARD).format(f"x{i}") for i in range(120)],
        }
    )
    rows.write_parquet(tmp_path / "in.parquet")
    endpoint = fleet_env["BATCH_ROUTER_S3__ENDPOINT_URL"]
    services.s3_client(endpoint).upload_file(str(tmp_path / "in.parquet"), bucket, "in/a.parquet")

    proc = services.submit(bucket, "e2e-embed", fleet_env, "--policy", str(policy), timeout=300)
    assert proc.returncode == 0, (
        proc.stdout + proc.stderr + "".join(p.log_tail() for p in fleet.values())
    )
    storage = Storage(
        S3Settings(
            endpoint_url=endpoint,
            access_key_id=services.S3_KEY,
            secret_access_key=services.S3_SECRET,
        )
    )
    out = pl.from_arrow(storage.read_parquet(f"s3://{bucket}/out/job_id=e2e-embed/results"))
    assert isinstance(out, pl.DataFrame)
    assert out.height == 120 and set(out["status"]) == {"ok"}
    assert set(out["classifier_version"]) == {model.version}
    # the hard prompts score above the easy ones, row by row of the job's own output
    hard = out.filter(pl.col("prompt").str.starts_with("prove"))["complexity_score"]
    easy = out.filter(pl.col("prompt").str.starts_with("what"))["complexity_score"]
    assert hard.min() > easy.max()
