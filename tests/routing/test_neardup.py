"""Near-duplicates (routing.neardup): MinHash LSH candidates, exact Jaccard, guards; and
the false-hit measurement of docs/dedupe.md on the shared corpus."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from routing.classify import HeuristicScorer
from routing.dedupe import CANONICAL, DedupeSpec, NearDupSpec, mark_duplicates
from routing.neardup import docs_of, find, jaccard, shingles
from routing.policy import load_policy
from routing.router import route_batch

BASE = (
    "Summarise the following customer review in two sentences and say whether the "
    "customer would buy again: the delivery was late but the product itself works very "
    "well, the battery lasts all day and support answered my questions quickly."
)
ON = DedupeSpec(near_duplicates=NearDupSpec(enabled=True))
REUSE = DedupeSpec(near_duplicates=NearDupSpec(enabled=True, reuse=True))


def _find(texts: list[str], threshold: float = 0.95, groups: list[str] | None = None) -> list:
    return find(docs_of(pl.Series(texts), groups or [""] * len(texts)), threshold)


def test_shingles_are_word_and_symbol_trigrams() -> None:
    assert shingles("a b c d") == {"a b c", "b c d"}
    assert shingles("x+y") == {"x + y"}
    assert shingles("") == {""}
    assert jaccard(frozenset({"a"}), frozenset({"a", "b"})) == 0.5


def test_a_small_edit_of_a_long_prompt_is_a_near_duplicate() -> None:
    variant = BASE.replace("quickly.", "quickly!!").replace("Summarise", "summarise")
    assert _find([BASE, "Something else entirely.", variant], threshold=0.85) == [-1, -1, 0]
    assert _find([BASE, variant], threshold=0.95) == [-1, -1]  # ~0.88: below the default


def test_a_changed_number_or_option_is_never_a_near_duplicate() -> None:
    question = BASE + " Rate it from 1 to 5.\nA. yes\nB. no\nC. maybe\nD. unsure\nAnswer:"
    number = question.replace("1 to 5", "1 to 6")
    option = question.replace("C. maybe", "C. perhaps")
    assert _find([question, number, option], threshold=0.8) == [-1, -1, -1]


def test_different_scope_or_system_prompt_is_not_matched() -> None:
    variant = BASE + "!"
    assert _find([BASE, variant], groups=["acme\x1f", "globex\x1f"]) == [-1, -1]
    assert _find([BASE, variant], groups=["t\x1fbe brief", "t\x1fbe brief"]) == [-1, 0]


def test_rows_point_at_a_representative_not_at_a_flagged_row() -> None:
    texts = [BASE, BASE + " Thanks", BASE + " Thanks again"]
    found = _find(texts, threshold=0.9)
    assert found[1] == 0 and found[2] in (0, -1)


def test_mark_duplicates_flags_near_duplicates_only_when_enabled() -> None:
    df = pl.DataFrame(
        {
            "prompt_id": ["a", "b", "c", "d"],
            "prompt": [BASE, BASE + "!", "  " + BASE + "!", "Unrelated."],
            "system": [None] * 4,
        }
    )
    assert mark_duplicates(df)["near_dup_of"].null_count() == 4
    flagged = mark_duplicates(df, ON)
    assert flagged["near_dup_of"].to_list() == [None, "a", None, None]
    assert flagged["dedupe_of"].to_list() == [None, None, "b", None]  # exact stays exact
    reused = mark_duplicates(df, REUSE)
    assert reused["dedupe_of"].to_list() == [None, "a", "a", None]
    assert reused[CANONICAL].to_list() == [0, 0, 0, 3]


def test_reuse_sends_a_near_duplicate_with_its_representative() -> None:
    policy = load_policy().model_copy(update={"dedupe": REUSE})
    table = pa.table(
        {"prompt_id": ["a", "b", "c"], "prompt": [BASE, BASE + " please!", "Short one."]}
    )
    out = route_batch(table, policy, HeuristicScorer(), memo=None, decisions=None).to_pydict()
    assert out["near_dup_of"] == [None, "a", None]
    assert out["dedupe_of"] == [None, "a", None]
    assert out["tier"][1] == out["tier"][0]


# ---------------------------------------------------------------- measured on the corpus

_NUM = re.compile(r"\d+")
_OPT = re.compile(r"^([A-D]\. )(.*)$", re.MULTILINE)


def _number_variant(rng: random.Random, prompt: str) -> str | None:
    found = list(_NUM.finditer(prompt))
    if not found:
        return None
    m = rng.choice(found)
    return prompt[: m.start()] + str(int(m.group()) + 1) + prompt[m.end() :]


def _option_variant(rng: random.Random, prompt: str, pool: list[str]) -> str | None:
    found = list(_OPT.finditer(prompt))
    if not found:
        return None
    m = rng.choice(found)
    others = [o.group(2) for o in _OPT.finditer(rng.choice(pool)) if o.group(2) != m.group(2)]
    return prompt[: m.start(2)] + rng.choice(others) + prompt[m.end(2) :] if others else None


def test_false_hit_rate_on_the_corpus(corpus_path: Path) -> None:
    """Variants that must not merge: one number +1 (MMLU, GSM8K) or one MMLU answer option
    replaced by another question's option. Counted at the default threshold, with the
    guards and (for comparison) on Jaccard alone; plus the corpus's own near-duplicates."""
    threshold = NearDupSpec().threshold
    corpus = pl.read_parquet(corpus_path).unique("prompt", keep="first", maintain_order=True)
    rng = random.Random(1)
    mmlu = corpus.filter(pl.col("source") == "mmlu")["prompt"].to_list()
    gsm8k = corpus.filter(pl.col("source").str.starts_with("gsm8k"))["prompt"].to_list()
    pairs: list[tuple[str, str, str | None]] = []
    for p in rng.sample(mmlu, 2000):
        pairs += [("mmlu-number", p, _number_variant(rng, p))]
        pairs += [("mmlu-option", p, _option_variant(rng, p, mmlu))]
    pairs += [("gsm8k-number", p, _number_variant(rng, p)) for p in rng.sample(gsm8k, 1000)]
    figures: dict[str, dict[str, int]] = {}
    for kind, a, b in pairs:
        if b is None or b == a:
            continue
        da, db = docs_of(pl.Series([a, b]), ["", ""])
        close = jaccard(da.shingles, db.shingles) >= threshold
        row = figures.setdefault(kind, {"pairs": 0, "jaccard_only_hits": 0, "false_hits": 0})
        row["pairs"] += 1
        row["jaccard_only_hits"] += close
        row["false_hits"] += int(close and da.guard == db.guard)
    natural = find(docs_of(corpus["prompt"], [""] * corpus.height), threshold)
    pairs_found = [(corpus["prompt_id"][j], corpus["prompt_id"][i]) for i, j in
                   enumerate(natural) if j >= 0]  # fmt: skip
    print(json.dumps({"threshold": threshold, "variants": figures, "natural_pairs": pairs_found}))
    assert sum(f["pairs"] for f in figures.values()) > 3000
    assert all(f["false_hits"] == 0 for f in figures.values())
    assert sum(f["jaccard_only_hits"] for f in figures.values()) > 0  # the guards matter
    assert len(pairs_found) < corpus.height * 0.01
    assert np.all(np.asarray(natural) < np.arange(corpus.height))


@pytest.mark.parametrize("threshold", [0.4, 1.5])
def test_threshold_is_validated(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        NearDupSpec(threshold=threshold)
