"""Complexity features, vectorised over a whole batch with polars.

Each feature is one column computed from the ``prompt`` column (all counts are per prompt):

- ``n_chars``: characters.
- ``n_words``: whitespace-separated words.
- ``n_lines``: lines.
- ``n_questions``: question marks.
- ``code_markers``: code fences, ``def``/``class``/``function``/``import``, braces and semicolons.
- ``math_markers``: LaTeX commands, equations, operators between numbers, math words.
- ``step_markers``: enumerations and multi-part cues ("1.", "step", "first…then").
- ``reasoning_verbs``: prove, derive, compare, analyse, explain why, evaluate, design…
- ``constraint_words``: must, exactly, at least, no more than, format, JSON, words limit…
- ``non_ascii_ratio``: share of non-ASCII characters (language / script signal).
"""

from __future__ import annotations

import polars as pl

FEATURE_VERSION = "f1"

_CODE = r"```|\bdef |\bclass |\bfunction\b|\bimport |\breturn\b|[{};]|=>|\bSELECT\b"
_MATH = (
    r"\\frac|\\sum|\\int|\\sqrt|\$[^$]+\$|\d\s*[-+*/^=]\s*\d|\b(?:equation|integral|derivative"
    r"|probability|matrix|theorem|lemma|polynomial)\b"
)
_STEPS = r"(?m)^\s*(?:\d+[.)]|[-*•])\s|\bstep\b|\bfirst\b.*\bthen\b|\bpart [a-z0-9]\b"
_REASON = (
    r"\b(?:prove|derive|compare|contrast|analy[sz]e|explain why|evaluate|justify|design"
    r"|optimi[sz]e|critique|implement|architect|refactor|debug|trade-?offs?)\b"
)
_CONSTRAINT = (
    r"\b(?:must|exactly|at least|at most|no more than|format|json|yaml|table|words?|"
    r"characters|constraints?|requirements?)\b"
)

FEATURES: tuple[str, ...] = (
    "n_chars",
    "n_words",
    "n_lines",
    "n_questions",
    "code_markers",
    "math_markers",
    "step_markers",
    "reasoning_verbs",
    "constraint_words",
    "non_ascii_ratio",
)


def feature_exprs(col: str = "prompt") -> list[pl.Expr]:
    """The feature expressions over the text column ``col``."""
    text = pl.col(col).fill_null("")
    lower = text.str.to_lowercase()
    n_chars = text.str.len_chars()
    return [
        n_chars.alias("n_chars"),
        text.str.count_matches(r"\S+").alias("n_words"),
        (text.str.count_matches("\n") + 1).alias("n_lines"),
        text.str.count_matches(r"\?", literal=False).alias("n_questions"),
        text.str.count_matches(_CODE).alias("code_markers"),
        lower.str.count_matches(_MATH).alias("math_markers"),
        lower.str.count_matches(_STEPS).alias("step_markers"),
        lower.str.count_matches(_REASON).alias("reasoning_verbs"),
        lower.str.count_matches(_CONSTRAINT).alias("constraint_words"),
        (
            (n_chars - text.str.replace_all(r"[^\x00-\x7F]", "").str.len_chars())
            / pl.max_horizontal(n_chars, pl.lit(1))
        ).alias("non_ascii_ratio"),
    ]


def compute_features(prompts: pl.Series) -> pl.DataFrame:
    """One row of features per prompt."""
    return pl.DataFrame({"prompt": prompts}).select(feature_exprs("prompt"))
