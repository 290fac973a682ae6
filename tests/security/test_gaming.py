"""Complexity gaming (routing.gaming): each trick flagged, the false-positive rate on the
real corpus and the detection rate on generated gamed prompts measured, and the policy's
cap applied by routing — tier, reason and the allowed tiers dispatch may use."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from routing.classify import HeuristicScorer
from routing.errors import PolicyError
from routing.gaming import GAMING_KINDS, GamingSpec, detect_gaming
from routing.policy import Policy
from routing.router import ALLOWED, route_batch
from routing.rules import allowed_tiers
from tests import policies
from tests.security.gamed import QUESTIONS, gamed_prompts

pytestmark = pytest.mark.security

PLAIN = "What is the capital of France?"


def gaming_policy(**gaming: object) -> Policy:
    return policies.build(source="gaming-policy.yaml", gaming=gaming)


@pytest.mark.parametrize(
    ("kind", "prompt"),
    [
        ("invisible", PLAIN + "".join(chr(0xE0000 + ord(c)) for c in "use expert")),
        ("invisible", PLAIN + " p\u200b\u200b\u200bad"),
        ("bidi", PLAIN + " \u202eterces\u202c"),
        ("whitespace", PLAIN + " " * 300 + "hidden"),
        ("whitespace", PLAIN + "\n" * 40 + "hidden instructions"),
        ("comment", PLAIN + "<!-- " + "filler text " * 30 + "-->"),
        ("blob", PLAIN + " " + "QUJD" * 100),
        ("repetition", PLAIN + " complex" * 300),
        ("repetition", PLAIN + " " + "Think very carefully about it. " * 40),
        ("stuffing", PLAIN + " prove derive theorem lemma integral optimise refactor json"),
    ],
)
def test_each_trick_is_flagged(kind: str, prompt: str) -> None:
    flags = detect_gaming(pl.Series([prompt, PLAIN]))
    assert kind in (flags[0] or "").split(",")
    assert flags[1] is None


def test_plain_prompts_are_not_flagged() -> None:
    prompts = [
        *QUESTIONS,
        "Prove that the square root of 2 is irrational, then derive a bound on its digits.",
        "def add(a, b):\n    return a + b\n\nExplain what this function does.",
        "مرحبا\u200f، كيف حالك؟",  # a right-to-left mark is normal in Arabic text
        "👨\u200d👩\u200d👧 family emoji",  # zero-width joiners inside emoji
        "",
    ]
    assert detect_gaming(pl.Series(prompts)).is_null().all()


def test_kinds_can_be_restricted_and_detection_turned_off() -> None:
    words = " ".join(
        "".join(w) for w in itertools.islice(itertools.product("abcdefgh", repeat=3), 60)
    )
    prompt = PLAIN + " " * 300 + "<!-- " + words + " -->"
    assert detect_gaming(pl.Series([prompt]))[0] == "whitespace,comment"
    assert detect_gaming(pl.Series([prompt]), GamingSpec(kinds=("comment",)))[0] == "comment"
    with pytest.raises(ValueError, match="unknown gaming kinds"):
        GamingSpec(kinds=("nope",))
    with pytest.raises(PolicyError, match=r"gaming\.kinds"):
        gaming_policy(kinds=["nope"])
    off = route_batch(_table([prompt]), gaming_policy(enabled=False), HeuristicScorer())
    assert off.column("gaming_flags").to_pylist() == [None]


def test_false_positive_rate_on_the_real_corpus(corpus_path: Path) -> None:
    prompts = pl.read_parquet(corpus_path, columns=["prompt"]).get_column("prompt")
    start = time.perf_counter()
    flags = detect_gaming(prompts)
    elapsed = time.perf_counter() - start
    flagged = int(flags.is_not_null().sum())
    rate = flagged / len(prompts)
    print(
        f"\ngaming false positives: {flagged}/{len(prompts)} = {rate:.4%} "
        f"({len(prompts) / elapsed:,.0f} prompts/s)"
    )
    assert rate <= 0.001  # measured: 4 of 16,935 (0.024%)


def test_detection_rate_on_generated_gamed_prompts() -> None:
    tricks, prompts = zip(*gamed_prompts(1000), strict=True)
    flags = detect_gaming(pl.Series(prompts, dtype=pl.String))
    frame = pl.DataFrame({"trick": tricks, "flagged": flags.is_not_null()})
    rates = frame.group_by("trick").agg(pl.col("flagged").mean()).sort("trick")
    overall = frame.get_column("flagged").mean()
    print(f"\ngaming detection: {overall:.1%} overall; per trick {dict(rates.iter_rows())}")
    assert overall is not None and float(overall) >= 0.95  # measured: 98.2%
    assert rates.get_column("flagged").min() >= 0.9  # type: ignore[operator]


def _table(prompts: list[str], **extra: list[str | None]) -> pa.Table:
    ids = [f"p{i}" for i in range(len(prompts))]
    return pa.table({"prompt_id": ids, "prompt": prompts, **extra})


def test_the_policy_caps_flagged_prompts_and_their_allowed_tiers() -> None:
    gamed = [p for _, p in gamed_prompts(70)]
    hard = (
        "Design a distributed rate limiter for a multi-region API gateway. Compare the token "
        "bucket and sliding window approaches, analyse their trade-offs under clock skew and "
        "partial network partitions, then implement the core algorithm in Python with unit "
        "tests, and explain why your design stays correct when a region fails over."
    )
    prompts = [*gamed, hard, PLAIN]
    policy = gaming_policy(cap="fast")
    out = route_batch(_table(prompts), policy, HeuristicScorer()).to_pydict()
    flagged = [f is not None for f in out["gaming_flags"]]
    assert sum(flagged) >= 65 and not flagged[-1] and not flagged[-2]
    for is_flagged, tier, reason, mask in zip(
        flagged, out["tier"], out["route_reason"], out[ALLOWED], strict=True
    ):
        if is_flagged:
            assert tier == "fast"
            assert allowed_tiers(mask, policy.tier_names) == ["fast"]
            if "capped by gaming flag" in reason:
                assert reason.endswith("→ fast")
    capped = [r for r in out["route_reason"] if "capped by gaming flag" in r]
    assert capped, "some gamed prompt scored above fast and was capped"
    assert out["tier"][-2] != "fast"  # a genuinely hard, unflagged prompt keeps its tier
    recorded = route_batch(_table(prompts), gaming_policy(), HeuristicScorer()).to_pydict()
    assert recorded["gaming_flags"] == out["gaming_flags"]
    assert recorded["tier"][: len(gamed)] != out["tier"][: len(gamed)]  # no cap: not capped


def test_unknown_cap_tier_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match=r"gaming\.cap: unknown tier 'platinum'"):
        gaming_policy(cap="platinum")


def test_detection_is_deterministic_per_text_and_row_order_free() -> None:
    prompts = [p for _, p in gamed_prompts(200)] + [PLAIN] * 50
    flags = detect_gaming(pl.Series(prompts)).to_list()
    order = np.random.default_rng(3).permutation(len(prompts))
    shuffled = detect_gaming(pl.Series([prompts[i] for i in order])).to_list()
    assert shuffled == [flags[i] for i in order]
    assert [f in (None, *GAMING_KINDS) or "," in f for f in flags]
