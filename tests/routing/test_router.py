"""route_batch: score → tier → input-limit fit → dedupe, over an Arrow table."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from routing.classify import HeuristicScorer
from routing.policy import Policy, load_policy
from routing.router import (
    ALLOWED,
    EST_INPUT_TOKENS,
    FINGERPRINT,
    INTERNAL,
    REJECTED_REASON,
    TextMemo,
    _scopes,
    route_batch,
)
from routing.tokens import count_tokens
from routing.validate import check_schema, conform, row_rejections
from tests.routing.helpers import GOVERNED, FixedScorer, corpus_batches, prompt_table, tiers_policy

ADDED = [
    "complexity_score",
    "tier",
    "route_reason",
    "dedupe_of",
    "near_dup_of",
    FINGERPRINT,
    "pii_kinds",
    "gaming_flags",
    "classifier_version",
    REJECTED_REASON,
    EST_INPUT_TOKENS,
    ALLOWED,
]


@pytest.fixture(scope="module")
def limited() -> Policy:
    """Three tiers with tiny input limits: fast ≤ 10 tokens, balanced ≤ 50, expert ≤ 200."""
    return tiers_policy(
        {"name": "fast", "max_score": 0.3, "max_input_tokens": 10},
        {"name": "balanced", "max_score": 0.6, "max_input_tokens": 50},
        {"name": "expert", "max_input_tokens": 200},
    )


def _words(n: int) -> str:
    """A prompt of ``n + 1`` o200k tokens ("word " repeated)."""
    return "word " * n


def _route(table: pa.Table, policy: Policy, scores: list[float]) -> dict[str, list]:
    return route_batch(table, policy, FixedScorer(scores)).to_pydict()


# ---------------------------------------------------------------- shape


def test_adds_routing_columns_after_the_input_untouched(default_policy: Policy) -> None:
    nested = pa.array([{"k": 1}, {"k": 2}], pa.struct([("k", pa.int8())]))
    table = prompt_table(["What is 2+2?", "Name a colour."], custom=nested, weight=[0.5, None])
    out = route_batch(table, default_policy, FixedScorer([0.1, 0.7]))
    assert out.column_names == [*table.column_names, *ADDED]
    assert out.num_rows == table.num_rows
    assert out.select(table.column_names).equals(table)
    assert out.schema.field("complexity_score").type == pa.float64()
    assert out.schema.field(EST_INPUT_TOKENS).type == pa.int64()
    assert all(name.startswith(INTERNAL) for name in (FINGERPRINT, EST_INPUT_TOKENS, ALLOWED))
    assert out.schema.field(ALLOWED).type == pa.int64()


def test_scores_tiers_and_reasons(default_policy: Policy) -> None:
    out = _route(prompt_table(["a", "b", "c"]), default_policy, [0.05, 0.45, 0.95])
    assert out["complexity_score"] == [0.05, 0.45, 0.95]
    assert out["tier"] == ["fast", "balanced", "expert"]
    assert out["route_reason"][1] == "score 0.450 < 0.60 → balanced"
    assert out["dedupe_of"] == [None, None, None]


def test_empty_batch(default_policy: Policy) -> None:
    empty = pa.table({"prompt_id": pa.array([], pa.string()), "prompt": pa.array([], pa.string())})
    out = route_batch(empty, default_policy, HeuristicScorer())
    assert out.num_rows == 0
    assert out.column_names == [*empty.column_names, *ADDED]


def test_token_estimate_counts_prompt_and_system(default_policy: Policy) -> None:
    prompts = ["Summarise the text.", "Hi"]
    systems = ["You are terse.", None]
    out = _route(prompt_table(prompts, systems), default_policy, [0.1, 0.1])
    expected = count_tokens(prompts) + count_tokens(systems)
    assert out[EST_INPUT_TOKENS] == expected.tolist()
    assert out[EST_INPUT_TOKENS][1] == count_tokens(["Hi"])[0]


# ---------------------------------------------------------------- input limits


def test_prompt_over_its_tiers_input_limit_moves_up(limited: Policy) -> None:
    prompts = [_words(5), _words(20), _words(100), _words(21)]
    out = _route(prompt_table(prompts), limited, [0.1, 0.1, 0.1, 0.45])
    assert out["tier"] == ["fast", "balanced", "expert", "balanced"]
    assert out["route_reason"][1].endswith(
        "21 input tokens > fast.max_input_tokens 10: fast → balanced"
    )
    assert out["route_reason"][2].endswith(
        "101 input tokens > fast.max_input_tokens 10: fast → expert"
    )
    assert "max_input_tokens" not in out["route_reason"][3], "it fitted where it was scored"


def test_limit_is_inclusive(limited: Policy) -> None:
    exactly_ten = _words(9)
    assert count_tokens([exactly_ten])[0] == 10
    out = _route(prompt_table([exactly_ten, _words(10)]), limited, [0.0, 0.0])
    assert out["tier"] == ["fast", "balanced"]


def test_system_prompt_counts_against_the_limit(limited: Policy) -> None:
    prompt = _words(5)
    out = _route(prompt_table([prompt, prompt], [None, _words(8)]), limited, [0.0, 0.0])
    assert out["tier"] == ["fast", "balanced"]


def test_never_moves_down(limited: Policy) -> None:
    out = _route(prompt_table([_words(3)]), limited, [0.99])
    assert out["tier"] == ["expert"]


def test_too_long_for_every_tier_is_unroutable(limited: Policy) -> None:
    out = _route(prompt_table([_words(300), _words(3)]), limited, [0.1, 0.1])
    assert out["tier"] == ["", "fast"]
    assert out[REJECTED_REASON][0].startswith("prompt fits no allowed tier's max_input_tokens")
    assert out["complexity_score"][0] == 0.1, "the score is still reported"


def test_skips_a_later_tier_with_a_smaller_limit() -> None:
    policy = tiers_policy(
        {"name": "cheap", "max_score": 0.5, "max_input_tokens": 10},
        {"name": "narrow", "max_score": 0.8, "max_input_tokens": 20},
        {"name": "wide", "max_input_tokens": 1000},
    )
    prompts = [_words(50), _words(15), _words(49) + "word?"]
    out = _route(prompt_table(prompts), policy, [0.1, 0.1, 0.6])
    assert out["tier"] == ["wide", "narrow", "wide"]


# ---------------------------------------------------------------- dedupe inside the batch


def test_later_duplicates_point_at_the_first(default_policy: Policy) -> None:
    prompts = ["Tell me a joke.", "Other", "  Tell me\ta  joke. ", "Tell me a joke."]
    # The scorer sees each distinct (system, prompt) once: three texts, three scores.
    out = _route(prompt_table(prompts), default_policy, [0.1, 0.1, 0.1])
    assert out["dedupe_of"] == [None, None, "p0", "p0"]
    assert out[FINGERPRINT][0] == out[FINGERPRINT][2] == out[FINGERPRINT][3] != out[FINGERPRINT][1]


def test_duplicates_follow_their_first_occurrences_tier(default_policy: Policy) -> None:
    # Dispatch answers a duplicate from its first occurrence, which it only finds in its
    # own tier batch: a duplicate must never land in another tier than its original.
    prompts = ["Explain why it rains.", "Explain   why it rains.", "Explain why it rains. "]
    out = _route(prompt_table(prompts), default_policy, [0.1, 0.9, 0.45])
    assert out["dedupe_of"] == [None, "p0", "p0"]
    assert out["tier"] == ["fast", "fast", "fast"]
    assert out["complexity_score"] == [0.1, 0.1, 0.1]
    assert len(set(out["route_reason"])) == 1


def test_whitespace_variants_share_a_tier_with_the_real_scorer(default_policy: Policy) -> None:
    # Extra spaces change the token count, hence the heuristic score, yet the two are
    # one request: both go where the first goes.
    prompt = "Explain why the sky is blue and compare it with sunsets. "
    spaced = prompt.replace(" ", "    ")
    out = route_batch(prompt_table([prompt, spaced]), default_policy, HeuristicScorer()).to_pydict()
    assert out["dedupe_of"] == [None, "p0"]
    assert out["tier"][0] == out["tier"][1]


def test_duplicate_of_an_unroutable_prompt_is_unroutable(limited: Policy) -> None:
    long = _words(300)
    out = _route(prompt_table([long, long.strip()]), limited, [0.1, 0.1])
    assert out["tier"] == ["", ""]
    assert out["dedupe_of"] == [None, "p0"]


def test_system_prompt_is_part_of_the_identity(default_policy: Policy) -> None:
    out = _route(
        prompt_table(["Translate: hola"] * 3, ["Answer in English.", "Answer in French.", None]),
        default_policy,
        [0.1, 0.1, 0.1],
    )
    assert out["dedupe_of"] == [None, None, None]


# ---------------------------------------------------------------- the real corpus


def test_real_corpus_is_spread_over_tiers_by_the_default_policy(
    corpus_path: Path, default_policy: Policy
) -> None:
    parquet = pq.ParquetFile(corpus_path)
    check_schema(parquet.schema_arrow, str(corpus_path))
    full = conform(parquet.read())
    sample = full.take(np.arange(0, full.num_rows, 5))  # a deterministic ~3,400-row slice
    assert pc.all(pc.is_null(row_rejections(sample, default_policy.limits, None))).as_py()

    out = route_batch(sample, default_policy, HeuristicScorer())

    assert out.num_rows == sample.num_rows
    assert out.select(sample.column_names).equals(sample), "input columns carried untouched"
    counts = Counter(out.column("tier").to_pylist())
    assert "" not in counts, "every corpus prompt fits some tier"
    assert set(counts) <= set(default_policy.tier_names)
    assert len(counts) >= 2, f"the heuristic sends the whole corpus to one tier: {counts}"
    assert max(counts.values()) < 0.9 * out.num_rows, f"routing is degenerate: {counts}"
    scores = out.column("complexity_score").to_numpy()
    assert np.all((scores > 0) & (scores < 1))
    assert (
        out.column(EST_INPUT_TOKENS).to_pylist()
        == count_tokens(sample.column("prompt").to_pylist()).tolist()
    )


# ---------------------------------------------------------------- the text memo


@pytest.fixture(scope="module")
def governed() -> Policy:
    return load_policy(GOVERNED)


def test_memo_results_are_identical_to_computing_everything(
    corpus_path: Path, governed: Policy
) -> None:
    batches = corpus_batches(corpus_path, 1500, 250)
    scorer = HeuristicScorer()
    memo = TextMemo()
    plain = [route_batch(b, governed, scorer, memo=None, decisions=None) for b in batches]
    cold = [
        route_batch(b, governed, scorer, memo=memo, decisions=None) for b in batches
    ]  # fills as it goes
    warm = [route_batch(b, governed, scorer, memo=memo, decisions=None) for b in batches]
    assert len(memo) > 0
    for p, c, w in zip(plain, cold, warm, strict=True):
        assert c.equals(p)
        assert w.equals(p)
    pii = pc.drop_null(pa.concat_arrays([t.column("pii_kinds").combine_chunks() for t in plain]))
    assert len(pii) > 0, "the batches exercise PII"


def test_a_tiny_memo_evicts_and_stays_identical(corpus_path: Path, governed: Policy) -> None:
    batches = corpus_batches(corpus_path, 600, 200)
    scorer = HeuristicScorer()
    plain = [route_batch(b, governed, scorer, memo=None, decisions=None) for b in batches]
    by_count, by_bytes = TextMemo(max_entries=7), TextMemo(max_bytes=4000)
    for memo in (by_count, by_bytes):
        for _ in range(2):
            for b, expected in zip(batches, plain, strict=True):
                assert route_batch(b, governed, scorer, memo=memo, decisions=None).equals(expected)
    assert 0 < len(by_count) <= 7
    assert 0 < by_bytes._bytes <= 4000
    assert by_bytes._bytes == sum(sys.getsizeof(t) for t in by_bytes._slots)


def test_values_of_a_text_seen_as_system_then_as_prompt(default_policy: Policy) -> None:
    memo = TextMemo()
    text = "Explain why the sky is blue; compare with sunsets."
    first = route_batch(
        prompt_table(["hi"], [text]), default_policy, HeuristicScorer(), memo=memo, decisions=None
    )
    again = route_batch(
        prompt_table([text], [None]), default_policy, HeuristicScorer(), memo=memo, decisions=None
    )
    alone = route_batch(
        prompt_table([text], [None]), default_policy, HeuristicScorer(), memo=None, decisions=None
    )
    assert first.column(EST_INPUT_TOKENS).to_pylist()[0] == 1 + count_tokens([text])[0]
    assert again.equals(alone)


def test_gaming_flags_from_the_memo_equal_computed_ones(default_policy: Policy) -> None:
    """Gaming flags are a text's value: remembered per text (and per gaming spec)."""
    gamed = [
        "What is 2+2?" + "\u200b" * 40,
        "Summarise this." + " please" * 400,
        "What is the capital of France?",
    ]
    memo = TextMemo()
    alone = route_batch(
        prompt_table(gamed), default_policy, HeuristicScorer(), memo=None, decisions=None
    )
    flags = alone.column("gaming_flags").to_pylist()
    assert flags[0] and flags[1] and flags[2] is None, flags
    for _ in range(2):  # cold, then from the memo
        assert route_batch(
            prompt_table(gamed), default_policy, HeuristicScorer(), memo=memo, decisions=None
        ).equals(alone)
    off = default_policy.model_copy(
        update={"gaming": default_policy.gaming.model_copy(update={"enabled": False})}
    )
    assert (
        route_batch(prompt_table(gamed), off, HeuristicScorer(), memo=memo, decisions=None)
        .column("gaming_flags")
        .null_count
        == 3
    )


def test_memo_off_keeps_nothing(default_policy: Policy) -> None:
    memo = TextMemo(max_entries=0)
    out = route_batch(
        prompt_table(["a", "b"]), default_policy, HeuristicScorer(), memo=memo, decisions=None
    )
    assert len(memo) == 0
    assert out.equals(
        route_batch(
            prompt_table(["a", "b"]), default_policy, HeuristicScorer(), memo=None, decisions=None
        )
    )


def test_memo_is_thread_safe(corpus_path: Path, governed: Policy) -> None:
    batches = corpus_batches(corpus_path, 1200, 100)
    scorer = HeuristicScorer()
    plain = [route_batch(b, governed, scorer, memo=None, decisions=None) for b in batches]
    memo = TextMemo(max_entries=150)  # small: threads evict each other's texts
    with ThreadPoolExecutor(max_workers=4) as pool:
        routed = list(
            pool.map(
                lambda b: route_batch(b, governed, scorer, memo=memo, decisions=None), batches * 3
            )
        )
    for out, expected in zip(routed, plain * 3, strict=True):
        assert out.equals(expected)


FORKED = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import pyarrow as pa
    from routing.classify import HeuristicScorer
    from routing.policy import load_policy
    from routing.router import TextMemo, route_batch
    MEMO = TextMemo()  # any owner's memo: routing.memo clears them all in a forked child
    table = pa.table({"prompt_id": ["a", "b"], "prompt": ["Prove it.", "Hi"]})
    route_batch(table, load_policy(), HeuristicScorer(), memo=MEMO)
    assert len(MEMO) == 2
    held = threading.Event()
    def hold():  # another thread is inside the memo when the process forks
        with MEMO._lock:
            held.set()
            time.sleep(2)
    threading.Thread(target=hold, daemon=True).start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)  # a child stuck on the inherited lock dies here
        empty = len(MEMO) == 0
        tokens = MEMO.values(["Prove it."]).tokens.tolist()  # no polars: a forked child
        os._exit(0 if empty and tokens == [4] and len(MEMO) == 1 else 3)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status) or (0 if len(MEMO) == 2 else 4))
    """
)


def test_a_forked_child_starts_with_an_empty_memo_and_a_free_lock() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize(
    "columns",
    [
        {},
        {"tenant": ["acme", None, "x\x1ey"], "max_output_tokens": pa.array([5, None, -1])},
        {
            "customer_tier": ["gold", "pro", None],
            "domain": [None, "legal", ""],
            "metadata": ['{"a": 1}', None, "{}"],
            "max_output_tokens": pa.array([1, 2, 3], pa.int32()),
        },
        {"tenant": pa.array(["a", "b", None], pa.large_string())},
        {"max_output_tokens": pa.array([1.5, None, 2.0])},  # not conformed: the slow path
    ],
)
def test_scopes_are_the_rows_rule_values_joined(columns: dict) -> None:
    table = prompt_table(["a", "b", "c"], **columns)
    names = ("tenant", "customer_tier", "domain", "metadata", "max_output_tokens")
    values = [table.column(c).to_pylist() if c in columns else [None] * 3 for c in names]
    expected = [
        "".join("-" if v is None else f"{len(str(v))}:{v}" for v in row)
        for row in zip(*values, strict=True)
    ]
    assert _scopes(table).to_list() == expected


def test_no_two_different_rows_share_a_scope() -> None:
    """Separators inside values, null against empty: each part is length-prefixed."""
    table = prompt_table(
        ["a"] * 4,
        customer_tier=["gold", "gold\x1ex", None, ""],
        domain=["x\x1ey", "y", "", None],
    )
    assert len(set(_scopes(table).to_list())) == 4


def test_allowed_tiers_mask_per_row(limited: Policy) -> None:
    prompts = [_words(5), _words(20), _words(300), _words(5)]
    out = _route(prompt_table(prompts), limited, [0.1, 0.1, 0.1])  # the 4th repeats the 1st
    assert out[ALLOWED] == [0b111, 0b110, 0, 0b111]  # fast ≤ 10, balanced ≤ 50, expert ≤ 200


def test_a_tier_that_truncates_its_input_takes_long_prompts() -> None:
    policy = tiers_policy(
        {"name": "fast", "max_score": 0.5, "max_input_tokens": 10, "truncate_input": True},
        {"name": "expert", "max_input_tokens": 200},
    )
    out = _route(prompt_table([_words(100), _words(300)]), policy, [0.1, 0.9])
    assert out["tier"] == ["fast", "fast"], "301 tokens fit only the truncating tier"
    assert out[ALLOWED] == [0b11, 0b01]
