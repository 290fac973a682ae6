"""Exact-duplicate marking: NFKC + whitespace-normalised, case configurable, system prompt
part of the identity, fingerprints stable (BLAKE2b of the documented key)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from routing.dedupe import (
    CANONICAL,
    DedupeSpec,
    _exact_groups,
    _raw_groups,
    fingerprint_key,
    fingerprints,
    mark_duplicates,
)
from routing.normalise import COLLAPSE
from routing.policy import load_policy
from tests.routing.helpers import PROPERTY


def _marks(prompts: list[str | None], systems: list[str | None] | None = None) -> list:
    df = pl.DataFrame(
        {
            "prompt_id": [f"id{i}" for i in range(len(prompts))],
            "prompt": prompts,
            "system": systems if systems is not None else [None] * len(prompts),
        },
        schema={"prompt_id": pl.String, "prompt": pl.String, "system": pl.String},
    )
    return mark_duplicates(df).get_column("dedupe_of").to_list()


def _fingerprint(prompt: str | None, system: str | None = None, case: bool = True) -> str:
    df = pl.DataFrame(
        {"prompt": [prompt], "system": [system]},
        schema=dict.fromkeys(("prompt", "system"), pl.String),
    )
    return str(fingerprints(df, case_sensitive=case).fingerprint[0])


# Unicode's White_Space property (not Python's str.isspace, which adds \x1c-\x1f).
WHITE_SPACE = re.compile(
    "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
)


def _reference(prompt: str, system: str | None = None, scope: str | None = None) -> str:
    """The documented contract, written with the standard library only."""

    def norm(text: str | None) -> str:
        return WHITE_SPACE.sub(" ", unicodedata.normalize("NFKC", text or "")).strip(" ")

    parts = ([scope] if scope is not None else []) + [norm(system), norm(prompt)]
    key = "\x1f".join(f"{len(p)}:{p}" for p in parts)
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def test_distinct_prompts_are_not_duplicates() -> None:
    assert _marks(["a", "b", "c"]) == [None, None, None]


def test_later_duplicates_point_at_the_first_id() -> None:
    assert _marks(["q", "x", "q", "y", "q"]) == [None, None, "id0", None, "id0"]


def test_several_groups() -> None:
    assert _marks(["a", "b", "a", "b", "b"]) == [None, None, "id0", "id1", "id1"]


@pytest.mark.parametrize(
    "variant",
    [
        "What is   the capital\nof France?",
        "  What is the capital of France?",
        "What is the capital of France?\n\n",
        "What\tis the\r\ncapital of France?",
        "What is the capital of\u00a0France?",
    ],
)
def test_whitespace_differences_do_not_matter(variant: str) -> None:
    assert _marks(["What is the capital of France?", variant]) == [None, "id0"]


@pytest.mark.parametrize(
    "variant",
    [
        "what is the capital of France?",  # case matters
        "What is the capital of France",  # punctuation matters
        "Whatis the capital of France?",  # removing whitespace matters
    ],
)
def test_other_differences_matter(variant: str) -> None:
    assert _marks(["What is the capital of France?", variant]) == [None, None]


def test_system_prompt_is_part_of_the_identity() -> None:
    prompts = ["Say hi."] * 4
    systems = ["Be formal.", "Be casual.", " Be   formal. ", None]
    assert _marks(prompts, systems) == [None, None, "id0", None]


def test_missing_and_empty_system_prompt_are_the_same() -> None:
    assert _marks(["Say hi."] * 3, [None, "", "   "]) == [None, "id0", "id0"]


def test_prompt_and_system_do_not_run_together() -> None:
    # Moving a word across the system/prompt boundary is a different request.
    assert _fingerprint("b c", "a") != _fingerprint("c", "a b")
    assert _fingerprint("ab", None) != _fingerprint("b", "a")
    assert _fingerprint("x", None) != _fingerprint("", "x")


def test_fingerprint_is_deterministic_and_independent_of_the_batch() -> None:
    alone = _fingerprint("Hello", "sys")
    df = pl.DataFrame(
        {"prompt_id": ["z", "y"], "prompt": ["other", "Hello"], "system": [None, "sys"]}
    )
    assert mark_duplicates(df).get_column("fingerprint").to_list()[1] == alone
    assert _fingerprint("Hello", "sys") == alone
    assert len(alone) == 32 and int(alone, 16) >= 0
    assert alone == _reference("Hello", "sys")


def test_keeps_the_input_columns_and_rows() -> None:
    df = pl.DataFrame(
        {"prompt_id": ["a", "b"], "prompt": ["x", "x"], "system": [None, None], "tier": ["t", "u"]}
    )
    out = mark_duplicates(df)
    assert out.columns == [*df.columns, "fingerprint", "dedupe_of", "near_dup_of", CANONICAL]
    assert out[CANONICAL].to_list() == [0, 0] and out["near_dup_of"].null_count() == 2
    assert out.select(df.columns).equals(df)


def test_empty_frame() -> None:
    assert _marks([]) == []


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", " a", "a  b", "a b", ""]), st.sampled_from([None, "s"])
        ),
        max_size=30,
    )
)
def test_matches_a_reference_implementation(rows: list[tuple[str, str | None]]) -> None:
    def key(prompt: str, system: str | None) -> tuple[str, str]:
        return " ".join((system or "").split()), " ".join(prompt.split())

    first: dict[tuple[str, str], str] = {}
    expected = []
    for i, (prompt, system) in enumerate(rows):
        canonical = first.setdefault(key(prompt, system), f"id{i}")
        expected.append(None if canonical == f"id{i}" else canonical)
    assert _marks([p for p, _ in rows], [s for _, s in rows]) == expected


def test_scope_separates_tenants_and_output_limits() -> None:
    df = pl.DataFrame(
        {
            "prompt_id": ["a", "b", "c", "d"],
            "prompt": ["Same text"] * 4,
            "system": [None] * 4,
            "scope": ["acme|", "globex|", "acme|500", "acme|"],
        }
    )
    marked = mark_duplicates(df)
    assert marked["dedupe_of"].to_list() == [None, None, None, "a"]


def _collapsed_as_f1(texts: list[str | None]) -> list[str]:
    """The normalisation as first written: every ``\\s+`` run → one space, stripped."""
    series = pl.Series(texts, dtype=pl.String).fill_null("")
    return series.str.replace_all(r"\s+", " ").str.strip_chars().to_list()


def _collapsed(texts: list[str | None]) -> list[str]:
    df = pl.DataFrame({"t": texts}, schema={"t": pl.String})
    expr = pl.col("t").fill_null("").str.replace_all(COLLAPSE, " ").str.strip_chars()
    return df.select(expr).to_series().to_list()


WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u0085", "\x0b"]


@PROPERTY
@given(st.lists(st.lists(st.sampled_from([*WHITESPACE, "a", "bc", "é", "\x1f"])).map("".join)))
def test_collapse_is_the_f1_normalisation(texts: list[str]) -> None:
    assert _collapsed(texts) == _collapsed_as_f1(texts)


def test_collapse_is_the_f1_normalisation_on_the_corpus(corpus_path: Path) -> None:
    prompts = pl.read_parquet(corpus_path, columns=["prompt"])["prompt"].to_list()
    assert _collapsed(prompts) == _collapsed_as_f1(prompts)


# ---------------------------------------------------------------- the F2 contract


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Ｃａｐｉｔａｌ of France?", "Capital of France?"),  # full-width letters
        ("ﬁnd x", "find x"),  # ligature
        ("x²", "x2"),  # superscript (NFKC folds it)
        ("a\u3000b", "a b"),  # ideographic space
    ],
)
def test_nfkc_equivalents_are_duplicates(a: str, b: str) -> None:
    assert _marks([a, b]) == [None, "id0"]


def test_case_sensitivity_is_configurable() -> None:
    df = pl.DataFrame({"prompt_id": ["a", "b"], "prompt": ["Hello World", "hello  WORLD"]})
    assert mark_duplicates(df)["dedupe_of"].to_list() == [None, None]
    insensitive = mark_duplicates(df, DedupeSpec(case_sensitive=False))
    assert insensitive["dedupe_of"].to_list() == [None, "a"]
    assert _fingerprint("Hello", case=False) == _fingerprint("hELLO", case=False)
    assert _fingerprint("Hello") != _fingerprint("hELLO")


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.text(alphabet="aB \n\tＡ²ﬁé\u00a0\x1f", max_size=12),
            st.sampled_from([None, "", "s", " s ", "Ｓ"]),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_fingerprints_are_the_documented_digest(rows: list[tuple[str, str | None]]) -> None:
    df = pl.DataFrame(
        {"prompt": [p for p, _ in rows], "system": [s for _, s in rows]},
        schema=dict.fromkeys(("prompt", "system"), pl.String),
    )
    got = fingerprints(df).fingerprint.to_list()
    assert got == [_reference(p, s) for p, s in rows]


def test_scope_is_part_of_the_digest() -> None:
    df = pl.DataFrame({"prompt": ["x"], "system": [None], "scope": ["acme\x1e\x1e"]})
    got = fingerprints(df, scope="scope").fingerprint[0]
    assert got == _reference("x", None, "acme\x1e\x1e")


def test_raw_grouping_by_hash_equals_grouping_by_value() -> None:
    df = pl.DataFrame(
        {
            "prompt": ["a", "b", "a", None, None, "b", "a "],
            "system": [None, "s", None, None, "", "s", None],
        }
    )
    columns = ["system", "prompt"]
    expected = [0, 1, 0, 3, 4, 1, 6]
    assert _raw_groups(df, columns).tolist() == expected == _exact_groups(df, columns).tolist()


def test_canonical_rows_on_a_large_repeated_frame() -> None:
    base = [f"prompt number {i}" for i in range(500)]
    prompts = [base[i % 500] if i % 3 else "  " + base[i % 500] for i in range(5000)]
    df = pl.DataFrame({"prompt_id": [f"r{i}" for i in range(5000)], "prompt": prompts})
    marks = mark_duplicates(df)
    assert np.array_equal(marks[CANONICAL].to_numpy(), np.arange(5000) % 500)
    assert marks["fingerprint"].n_unique() == 500


def test_the_policy_has_a_dedupe_section_and_it_changes_the_version() -> None:
    policy = load_policy()
    assert policy.dedupe == DedupeSpec()
    assert policy.dedupe.job_wide and policy.dedupe.case_sensitive
    assert not policy.dedupe.near_duplicates.enabled
    other = policy.model_copy(update={"dedupe": DedupeSpec(case_sensitive=False)})
    assert other.version != policy.version


_PART = st.text(alphabet="ab:1\x1f\x1e ", max_size=6)


def _norm(text: str) -> str:
    return WHITE_SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip(" ")


@PROPERTY
@given(st.lists(st.tuples(_PART, _PART, _PART), min_size=2, max_size=8))
@example([("", "S\x1fP", "Q"), ("", "S", "P\x1fQ")])  # v1's collision
@example([("a\x1fb", "c", "d"), ("a", "b\x1fc", "d"), ("3:a", "b", ""), ("", "1:b", "")])
def test_distinct_scope_system_prompt_never_share_a_key(
    triples: list[tuple[str, str, str]],
) -> None:
    """Separators, colons and digits inside the parts cannot make two requests one (v2)."""
    frame = pl.DataFrame(
        {
            "scope": [t[0] for t in triples],
            "system": [t[1] for t in triples],
            "prompt": [t[2] for t in triples],
        }
    )
    keys = fingerprint_key(frame, scope="scope").to_list()
    distinct = {(s, _norm(y), _norm(p)) for s, y, p in triples}
    assert len(set(keys)) == len(distinct)


def test_separator_inside_a_part_does_not_collide() -> None:
    a = pl.DataFrame({"system": ["S\x1fP"], "prompt": ["Q"]})
    b = pl.DataFrame({"system": ["S"], "prompt": ["P\x1fQ"]})
    assert fingerprint_key(a).item() != fingerprint_key(b).item()
    assert _fingerprint("Q", "S\x1fP") != _fingerprint("P\x1fQ", "S")
    assert _fingerprint("Q", "S\x1fP") == _reference("Q", "S\x1fP")
