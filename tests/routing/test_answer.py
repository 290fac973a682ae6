"""The answer signals a verifier reads (``routing.learned.answer``): pure, vectorised."""

from __future__ import annotations

import math

import numpy as np
import pytest

from routing.learned.answer import (
    ANSWER_FEATURES,
    answer_frame,
    arithmetic_check,
    logprob_stats,
)


def one(prompt: str, answer: str | None, **kwargs: object) -> dict[str, float]:
    frame = answer_frame([prompt], [answer], **kwargs)  # type: ignore[arg-type]
    return frame.row(0, named=True)


def test_every_feature_is_a_float_column_in_order() -> None:
    frame = answer_frame(["a", "b"], ["x", None])
    assert frame.columns == [*ANSWER_FEATURES, "answer"]
    assert all(str(t) == "Float64" for t in frame.drop("answer").dtypes)
    assert frame.row(1, named=True)["answer_chars"] == 0  # a missing answer is empty


def test_refusal_hedges_and_apology() -> None:
    refused = one("Tell me a secret.", "I'm sorry, but I cannot help with that request.")
    assert refused["refusal"] == 1 and refused["apology"] == 1
    plain = one("What is 2+2?", "4")
    assert plain["refusal"] == 0 and plain["hedges"] == 0 and plain["apology"] == 0
    hedged = one("Why?", "I think it might be, possibly, it depends.")
    assert hedged["hedges"] > 30  # four hedges in nine words, per 100 words


def test_truncation_from_the_text_and_the_finish_reason() -> None:
    assert one("Write.", "The first reason is that the")["truncated"] == 1
    assert one("Write.", "```python\nprint(1)\n")["truncated"] == 1  # fence left open
    assert one("Sum?", "The total is 18")["truncated"] == 0  # a number ends an answer
    assert one("Write.", "Done.")["truncated"] == 0
    assert one("Write.", "Done.", finish_reasons=["length"])["truncated"] == 1
    assert one("Write.", "")["truncated"] == 1


def test_format_mismatches() -> None:
    assert one("Write a Python function that adds.", "Just add them.")["code_missing"] == 1
    assert one("Write a Python function.", "```python\ndef f(): ...\n```")["code_missing"] == 0
    assert one("Write a Python function.", "Here:\n    return a + b")["code_missing"] == 0
    assert one("How many eggs are left?", "Quite a few of them.")["number_missing"] == 1
    assert one("How many eggs are left?", "There are 9 eggs.")["number_missing"] == 0
    assert one("Answer in JSON.", "name: Bob")["json_missing"] == 1
    assert one("Answer in JSON.", '{"name": "Bob"}')["json_missing"] == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16 - 3 = 13 and 13 - 4 = 9, so 9 * $2 = $18", (3, 0)),
        ("<<9*2=18>>18", (1, 0)),
        ("3 + 4 * 2 = 14", (1, 1)),  # precedence: 11
        ("1,000 x 3 = 3,000", (1, 0)),
        ("10 / 4 = 2.5 and 10 / 3 = 3.33", (2, 0)),  # rounding is not an error
        ("7 / 0 = 1", (0, 0)),  # not checkable
        ("2026-12-06 = today", (0, 0)),
        ("", (0, 0)),
        (None, (0, 0)),
    ],
)
def test_arithmetic_is_recomputed(text: str | None, expected: tuple[int, int]) -> None:
    assert arithmetic_check(text) == expected


def test_arithmetic_check_is_bounded_on_hostile_text() -> None:
    checked, wrong = arithmetic_check("1 + 1 = 3\n" * 10_000)
    assert checked == 50 and wrong == 50
    assert arithmetic_check("1 + 1 = 3 " * 10_000) == (0, 0)  # one 100k-char line: skipped
    assert arithmetic_check("12," * 8_000) == (0, 0)  # was quadratic backtracking
    assert arithmetic_check("1+" * 8_000 + "1 = 8001") == (0, 0)
    assert arithmetic_check("9" * 400 + " ** 9 = 1") == (0, 0)  # no power operator


def test_logprob_quantiles_and_presence() -> None:
    stats = logprob_stats([[-0.1, -0.2, -3.0, -0.1], None, [], [float("nan")]], 4)
    assert stats[0, 0] == 1 and stats[0, 2] == -3.0
    assert stats[0, 1] == pytest.approx(-0.85)
    assert stats[0, 3] < stats[0, 4] < stats[0, 1] + 1  # q05 below q25
    assert not stats[1:].any()  # none, empty or non-finite: absent, zeros
    row = one("q", "a", logprobs=[[math.log(0.5)] * 3])
    assert row["lp_present"] == 1 and row["lp_mean"] == pytest.approx(math.log(0.5))


def test_lengths_relative_to_the_prompt() -> None:
    short, long = answer_frame(["x" * 100, "x" * 100], ["y" * 10, "y" * 1000]).rows(named=True)
    assert short["answer_prompt_ratio"] < 0 < long["answer_prompt_ratio"]
    assert long["answer_lines"] == 1 and long["answer_words"] == 1


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="2 prompts but 1 answers"):
        answer_frame(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="logprobs"):
        answer_frame(["a"], ["x"], logprobs=[None, None])


def test_answer_frame_carries_the_text() -> None:
    frame = answer_frame(["p"], [None])
    assert frame.get_column("answer").to_list() == [""]
    assert set(ANSWER_FEATURES) <= set(frame.columns)
    assert np.isfinite(frame.drop("answer").to_numpy()).all()
