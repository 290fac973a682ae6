"""The decision memo (routing.decision_memo): ``route_batch`` with it gives exactly what it
gives computing everything — cold, warm, half-seen batches, duplicates whose first
occurrence was seen before, whitespace variants, scopes — and it stays bounded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from routing.classify import HeuristicScorer
from routing.decision_memo import DecisionMemo
from routing.policy import Policy, load_policy
from routing.router import route_batch
from tests.routing.helpers import GOVERNED, corpus_batches, prompt_table


@pytest.fixture(scope="module")
def governed() -> Policy:
    return load_policy(GOVERNED)


def _plain(batch: pa.Table, policy: Policy, scorer: object) -> pa.Table:
    return route_batch(batch, policy, scorer, memo=None, decisions=None)  # type: ignore[arg-type]


def test_cold_warm_and_half_seen_batches_equal_computing_everything(
    corpus_path: Path, governed: Policy
) -> None:
    batches = corpus_batches(corpus_path, 3000, 250)  # repeats inside and across batches
    scorer = HeuristicScorer()
    memo = DecisionMemo()
    plain = [_plain(b, governed, scorer) for b in batches]
    for _ in range(2):  # cold (fills as it goes), then warm
        for batch, expected in zip(batches, plain, strict=True):
            assert route_batch(batch, governed, scorer, decisions=memo).equals(expected)
    # re-cut the same rows into other batches: every batch is partly seen, partly new
    rows = pa.concat_tables(batches)
    fresh = DecisionMemo()
    for start in range(0, 3000, 333):
        batch = rows.slice(start, 333)
        fresh_half = route_batch(batch.slice(0, 150), governed, scorer, decisions=fresh)
        assert fresh_half.equals(_plain(batch.slice(0, 150), governed, scorer))
        assert route_batch(batch, governed, scorer, decisions=fresh).equals(
            _plain(batch, governed, scorer)
        )
    assert 0 < len(memo) <= sum(b.num_rows for b in batches)


def test_a_duplicate_takes_its_first_occurrence_even_when_only_it_was_seen(
    default_policy: Policy,
) -> None:
    """A whitespace variant scores differently alone; in a batch after its canonical text it
    follows that text's decision — memo or not."""
    short = "Prove that the square root of two is irrational and explain each step."
    variant = short.replace(" ", "   ")  # more tokens, same fingerprint
    scorer, memo = HeuristicScorer(), DecisionMemo()
    route_batch(prompt_table([variant]), default_policy, scorer, decisions=memo)  # only it seen
    both = prompt_table([short, variant])
    routed = route_batch(both, default_policy, scorer, decisions=memo)
    assert routed.equals(_plain(both, default_policy, scorer))
    assert routed.column("dedupe_of").to_pylist() == [None, "p0"]
    # …and the variant's own decision is still what it gets alone
    alone = route_batch(prompt_table([variant]), default_policy, scorer, decisions=memo)
    assert alone.equals(_plain(prompt_table([variant]), default_policy, scorer))


def test_scope_columns_separate_decisions(governed: Policy) -> None:
    """The same prompt for another customer tier (an entitlement) is another decision."""
    prompt = "Draft a detailed legal analysis of this multi-jurisdiction merger agreement."
    scorer, memo = HeuristicScorer(), DecisionMemo()
    tiers = ["gold", "free", "gold", "free"]
    table = prompt_table([prompt] * 4, customer_tier=tiers, domain=["legal"] * 4)
    for _ in range(2):
        routed = route_batch(table, governed, scorer, decisions=memo)
        assert routed.equals(_plain(table, governed, scorer))
    assert routed.column("dedupe_of").to_pylist() == [None, None, "p0", "p1"]


class _Const:
    version = "same-version-by-mistake"

    def __init__(self, value: float) -> None:
        self.value = value

    def score(self, features: object, input_tokens: np.ndarray) -> np.ndarray:
        return np.full(len(input_tokens), self.value)


def test_two_scorers_sharing_a_version_string_never_share_decisions(
    default_policy: Policy,
) -> None:
    memo, table = DecisionMemo(), prompt_table(["What is 2+2?", "Name three primes."])
    low = route_batch(table, default_policy, _Const(0.0), decisions=memo)  # type: ignore[arg-type]
    high = route_batch(table, default_policy, _Const(0.99), decisions=memo)  # type: ignore[arg-type]
    assert set(low.column("tier").to_pylist()) == {"fast"}
    assert set(high.column("tier").to_pylist()) == {"expert"}


def test_the_memo_is_bounded_and_off_when_empty(default_policy: Policy) -> None:
    scorer = HeuristicScorer()
    tiny = DecisionMemo(max_entries=5, max_namespaces=1)
    prompts = [f"Question number {i}: what is {i} squared?" for i in range(12)]
    for _ in range(2):
        out = route_batch(prompt_table(prompts), default_policy, scorer, decisions=tiny)
        assert out.equals(_plain(prompt_table(prompts), default_policy, scorer))
        assert len(tiny) == 5
    route_batch(prompt_table(prompts), default_policy, HeuristicScorer(), decisions=tiny)
    assert len(tiny._spaces) == 1  # another scorer object: the oldest namespace went
    off = DecisionMemo(max_entries=0)
    route_batch(prompt_table(prompts), default_policy, scorer, decisions=off)
    assert len(off) == 0


def test_a_forked_child_starts_with_an_empty_memo(default_policy: Policy) -> None:
    memo = DecisionMemo()
    route_batch(prompt_table(["hello there"]), default_policy, HeuristicScorer(), decisions=memo)
    assert len(memo) == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sees, then leave without cleanup
        os.write(write, str(len(memo)).encode())
        os._exit(0)
    os.close(write)
    seen = os.read(read, 16)
    os.waitpid(pid, 0)
    assert seen == b"0" and len(memo) == 1


def test_pii_and_gaming_in_the_system_prompt_count_as_the_rows(governed: Policy) -> None:
    """The system prompt goes to the provider too: PII in it keeps the row on a
    ``pii_allowed`` tier, and a gaming trick hidden in it is flagged (memo or not)."""
    prompts = ["Summarise the attached ticket.", "Summarise the attached ticket.", "Hi!"]
    systems = [
        "Customer: jane.doe@example.com, card 4111 1111 1111 1111.",
        "Be concise.",
        "You are helpful." + "\u200b" * 30 + "<!-- " + "ignore " * 50 + "-->",
    ]
    table = prompt_table(prompts, systems, tenant=["acme"] * 3, customer_tier=["pro"] * 3)
    scorer, memo = HeuristicScorer(), DecisionMemo()
    for decisions in (None, memo, memo):
        routed = route_batch(table, governed, scorer, decisions=decisions)
        assert routed.column("pii_kinds").to_pylist() == ["card, email", None, None]
        assert routed.column("tier").to_pylist()[0] == "onprem"
        flags = routed.column("gaming_flags").to_pylist()
        assert flags[0] is None and flags[1] is None
        assert flags[2] is not None and {"invisible", "comment"} <= set(flags[2].split(","))
