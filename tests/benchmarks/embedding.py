"""Scoring speed of the learned router with and without sentence embeddings:
``python -m tests.benchmarks.embedding [--prompts 2000]``.

Both scorers are trained on GSM8K's labels in the same process, then score the same
``--prompts`` distinct prompts sampled from the shared corpus, side by side:

- ``default``: hashed word n-grams + numeric features (the default ``TrainConfig``);
- ``embedding``: ``TrainConfig(embedding="all-MiniLM-L6-v2")`` — the embedding block and the
  nearest-neighbour vote — with the per-process embedding cache emptied first (every
  prompt is embedded: the cost per distinct prompt);
- ``embedding_cached``: the same prompts again (served from the cache).

Features are computed beforehand (both scorers take them). torch uses its default thread
count (the machine's cores). Prints one JSON line; ``ratio`` = default / embedding.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
WEAK, STRONG = "mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000)
    args = parser.parse_args(argv)
    corpus, labels = DATA / "prompts" / "corpus.parquet", DATA / "labels" / "gsm8k.parquet"
    if not corpus.is_file() or not labels.is_file():
        print(f"shared data not found under {DATA}", file=sys.stderr)
        return 2
    try:
        from routing import embedding
        from routing.features import compute_features
        from routing.learned.config import TrainConfig
        from routing.learned.training import fit_scorer

        embedding.model_dir(embedding.MODEL)
    except Exception as exc:
        print(f"embeddings unavailable ({exc})", file=sys.stderr)
        return 2

    wide = pl.read_parquet(labels).pivot(
        on="model", index=["prompt_id", "prompt", "input_tokens"], values="quality"
    )
    train = (
        wide.get_column("prompt").to_list(),
        wide.get_column("input_tokens").to_numpy(),
        wide.select(WEAK, STRONG).to_numpy(),
    )
    sample = pl.read_parquet(corpus).unique("prompt").sample(args.prompts, seed=1)
    texts, tokens = sample.get_column("prompt"), sample.get_column("input_tokens").to_numpy()
    features = compute_features(texts)
    rates: dict[str, float] = {}
    for name, config in (
        ("default", TrainConfig()),
        ("embedding", TrainConfig(embedding=embedding.MODEL)),
    ):
        model = fit_scorer(*train, config=config)
        model.score_texts(texts[:8], features[:8], tokens[:8])  # warm: model loaded
        embedding._cache.clear()
        start = time.perf_counter()
        scores = model.score_texts(texts, features, tokens)
        rates[name] = len(texts) / (time.perf_counter() - start)
        if name == "embedding":
            start = time.perf_counter()
            again = model.score_texts(texts, features, tokens)
            rates["embedding_cached"] = len(texts) / (time.perf_counter() - start)
            assert np.array_equal(scores, again)
    result = {
        "benchmark": "embedding_scoring",
        "prompts": len(texts),
        **{f"{k}_prompts_per_s": round(v, 1) for k, v in rates.items()},
        "ratio": round(rates["default"] / rates["embedding"], 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
