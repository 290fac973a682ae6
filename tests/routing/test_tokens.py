"""o200k token counting (offline) and tail truncation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.tokens import _encoding, count_long, count_one, count_tokens, encoding, truncate_tokens
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


# ---------------------------------------------------------------- count == encode_ordinary

VARIED = [
    None,
    "",
    " ",
    "\n\n\t  ",
    "hello world",
    "<|endoftext|> and <|fim_prefix|>",
    "héllo wörld, ça va? Ünïcödé",
    "日本語のテキストと中文文本",
    "emoji 🌍🚀👩‍👩‍👧‍👦 and flags 🇫🇷",
    "lone surrogate \ud800 here",
    "\udcff",
    "math: ∑ x² ≤ ∞, \\frac{1}{2}",
    "code:\n```python\ndef f(x):\n    return x ** 2\n```",
    "word " * 3000,
    "a" * 5000,
    "Ξ" * 777 + " mixed ASCII 123 456",
]


def _encode_ordinary(text: str | None) -> int:
    return len(_encoding().encode_ordinary(text)) if text else 0


def test_fast_counts_equal_encode_ordinary_on_varied_text() -> None:
    assert count_tokens(VARIED).tolist() == [_encode_ordinary(t) for t in VARIED]


@PROPERTY
@given(st.lists(st.one_of(st.none(), st.text(max_size=200)), max_size=8))
def test_fast_counts_equal_encode_ordinary(texts: list[str | None]) -> None:
    assert count_tokens(texts).tolist() == [_encode_ordinary(t) for t in texts]


def test_fast_counts_equal_encode_ordinary_on_the_corpus(corpus_path: Path) -> None:
    prompts = pl.read_parquet(corpus_path, columns=["prompt"])["prompt"].to_list()
    sample = prompts[::7]  # ~2,400 real prompts: chat, code, math, many languages
    assert count_tokens(sample).tolist() == [_encode_ordinary(t) for t in sample]


def test_over_long_text_raises_like_encode_ordinary() -> None:
    with pytest.raises(ValueError, match="too long"):
        count_tokens(["x" * 1_000_000])


# ---------------------------------------------------------------- count_long: any length


def test_count_long_equals_count_one_within_its_limits() -> None:
    texts = [t for t in VARIED if t is not None]
    texts.append("word, " * 20_000 + "日本語 🌍 " * 3_000)  # 138k chars: several pieces
    assert [count_long(t) for t in texts] == [count_one(t) for t in texts]
    assert count_long(None) == 0


def test_count_long_counts_past_the_per_call_limits() -> None:
    huge = "many words here " * 80_000  # 1.28M chars: count_one raises
    assert count_long(huge) == 3 * 80_000 + 1
    assert count_long("x" * 1_000_000) == 20 * count_one("x" * 50_000)  # no space: cut anywhere


def test_encoding_is_loaded_once() -> None:
    assert encoding() is encoding() is _encoding()
