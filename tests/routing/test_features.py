"""Complexity features: per-prompt counts, computed over a whole batch at once."""

from __future__ import annotations

from pathlib import Path

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


# ---------------------------------------------------------------- the f1 reference

# A frozen copy of the f1 expressions as first written (FEATURE_VERSION "f1"; the learned
# scorer's artifacts are trained on exactly these values): compute_features must agree
# with it everywhere, whatever it does to be fast.
_F1_CODE = r"```|\bdef |\bclass |\bfunction\b|\bimport |\breturn\b|[{};]|=>|\bSELECT\b"
_F1_MATH = (
    r"\\frac|\\sum|\\int|\\sqrt|\$[^$]+\$|\d\s*[-+*/^=]\s*\d|\b(?:equation|integral|derivative"
    r"|probability|matrix|theorem|lemma|polynomial)\b"
)
_F1_STEPS = r"(?m)^\s*(?:\d+[.)]|[-*•])\s|\bstep\b|\bfirst\b.*\bthen\b|\bpart [a-z0-9]\b"
_F1_REASON = (
    r"\b(?:prove|derive|compare|contrast|analy[sz]e|explain why|evaluate|justify|design"
    r"|optimi[sz]e|critique|implement|architect|refactor|debug|trade-?offs?)\b"
)
_F1_CONSTRAINT = (
    r"\b(?:must|exactly|at least|at most|no more than|format|json|yaml|table|words?|"
    r"characters|constraints?|requirements?)\b"
)


def _f1_reference(prompts: pl.Series) -> pl.DataFrame:
    text = pl.col("prompt").fill_null("")
    lower = text.str.to_lowercase()
    n_chars = text.str.len_chars()
    return pl.DataFrame({"prompt": prompts}).select(
        n_chars.alias("n_chars"),
        text.str.count_matches(r"\S+").alias("n_words"),
        (text.str.count_matches("\n") + 1).alias("n_lines"),
        text.str.count_matches(r"\?", literal=False).alias("n_questions"),
        text.str.count_matches(_F1_CODE).alias("code_markers"),
        lower.str.count_matches(_F1_MATH).alias("math_markers"),
        lower.str.count_matches(_F1_STEPS).alias("step_markers"),
        lower.str.count_matches(_F1_REASON).alias("reasoning_verbs"),
        lower.str.count_matches(_F1_CONSTRAINT).alias("constraint_words"),
        (
            (n_chars - text.str.replace_all(r"[^\x00-\x7F]", "").str.len_chars())
            / pl.max_horizontal(n_chars, pl.lit(1))
        ).alias("non_ascii_ratio"),
    )


def _assert_f1(prompts: pl.Series) -> None:
    fast, reference = compute_features(prompts), _f1_reference(prompts)
    assert fast.schema == reference.schema
    for name in FEATURES:  # column by column, so a failure names the feature
        diff = (fast[name] != reference[name]).arg_true().to_list()
        rows = [prompts[i] for i in diff[:3]]
        assert not diff, f"{name} differs on {len(diff)} rows, e.g. {rows!r}"
    assert fast.equals(reference)


def test_feature_exprs_are_still_f1() -> None:
    prompts = pl.Series("prompt", [*TRICKY, None, ""], dtype=pl.String)
    assert pl.DataFrame({"prompt": prompts}).select(feature_exprs()).equals(_f1_reference(prompts))


def test_identical_to_f1_on_the_corpus(corpus_path: Path) -> None:
    _assert_f1(pl.read_parquet(corpus_path, columns=["prompt"])["prompt"])


# Characters whose classes the fast path must keep: Unicode letters/marks/digits next to
# keywords (word boundaries), Unicode spaces, the bullet, the stand-in bytes themselves,
# case mappings that leave ASCII (Kelvin sign, dotted I, final sigma), CJK, emoji.
TRICKY = [
    "éprove it, prové it, prove it",
    "naïve json, jsoné, éjson; MUST·must",
    "Ｐrove ｐrove and 证明prove prove证明",
    "part ٣ and part 3 and part ३, step٣ step",
    "١ + ٢ = ٣ and 1 + 2 = 3",
    "\u2022 first\n\u2022\u00a0second\n• third\n•fourth",
    "\x01 prove \x02 json\x01\x02",
    "tab\u3000separated\u2003words\u00a0here\u2028and\u2029there\u0085end",
    "KELVIN \u212a step \u212aSTEP and \u0130STEP \u0130 json",
    "ΣΟΦΟΣ step ΣTEP σtep",
    "first⁠ then, first\u200bthen, first then",
    "$x² + y² = z²$ and $α$ and 3 × 4 = 12",
    "def f():\n\treturn 1 ;{ }\n```\nSELECT * FROM t;",
    "emoji 🚀prove🚀 and 👩‍👩‍👧‍👦 json 👍 step",
    "日本語で証明してください? はい? いいえ?",
    "combining e\u0301prove and e\u0301 json",
    "connector‿prove and ＿json and _json",
    "   leading and trailing   \n\n\n  spaces  ",
    "Ⅻ step Ⅻstep ⅻ",
    "\n\n\n",
    "?",
    "é",
    "😀",
]


@pytest.mark.parametrize("prompt", TRICKY)
def test_identical_to_f1_on_tricky_text(prompt: str) -> None:
    _assert_f1(pl.Series("prompt", [prompt], dtype=pl.String))


def test_identical_to_f1_on_a_mixed_batch_sliced_and_in_chunks() -> None:
    prompts = pl.Series("prompt", [*TRICKY, None, "", "plain ascii json step"] * 3)
    _assert_f1(prompts)
    _assert_f1(prompts.slice(5, 30))  # an Arrow offset that is not 0
    chunked = pl.concat([prompts.slice(0, 10), prompts.slice(10)], rechunk=False)
    assert chunked.n_chunks() == 2
    _assert_f1(chunked)


_ALPHABET = st.sampled_from(
    [
        *"ab ?\n\t1$\\{;=-*•.",
        *("é", "\u00a0", "\u3000", "٣", "日", "🚀", "\u212a", "\u0130", "\x01", "\x02"),
        *("\u0301", "‿", "Σ", "ß", "prove", "json", "step", "part ", "first", "then"),
        *("def ", "SELECT", "\\frac", "$", "x", "matrix"),
    ]
)


@settings(PROPERTY, max_examples=300)
@given(st.lists(st.lists(_ALPHABET, max_size=25).map("".join), min_size=1, max_size=6))
def test_identical_to_f1_on_generated_text(prompts: list[str]) -> None:
    _assert_f1(pl.Series("prompt", prompts, dtype=pl.String))


@PROPERTY
@given(st.lists(st.text(max_size=80), min_size=1, max_size=6))
def test_identical_to_f1_on_any_text(prompts: list[str]) -> None:
    _assert_f1(pl.Series("prompt", prompts, dtype=pl.String))
