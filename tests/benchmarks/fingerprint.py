"""Fingerprint + in-chunk dedupe per second: ``python -m tests.benchmarks.fingerprint``.

One core (``POLARS_MAX_THREADS=1`` before polars is imported). The shared corpus is
repeated to N prompts (default 1,000,000) and shuffled; side by side in the same run:

- ``ours``: :func:`routing.dedupe.mark_duplicates` over the N rows as one frame —
  NFKC + whitespace collapse, BLAKE2b-128 fingerprints, ``dedupe_of`` per row;
- ``python_set``: a Python ``set`` of ``hash()`` over the same strings (one ``str`` object
  per row, as read from Parquet), marking the rows whose hash was seen before.

Also measured (same code, reported, not the target): ``distinct`` — the corpus once, every
text new (the cost per distinct text), and ``chunked`` — the N rows in the pipeline's
2,000-row chunks (few repeats inside a chunk of shuffled rows); and ``near_dup_on`` /
``near_dup_off`` — the corpus once in 2,000-row chunks with near-duplicate detection on /
off (routing.neardup). Best of ``--repeat`` wall times. Prints one JSON line.
"""

from __future__ import annotations

import os

os.environ["POLARS_MAX_THREADS"] = "1"  # one core; must precede the polars import

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from routing.dedupe import DedupeSpec, NearDupSpec, mark_duplicates

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "data" / "prompts" / "corpus.parquet"


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _python_set(strings: list[str]) -> int:
    seen: set[int] = set()
    dups = 0
    for s in strings:
        h = hash(s)
        if h in seen:
            dups += 1
        else:
            seen.add(h)
    return dups


def _frame(corpus: pl.DataFrame, n: int) -> pl.DataFrame:
    reps = -(-n // corpus.height)
    return (
        pl.concat([corpus] * reps)
        .head(n)
        .sample(fraction=1.0, shuffle=True, seed=7)
        .with_columns(
            pl.format("r{}", pl.int_range(pl.len())).alias("prompt_id"),
            pl.lit(None, pl.String).alias("system"),
        )
        .rechunk()
    )


def _git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
        return rev.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if not CORPUS.is_file():
        sys.exit(f"shared corpus not found at {CORPUS}")
    corpus = pl.read_parquet(CORPUS, columns=["prompt"])
    frame = _frame(corpus, args.prompts)
    strings = frame.get_column("prompt").to_list()
    ours = _best(lambda: mark_duplicates(frame), args.repeat)
    python = _best(lambda: _python_set(strings), args.repeat)
    once = _frame(corpus, corpus.height)
    distinct = _best(lambda: mark_duplicates(once), args.repeat)
    chunks = [frame.slice(i, args.chunk) for i in range(0, frame.height, args.chunk)]
    chunked = _best(lambda: [mark_duplicates(c) for c in chunks], 1)
    marked = mark_duplicates(frame)
    near_spec = DedupeSpec(near_duplicates=NearDupSpec(enabled=True))
    once_chunks = [once.slice(i, args.chunk) for i in range(0, once.height, args.chunk)]
    plain = _best(lambda: [mark_duplicates(c) for c in once_chunks], 1)
    near = _best(lambda: [mark_duplicates(c, near_spec) for c in once_chunks], 1)
    line = {
        "benchmark": "fingerprint",
        "git_rev": _git_rev(),
        "polars": pl.__version__,
        "threads": pl.thread_pool_size(),
        "prompts": frame.height,
        "distinct_texts": corpus.get_column("prompt").n_unique(),
        "duplicates_marked": int(marked.get_column("dedupe_of").is_not_null().sum()),
        "python_set_duplicates": _python_set(strings),
        "ours_prompts_per_s": round(frame.height / ours),
        "python_set_prompts_per_s": round(frame.height / python),
        "ratio_ours_to_python": round(python / ours, 3),
        "distinct_prompts_per_s": round(once.height / distinct),
        "chunked_prompts_per_s": round(frame.height / chunked),
        "chunk_rows": args.chunk,
        "near_dup_off_prompts_per_s": round(once.height / plain),
        "near_dup_on_prompts_per_s": round(once.height / near),
        "mean_prompt_chars": round(float(corpus.get_column("prompt").str.len_chars().mean() or 0)),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
