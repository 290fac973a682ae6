"""Complexity features: per-prompt counts, computed over a whole batch at once."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.features import FEATURES, compute_features, feature_exprs
from tests.routing.helpers import PROPERTY


def _one(prompt: str | None) -> dict[str, float]:
    return compute_features(pl.Series("prompt", [prompt], dtype=pl.String)).row(0, named=True)


def test_one_row_per_prompt_with_the_declared_columns() -> None:
    out = compute_features(pl.Series(["a", "b c", "d"]))
    assert out.columns == list(FEATURES)
    assert out.height == 3


def test_empty_batch() -> None:
    out = compute_features(pl.Series("prompt", [], dtype=pl.String))
    assert out.height == 0
    assert out.columns == list(FEATURES)


def test_size_counts() -> None:
    row = _one("Why? How?\nTell me  more")
    assert row["n_chars"] == 23
    assert row["n_words"] == 5
    assert row["n_lines"] == 2
    assert row["n_questions"] == 2


def test_characters_are_counted_not_bytes() -> None:
    assert _one("日本語")["n_chars"] == 3


@pytest.mark.parametrize(
    ("prompt", "feature", "count"),
    [
        ("```python\nimport os\n```", "code_markers", 3),
        ("def f(x): return x", "code_markers", 2),
        ("if (a) { b; }", "code_markers", 3),
        ("SELECT name FROM users", "code_markers", 1),
        ("select name from users", "code_markers", 0),
        ("What is 3 + 4?", "math_markers", 1),
        ("Solve $x^2 = 4$ with the theorem", "math_markers", 2),
        ("Compute \\frac{1}{2} and \\sqrt{2}", "math_markers", 2),
        ("Find the derivative of the polynomial", "math_markers", 2),
        ("Do:\n1. read\n2) write\n- review", "step_markers", 3),
        ("Go step by step", "step_markers", 2),
        ("First plan, then act.", "step_markers", 1),
        ("Answer part a and part b", "step_markers", 2),
        ("Prove it, then derive and compare.", "reasoning_verbs", 3),
        ("Explain why. Analyse vs analyze. Trade-offs.", "reasoning_verbs", 4),
        ("Explain how.", "reasoning_verbs", 0),
        ("You must reply in JSON, at most 20 words.", "constraint_words", 4),
        ("Plain request", "constraint_words", 0),
    ],
)
def test_marker_counts(prompt: str, feature: str, count: int) -> None:
    assert _one(prompt)[feature] == count


def test_markers_ignore_case_where_documented() -> None:
    assert _one("PROVE THE THEOREM")["reasoning_verbs"] == 1
    assert _one("PROVE THE THEOREM")["math_markers"] == 1
    assert _one("Output YAML")["constraint_words"] == 1


@pytest.mark.parametrize(
    ("prompt", "ratio"),
    [("abc", 0.0), ("aé", 0.5), ("日本語", 1.0), ("héllo", 0.2), ("", 0.0)],
)
def test_non_ascii_ratio(prompt: str, ratio: float) -> None:
    assert _one(prompt)["non_ascii_ratio"] == pytest.approx(ratio)


@pytest.mark.parametrize("prompt", [None, ""])
def test_missing_text_has_zero_counts(prompt: str | None) -> None:
    row = _one(prompt)
    assert row["n_lines"] == 1
    assert all(v == 0 for k, v in row.items() if k != "n_lines")


def test_feature_exprs_work_on_any_column_name() -> None:
    df = pl.DataFrame({"text": ["Prove it?"]})
    out = df.select(feature_exprs("text"))
    assert out.row(0, named=True) == _one("Prove it?")


@settings(PROPERTY, max_examples=40)
@given(st.lists(st.one_of(st.none(), st.text(max_size=60)), min_size=1, max_size=12))
def test_a_rows_features_do_not_depend_on_the_rest_of_the_batch(
    prompts: list[str | None],
) -> None:
    batch = compute_features(pl.Series("prompt", prompts, dtype=pl.String))
    for i, prompt in enumerate(prompts):
        assert batch.row(i, named=True) == _one(prompt)


@PROPERTY
@given(st.text(max_size=200))
def test_features_are_non_negative_and_ratio_is_a_share(prompt: str) -> None:
    row = _one(prompt)
    assert all(v >= 0 for v in row.values())
    assert row["non_ascii_ratio"] <= 1.0
    assert row["n_chars"] == len(prompt)
