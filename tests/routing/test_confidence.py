"""The cascade's confidence signal."""

from __future__ import annotations

import math

import pytest

from routing.confidence import confidence


def test_geometric_mean_of_token_probabilities() -> None:
    assert confidence("Paris.", "stop", [-0.1, -0.3]) == pytest.approx(math.exp(-0.2))
    assert confidence("Paris.", "stop", [0.0, 0.0]) == 1.0


def test_no_logprobs_is_full_confidence() -> None:
    assert confidence("Paris.", "stop", None) == 1.0
    assert confidence("Paris.", "stop", []) == 1.0


@pytest.mark.parametrize(
    ("text", "finish"),
    [
        ("", "stop"),
        ("   ", "stop"),
        (None, "stop"),
        ("The answer is", "length"),
        ("I cannot help with that request.", "stop"),
        ("I'm unable to determine this.", "stop"),
        ("As an AI, I do not have opinions.", "stop"),
        ("There is not enough information to answer.", "stop"),
    ],
)
def test_empty_truncated_and_refusals_are_zero(text: str | None, finish: str) -> None:
    assert confidence(text, finish, [-0.01]) == 0.0


def test_refusal_words_late_in_a_long_answer_do_not_count() -> None:
    text = "The theorem holds because " + "x " * 150 + "and I cannot see a counterexample."
    assert confidence(text, "stop", [-0.05]) == pytest.approx(math.exp(-0.05))
