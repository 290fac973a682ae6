"""Small synthetic label files for the ``train`` / ``eval`` tests (long format: one row per
prompt and model, as the shared labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

WEAK = "mixtral-8x7b-instruct-v0.1"


def write_labels(path: Path, dataset: str, n: int = 40, seed: int = 0) -> Path:
    """A small long-format labels file: 'hard' prompts need the strong model."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        hard = i % 2 == 1
        text = (
            f"prove the {dataset} theorem {i} and derive every step of the integral"
            if hard
            else f"what is the capital of country {i} in {dataset}?"
        )
        q_weak = 0.0 if hard and rng.random() < 0.9 else 1.0
        for model, q, price in ((WEAK, q_weak, 1e-6), ("strong-x", 1.0, 1e-5)):
            rows.append(
                {
                    "dataset": dataset,
                    "prompt_id": f"{dataset}-{i}",
                    "prompt": text,
                    "kind": "synthetic",
                    "model": model,
                    "quality": q,
                    "input_tokens": 12,
                    "output_tokens": 5,
                    "cost_usd": 17 * price,
                }
            )
    pl.DataFrame(rows).write_parquet(path)
    return path
