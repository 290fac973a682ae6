"""Routing decisions per second: ``python -m tests.benchmarks.router [--prompts N]``.

Runs :func:`routing.router.route_batch` (o200k token counts, polars features, the
heuristic score, thresholds, rules/entitlements/PII of the governed example policy,
dedupe fingerprints) over the shared corpus repeated to N prompts (default 1,000,000),
in batches of the pipeline's chunk size, on one core — side by side in the same run with
a bare polars pass that reads the same text (``str.len_bytes().sum()``). Prints one JSON
line: prompts/s of both, their ratio, and the share of time in each stage.
"""

from __future__ import annotations

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core, as the target says; before import

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from routing.classify import HeuristicScorer
from routing.features import compute_features
from routing.policy import load_policy
from routing.router import route_batch
from routing.tokens import count_tokens

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "data" / "prompts" / "corpus.parquet"
POLICY = ROOT / "infra" / "policies" / "governed.yaml"


def _prompts(n: int) -> tuple[list[str], str]:
    if CORPUS.is_file():
        base = pl.read_parquet(CORPUS, columns=["prompt"])["prompt"].to_list()
        data = "corpus"
    else:
        from producer.sample import sample_prompts

        base = [p for p in sample_prompts(20_000).column("prompt").to_pylist() if p]
        data = "sample (corpus absent)"
    reps = -(-n // len(base))
    return (base * reps)[:n], data


def _time(fn, *args) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=2000, help="rows per route_batch call")
    args = parser.parse_args()
    prompts, data = _prompts(args.prompts)
    policy, scorer = load_policy(POLICY), HeuristicScorer()
    batches = [prompts[i : i + args.batch] for i in range(0, len(prompts), args.batch)]
    tables = [
        pa.table(
            {
                "prompt_id": [f"p{i}-{j}" for j in range(len(b))],
                "prompt": b,
                "tenant": ["acme"] * len(b),
                "customer_tier": ["pro"] * len(b),
            }
        )
        for i, b in enumerate(batches)
    ]
    text = pl.Series("prompt", prompts)
    bare = _time(lambda: text.str.len_bytes().sum())
    routed = _time(lambda: [route_batch(t, policy, scorer) for t in tables])
    sample = batches[: max(1, len(batches) // 20)]  # stage shares on a 5% sample
    feats = [compute_features(pl.Series(b)) for b in sample]
    stages = {
        "tokens": _time(lambda: [count_tokens(b) for b in sample]),
        "features": _time(lambda: [compute_features(pl.Series(b)) for b in sample]),
        "score": _time(lambda: [scorer.score(f, np.ones(f.height)) for f in feats]),
    }
    total_sample = _time(lambda: [route_batch(t, policy, scorer) for t in tables[: len(sample)]])
    rev = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(
        json.dumps(
            {
                "benchmark": "router",
                "prompts": len(prompts),
                "batch": args.batch,
                "data": data,
                "prompts_per_s": round(len(prompts) / routed, 1),
                "bare_polars_prompts_per_s": round(len(prompts) / bare, 1),
                "ratio": round(bare / routed, 6),
                "stage_share_of_route_batch": {
                    k: round(v / total_sample, 3) for k, v in stages.items()
                },
                "polars_threads": pl.thread_pool_size(),
                "git_rev": rev,
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
