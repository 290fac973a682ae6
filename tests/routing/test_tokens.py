"""o200k token counting (offline) and tail truncation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.tokens import count_tokens, truncate_tokens
from tests.routing.helpers import PROPERTY


def test_known_counts() -> None:
    counts = count_tokens(["hello world", "word " * 20, "日本語"])
    assert counts.tolist() == [2, 21, 2]


def test_missing_and_empty_text_count_zero() -> None:
    assert count_tokens([None, "", "a"]).tolist() == [0, 0, 1]


def test_returns_int64_array_of_the_same_length() -> None:
    counts = count_tokens(["a", "b c"])
    assert isinstance(counts, np.ndarray)
    assert counts.dtype == np.int64
    assert count_tokens([]).shape == (0,)


def test_special_token_text_in_a_prompt_is_ordinary_text() -> None:
    # A user may paste "<|endoftext|>"; it is counted, never rejected or treated as special.
    assert count_tokens(["<|endoftext|>"])[0] > 1


def test_truncate_keeps_short_text_whole() -> None:
    assert truncate_tokens("hello world", 2) == "hello world"
    assert truncate_tokens("hello world", 100) == "hello world"


def test_truncate_keeps_the_end() -> None:
    text = "Background: " + "blah " * 50 + "Question: what is 2+2?"
    cut = truncate_tokens(text, 10)
    assert text.endswith(cut)
    assert cut.endswith("what is 2+2?")
    assert count_tokens([cut])[0] <= 10


@pytest.mark.parametrize("max_tokens", [0, -3])
def test_truncate_to_nothing(max_tokens: int) -> None:
    assert truncate_tokens("hello world", max_tokens) == ""


@PROPERTY
@given(text=st.text(max_size=120), max_tokens=st.integers(min_value=0, max_value=40))
def test_truncation_is_a_suffix_never_a_mangled_character(text: str, max_tokens: int) -> None:
    cut = truncate_tokens(text, max_tokens)
    assert text.endswith(cut), "a cut inside a multi-byte character must not leave U+FFFD"
    if count_tokens([text])[0] <= max_tokens:
        assert cut == text


def test_truncation_through_emoji() -> None:
    text = "héllo 🌍🌍🌍 世界 " * 3
    for max_tokens in range(1, 12):
        assert text.endswith(truncate_tokens(text, max_tokens)), max_tokens
