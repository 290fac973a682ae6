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


def write_answered(
    labels: Path, responses: Path, dataset: str, n: int = 60, seed: int = 0
) -> tuple[Path, Path]:
    """Labels whose prompts all read alike (a prompt-only router cannot tell them apart) and
    the weak model's answers, which show where it failed: a hedged, cut-off answer."""
    rng = np.random.default_rng(seed)
    rows, answers = [], []
    for i in range(n):
        wrong = rng.random() < 0.4
        pid = f"{dataset}-{i}"
        text = f"Question {i} of {dataset}: how many apples are left in basket {i % 7}?"
        for model, q, price in ((WEAK, 0.0 if wrong else 1.0, 1e-6), ("strong-x", 1.0, 1e-5)):
            rows.append(
                {
                    "dataset": dataset,
                    "prompt_id": pid,
                    "prompt": text,
                    "model": model,
                    "quality": q,
                    "input_tokens": 20,
                    "cost_usd": 25 * price,
                }
            )
        answer = (
            "I'm not sure, maybe it is possibly around the number of baskets, I think"
            if wrong
            else f"There are 12 - 5 = 7 apples left.\n#### {7 + i % 3}"
        )
        answers.append({"dataset": dataset, "prompt_id": pid, "model": WEAK, "response": answer})
        answers.append({"dataset": dataset, "prompt_id": pid, "model": "strong-x", "response": "7"})
    pl.DataFrame(rows).write_parquet(labels)
    pl.DataFrame(answers).write_parquet(responses)
    return labels, responses
