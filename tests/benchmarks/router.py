"""Routing decisions per second: ``python -m tests.benchmarks.router [--prompts N]``.

Runs :func:`routing.router.route_batch` (o200k token counts, polars features, PII, the
heuristic score, thresholds, rules/entitlements of the governed example policy, dedupe
fingerprints) on one core, in batches of the pipeline's chunk size, twice:

- ``distinct``: one pass over the shared corpus with empty memos — every text new;
- the run: the corpus repeated to N prompts (default 1,000,000), from empty memos, so
  after the first pass every decision comes from the decision memo
  (routing.decision_memo); ``text_memo_only``: the first 200,000 of them without it
  (token counts, features, PII and gaming flags from the text memo; score, rules and
  dedupe computed).

Each is side by side in the same run with a bare polars pass that reads the same text
(``str.len_bytes().sum()``). Prints one JSON line: prompts/s of both, their ratio, and
the share of CPU time in each stage of route_batch without the decision memo, cold and
warm (over the corpus once).
"""

from __future__ import annotations

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core, as the target says; before import

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from routing.classify import HeuristicScorer
from routing.decision_memo import DecisionMemo
from routing.dedupe import mark_duplicates
from routing.features import compute_features
from routing.policy import load_policy
from routing.route import assign_tiers
from routing.router import TextMemo, _Batch, _decide, _scopes, route_batch
from routing.tokens import count_tokens

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "data" / "prompts" / "corpus.parquet"
POLICY = ROOT / "infra" / "policies" / "governed.yaml"


def _corpus() -> tuple[list[str], str]:
    if CORPUS.is_file():
        return pl.read_parquet(CORPUS, columns=["prompt"])["prompt"].to_list(), "corpus"
    from producer.sample import sample_prompts

    base = [p for p in sample_prompts(20_000).column("prompt").to_pylist() if p]
    return base, "sample (corpus absent)"


def _tables(prompts: list[str], batch: int) -> list[pa.Table]:
    chunks = [prompts[i : i + batch] for i in range(0, len(prompts), batch)]
    return [
        pa.table(
            {
                "prompt_id": [f"p{i}-{j}" for j in range(len(chunk))],
                "prompt": chunk,
                "tenant": ["acme"] * len(chunk),
                "customer_tier": ["pro"] * len(chunk),
            }
        )
        for i, chunk in enumerate(chunks)
    ]


def _route_all(
    tables: list[pa.Table],
    policy: Any,
    scorer: Any,
    memo: TextMemo | None,
    decisions: DecisionMemo | None = None,
) -> None:
    for table in tables:
        route_batch(table, policy, scorer, memo=memo, decisions=decisions)


def _time(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _bare(prompts: list[str]) -> float:
    text = pl.Series("prompt", prompts)
    return _time(lambda: text.str.len_bytes().sum())[0]


def _shares(stages: dict[str, Callable[[], Any]], total: float) -> dict[str, float]:
    """CPU time of each stage / ``total`` (CPU seconds): steadier than wall time when the
    machine is shared. ``rest``: whatever is not listed (Arrow/polars conversions)."""
    times = {name: _time(fn)[1] for name, fn in stages.items()}
    rest = 1 - sum(times.values()) / total
    return {**{k: round(v / total, 3) for k, v in times.items()}, "rest": round(rest, 3)}


def _stage_shares(tables: list[pa.Table], policy: Any, scorer: Any) -> dict[str, Any]:
    """Shares of route_batch time on ``tables``: cold (no memo: every text computed) and
    warm (every text's values from the memo)."""
    texts = [t.column("prompt").to_pylist() for t in tables]
    series = [pl.Series("prompt", t, dtype=pl.String) for t in texts]
    detector = policy.pii.detector()
    batches = [_Batch(t, policy, None) for t in tables]
    scores = [np.asarray(scorer.score(b.features, b.pair_tokens)) for b in batches]
    tiers = [assign_tiers(s, policy) for s in scores]
    frames = [
        pl.DataFrame([_scopes(t), pl.Series("prompt_id", t.column("prompt_id")), s]).with_columns(
            pl.lit(None, pl.String).alias("system"), pl.lit("fast").alias("tier")
        )
        for t, s in zip(tables, series, strict=True)
    ]

    def rules() -> None:
        for t, b, (tier, why) in zip(tables, batches, tiers, strict=True):
            score = (pl.Series(b.per_row(tier), dtype=pl.String), b.per_row(why))
            _decide(t, b.prompts, b.tokens, score, b.kinds, policy)

    common = {
        "score": lambda: [scorer.score(b.features, b.pair_tokens) for b in batches],
        "tiers": lambda: [assign_tiers(s, policy) for s in scores],
        "rules": rules,
        "dedupe": lambda: [mark_duplicates(f) for f in frames],
    }
    memo = TextMemo()
    _route_all(tables, policy, scorer, memo)
    cold = _time(lambda: _route_all(tables, policy, scorer, None))[1]
    warm = _time(lambda: _route_all(tables, policy, scorer, memo))[1]  # text memo only
    return {
        "cold": _shares(
            {
                "tokens": lambda: [count_tokens(t) for t in texts],
                "features": lambda: [compute_features(s) for s in series],
                "pii": lambda: [detector.detect(s) for s in series],
                **common,
            },
            cold,
        ),
        "warm": _shares(
            {
                "memo": lambda: [memo.values(t, features=True, pii=policy.pii) for t in texts],
                **common,
            },
            warm,
        ),
    }


def _git_rev() -> str:
    cmd = ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"]
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=2000, help="rows per route_batch call")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]  # other work on the machine skews the numbers
    base, data = _corpus()
    prompts = (base * -(-args.prompts // len(base)))[: args.prompts]
    policy, scorer = load_policy(POLICY), HeuristicScorer()
    first, tables = _tables(base, args.batch), _tables(prompts, args.batch)
    route_batch(first[0].slice(0, 10), policy, scorer, memo=None, decisions=None)  # warm-up

    memo, decisions = TextMemo(), DecisionMemo()  # what a worker process owns
    distinct, distinct_cpu = _time(lambda: _route_all(first, policy, scorer, memo, decisions))
    bare_distinct = _bare(base)
    memo.clear(), decisions.clear()
    routed, routed_cpu = _time(lambda: _route_all(tables, policy, scorer, memo, decisions))
    bare = _bare(prompts)
    decisions_kept = len(decisions)
    # The same without the decision memo (text memo only), on the first 200,000 prompts.
    some = tables[: max(1, 200_000 // args.batch)]
    memo.clear()
    text_only = _time(lambda: _route_all(some, policy, scorer, memo))[0]
    text_only_rows = sum(t.num_rows for t in some)
    shares = _stage_shares(first, policy, scorer)  # one pass over the corpus
    print(
        json.dumps(
            {
                "benchmark": "router",
                "prompts": len(prompts),
                "corpus_prompts": len(base),
                "corpus_distinct_texts": len(set(base)),
                "batch": args.batch,
                "data": data,
                "prompts_per_s": round(len(prompts) / routed, 1),
                "bare_polars_prompts_per_s": round(len(prompts) / bare, 1),
                "ratio": round(bare / routed, 6),
                "distinct_prompts_per_s": round(len(base) / distinct, 1),
                "distinct_bare_polars_prompts_per_s": round(len(base) / bare_distinct, 1),
                "distinct_ratio": round(bare_distinct / distinct, 6),
                "prompts_per_cpu_s": round(len(prompts) / routed_cpu, 1),
                "distinct_prompts_per_cpu_s": round(len(base) / distinct_cpu, 1),
                "text_memo_only_prompts_per_s": round(text_only_rows / text_only, 1),
                "memo_texts": len(memo),
                "memo_decisions": decisions_kept,
                "stage_share_of_route_batch": shares,
                "polars_threads": pl.thread_pool_size(),
                "git_rev": _git_rev(),
                "loadavg_1m_start": round(load_start, 2),
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
