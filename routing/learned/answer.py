"""Signals from the cheap model's *answer* (pure, vectorised with polars): what the verifier
of an answer-aware cascade reads besides the prompt (``docs/training.md``, issue 16).

Each column is computed from a frame with ``prompt`` and ``answer`` (and optionally
``finish_reason`` and ``logprobs``, a list of the answer's token log-probabilities):

- ``answer_chars``, ``answer_words``, ``answer_lines``: the answer's size (the featurizer
  takes ``log1p`` and standardises them, i.e. relative to the tier's typical answer);
- ``answer_prompt_ratio``: ``log1p(answer chars) - log1p(prompt chars)``;
- ``refusal``: a refusal or "cannot answer" marker near the start (:data:`REFUSAL`);
- ``hedges``: hedging phrases per 100 words ("I think", "might", "not sure", "it depends"…);
- ``apology``: "sorry" / "apologi[sz]e" anywhere;
- ``truncated``: ``finish_reason == "length"``, an unclosed code fence, or an answer that
  stops mid-sentence (its last character is a letter or a comma);
- ``code_missing``: the prompt asks for code and the answer has no code (fence or indented
  block);
- ``number_missing``: the prompt is arithmetic ("how many/much", numbers) and the answer's
  last 200 characters hold no number;
- ``json_missing``: the prompt asks for JSON and the answer has no ``{`` or ``[``;
- ``answer_numbers``: numbers in the answer (per 100 words);
- ``self_corrections``: "wait", "actually", "let me re", "correction" — second thoughts;
- ``arith_checked``, ``arith_errors``: arithmetic the answer states (``3 + 4 * 2 = 11``,
  ``<<9*2=18>>``) recomputed — how many equations there are and how many are wrong;
- ``lp_present`` and, when the provider returned logprobs, ``lp_mean``, ``lp_min``,
  ``lp_q05``, ``lp_q25`` (token-level quantiles beat the mean: Gupta et al., ICLR 2024) —
  0 without them, so ``lp_present`` tells the model which rows carry them.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Sequence

import numpy as np
import polars as pl

ANSWER_FEATURES: tuple[str, ...] = (
    "answer_chars",
    "answer_words",
    "answer_lines",
    "answer_prompt_ratio",
    "refusal",
    "hedges",
    "apology",
    "truncated",
    "code_missing",
    "number_missing",
    "json_missing",
    "answer_numbers",
    "self_corrections",
    "arith_checked",
    "arith_errors",
    "lp_present",
    "lp_mean",
    "lp_min",
    "lp_q05",
    "lp_q25",
)
# Counts the featurizer takes log1p of (the rest are flags, rates or log-probabilities).
ANSWER_COUNTS: tuple[str, ...] = ("answer_chars", "answer_words", "answer_lines")

REFUSAL = (
    r"(?i)\b(?:i\s+(?:cannot|can't|can not|am unable to|am not able to|don't know|do not know|"
    r"won't be able)|i'm\s+(?:unable|not able|sorry, but)|as an ai\b|as a language model|"
    r"unable to (?:answer|help|comply|provide)|not enough information)"
)
_HEDGES = (
    r"(?i)\b(?:i think|i believe|i'm not sure|i am not sure|not sure|might|may be|maybe|"
    r"possibly|perhaps|it depends|probably|likely|unclear|approximately|roughly)\b"
)
_APOLOGY = r"(?i)\b(?:sorry|apologi[sz]e)"
_SECOND = r"(?i)\b(?:wait|actually|let me re|correction|on second thought|i made a mistake)\b"
_ASKS_CODE = (
    r"(?i)\b(?:code|function|script|program|implement|python|javascript|typescript|java|sql|"
    r"c\+\+|rust|golang|bash|regex|class|method|snippet)\b"
)
_HAS_CODE = r"```|(?m)^(?:    |\t)\S"
_ASKS_NUMBER = (
    r"(?i)\b(?:how (?:many|much|long|far|old)|what is the (?:total|sum|number)|calculate)\b"
)
_ASKS_JSON = r"(?i)\bjson\b"
_NUMBER = r"\d+(?:[.,]\d+)?"
_HEAD = 200  # characters of the answer searched for a refusal
_TAIL = 200  # characters at the end that should hold the asked-for number


def answer_exprs() -> list[pl.Expr]:
    """The text-derived answer features over the ``prompt`` and ``answer`` columns."""
    answer = pl.col("answer").fill_null("")
    prompt = pl.col("prompt").fill_null("")
    chars = answer.str.len_chars()
    words = answer.str.count_matches(r"\S+").cast(pl.Float64)
    per100 = 100.0 / (words + 1.0)
    last = answer.str.strip_chars().str.slice(-1)
    fences = answer.str.count_matches("```")
    return [
        chars.cast(pl.Float64).alias("answer_chars"),
        words.alias("answer_words"),
        (answer.str.count_matches("\n") + 1).cast(pl.Float64).alias("answer_lines"),
        (
            (chars.cast(pl.Float64) + 1.0).log()
            - (prompt.str.len_chars().cast(pl.Float64) + 1.0).log()
        ).alias("answer_prompt_ratio"),
        answer.str.slice(0, _HEAD).str.contains(REFUSAL).cast(pl.Float64).alias("refusal"),
        (answer.str.count_matches(_HEDGES) * per100).alias("hedges"),
        answer.str.contains(_APOLOGY).cast(pl.Float64).alias("apology"),
        ((fences % 2 == 1) | last.str.contains(r"^[^\W\d_]|,$") | (chars == 0))
        .cast(pl.Float64)
        .alias("truncated"),
        (prompt.str.contains(_ASKS_CODE) & ~answer.str.contains(_HAS_CODE))
        .cast(pl.Float64)
        .alias("code_missing"),
        (prompt.str.contains(_ASKS_NUMBER) & ~answer.str.slice(-_TAIL).str.contains(_NUMBER))
        .cast(pl.Float64)
        .alias("number_missing"),
        (prompt.str.contains(_ASKS_JSON) & ~answer.str.contains(r"[{\[]"))
        .cast(pl.Float64)
        .alias("json_missing"),
        (answer.str.count_matches(_NUMBER) * per100).alias("answer_numbers"),
        answer.str.count_matches(_SECOND).cast(pl.Float64).alias("self_corrections"),
    ]


_NUM = r"\d[\d,]*(?:\.\d+)?"
_EQUATION = re.compile(
    rf"(?<![\w.])((?:\$?{_NUM}\s*[-+*/×x÷]\s*)+\$?{_NUM})\s*=\s*\$?\s*(-?{_NUM})(?![\d.]*\s*[-+*/×x÷]\s*\d)"
)
_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_MAX_EQUATIONS = 50  # per answer: bounded work on hostile text
_MAX_LINE = 400  # characters of a line searched for equations
_MAX_SCANNED = 20_000  # characters of an answer searched


def _value(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return float(_OPS[type(node.op)](_value(node.left), _value(node.right)))
    raise ValueError("not arithmetic")


def arithmetic_check(text: str | None) -> tuple[int, int]:
    """(equations stated, equations wrong) in ``text``: each ``a op b … = c`` recomputed
    (``+ - * / × x ÷``, usual precedence), wrong when off by more than rounding. Bounded
    work on hostile text: lines of at most :data:`_MAX_LINE` characters (the pattern
    backtracks quadratically on a long run of numbers and operators), the first
    :data:`_MAX_SCANNED` characters, at most :data:`_MAX_EQUATIONS` equations."""
    checked = wrong = 0
    lines = (line for line in (text or "")[:_MAX_SCANNED].splitlines() if len(line) <= _MAX_LINE)
    for m in (m for line in lines for m in _EQUATION.finditer(line)):
        if checked >= _MAX_EQUATIONS:
            break
        expr = (
            m.group(1)
            .replace(",", "")
            .replace("$", "")
            .replace("×", "*")
            .replace("x", "*")
            .replace("÷", "/")
        )
        try:
            got = _value(ast.parse(expr, mode="eval").body)
            stated = float(m.group(2).replace(",", ""))
        except (ValueError, SyntaxError, ZeroDivisionError, OverflowError, RecursionError):
            continue
        checked += 1
        if abs(got - stated) > max(0.01, 0.005 * abs(stated)):
            wrong += 1
    return checked, wrong


def logprob_stats(logprobs: Sequence[Sequence[float] | None] | None, n: int) -> np.ndarray:
    """``(n, 5)``: present flag, mean, min, 5th and 25th percentile of each answer's token
    log-probabilities (zeros where an answer has none)."""
    out = np.zeros((n, 5))
    if logprobs is None:
        return out
    for i, lp in enumerate(logprobs):
        if lp is None or len(lp) == 0:
            continue
        a = np.asarray(lp, dtype=np.float64)
        a = a[np.isfinite(a)]
        if a.size == 0:
            continue
        out[i] = (1.0, a.mean(), a.min(), np.quantile(a, 0.05), np.quantile(a, 0.25))
    return out


def answer_frame(
    prompts: Sequence[str | None] | pl.Series,
    answers: Sequence[str | None] | pl.Series,
    *,
    finish_reasons: Sequence[str | None] | None = None,
    logprobs: Sequence[Sequence[float] | None] | None = None,
) -> pl.DataFrame:
    """What a verifier reads of each (prompt, answer): :data:`ANSWER_FEATURES` (Float64) and
    the ``answer`` text (``""`` for a missing one)."""
    prompt = pl.Series("prompt", prompts, dtype=pl.String)
    answer = pl.Series("answer", answers, dtype=pl.String)
    if len(prompt) != len(answer):
        raise ValueError(f"{len(prompt)} prompts but {len(answer)} answers")
    n = len(prompt)
    for name, values in (("finish_reasons", finish_reasons), ("logprobs", logprobs)):
        if values is not None and len(values) != n:
            raise ValueError(f"{name}: {len(values)} entries for {n} answers")
    frame = pl.DataFrame([prompt, answer]).select(answer_exprs())
    if finish_reasons is not None:
        cut = pl.Series([r == "length" for r in finish_reasons], dtype=pl.Float64)
        frame = frame.with_columns(truncated=pl.max_horizontal("truncated", cut))
    arith = np.array([arithmetic_check(a) for a in answer.to_list()], dtype=np.float64)
    arith = arith.reshape(n, 2)
    frame = frame.with_columns(
        pl.Series("arith_checked", arith[:, 0]), pl.Series("arith_errors", arith[:, 1])
    )
    stats = logprob_stats(logprobs, n)
    names = ("lp_present", "lp_mean", "lp_min", "lp_q05", "lp_q25")
    frame = frame.with_columns(pl.Series(k, stats[:, j]) for j, k in enumerate(names))
    return frame.select(ANSWER_FEATURES).with_columns(answer.fill_null(""))
