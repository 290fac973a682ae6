"""The quick-start sample: deterministic, valid input, and the mix its docstring promises."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

from producer.sample import sample_prompts
from routing.validate import check_schema


def _kind(prompt: str | None) -> str:
    if not prompt:
        return "bad"
    if "```" in prompt:
        return "code"
    if "A shop sells" in prompt or "Solve for x" in prompt:
        return "math"
    if "Compare and contrast" in prompt:
        return "analysis"
    return "fact"


def test_same_seed_same_prompts() -> None:
    assert sample_prompts(500).equals(sample_prompts(500))
    assert sample_prompts(500, seed=3).equals(sample_prompts(500, seed=3))
    assert not sample_prompts(500, seed=3).equals(sample_prompts(500))


@pytest.mark.parametrize("n", [10, 300, 1001])
def test_shape_and_ids(n: int) -> None:
    table = sample_prompts(n)
    assert table.num_rows == n
    assert table.schema.field("prompt").type == pa.string()
    check_schema(table.schema, "sample")  # a valid job input
    ids = table.column("prompt_id").to_pylist()
    assert ids == [f"sample-{i:06d}" for i in range(n)]  # unique and in order


def test_exactly_two_bad_rows() -> None:
    prompts = sample_prompts(2000).column("prompt").to_pylist()
    assert prompts[0] == "" and prompts[1] is None
    assert [i for i, p in enumerate(prompts) if not (p and p.strip())] == [0, 1]


def test_documented_mix() -> None:
    """Many short factual/extraction prompts, fewer math and code, a few long analyses."""
    n = 4000
    prompts = sample_prompts(n).column("prompt").to_pylist()
    share = {k: v / n for k, v in Counter(map(_kind, prompts)).items()}
    for kind, expected in {"fact": 0.55, "math": 0.20, "code": 0.15, "analysis": 0.10}.items():
        assert share[kind] == pytest.approx(expected, abs=0.03), share
    chars = {k: [len(p) for p in prompts if _kind(p) == k] for k in ("fact", "analysis")}
    assert max(chars["fact"]) < min(chars["analysis"])  # analyses are the long ones


def test_exact_repeats_for_dedupe() -> None:
    n = 2000
    prompts = sample_prompts(n).column("prompt").to_pylist()
    repeats = sum(1 for i in range(2, n) if prompts[i] == prompts[i - 1])
    assert repeats >= 0.9 * (n // 20)  # about one row in twenty repeats its predecessor
