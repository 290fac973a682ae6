"""Grading an answer (pure): the LLM-judge protocol and the programmatic reference check.

**The judge** (AutoMix-style verification, pointwise): a policy-named model is sent
:func:`judge_messages` — a system message carrying :data:`JUDGE_MARKER` and the grading
instructions, and a user message with the question and the answer between tags (their own
tags defused in the customer's text) — and replies ``SCORE: n`` with n from 0 to 10.
:func:`parse_reply` turns the reply into a quality in [0, 1] (None unless the reply is
exactly that line). The simulated and the replay
provider recognise a judge request with :func:`parse_request` and answer it themselves
(``workers/sim/``), so the whole path runs without a real model.

**The reference check**, when the input has a ``reference`` column: :func:`reference_quality`
is 1.0 when the answer matches it — the same text after normalising case, whitespace and
punctuation, or, when the reference is a number, the answer's last number equals it — else
0.0.
"""

from __future__ import annotations

import re
from typing import Any

JUDGE_MARKER = "[batch-router judge v1]"
JUDGE_SYSTEM = (
    f"{JUDGE_MARKER} You are a strict grader. Read the question and the answer. Decide "
    "whether the answer is correct, complete and follows the question's instructions. "
    "Reply with exactly one line: 'SCORE: n', where n is an integer from 0 (wrong or "
    "useless) to 10 (correct and complete)."
)
MAX_JUDGED_CHARS = 24_000  # of the question and of the answer each: a judge call is bounded
_SCORE = re.compile(r"SCORE:\s*(\d+(?:\.\d+)?)\.?", re.IGNORECASE)
_TAGS = re.compile(r"</?(question|answer)>", re.IGNORECASE)
_BLOCK = re.compile(r"<question>\n(.*)\n</question>\n<answer>\n(.*)\n</answer>\Z", re.DOTALL)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_NOISE = re.compile(r"[^\w]+")


def judge_messages(question: str, answer: str) -> list[dict[str, str]]:
    """The chat messages that ask a judge to grade ``answer`` to ``question``."""
    q, a = _inert(question[:MAX_JUDGED_CHARS]), _inert(answer[:MAX_JUDGED_CHARS])
    user = f"<question>\n{q}\n</question>\n<answer>\n{a}\n</answer>"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def _inert(text: str) -> str:
    """The customer's text with the protocol's own tags defused (``<answer>`` → ``‹answer>``),
    so a prompt or an answer cannot close its block and write the grader's instructions."""
    return _TAGS.sub(lambda m: "‹" + m.group(0)[1:], text)


def parse_request(messages: Any) -> tuple[str, str] | None:
    """(question, answer) when ``messages`` are a judge request (:func:`judge_messages`)."""
    if not isinstance(messages, list) or len(messages) != 2:
        return None
    system, user = messages
    if not (isinstance(system, dict) and isinstance(user, dict)):
        return None
    if system.get("role") != "system" or system.get("content") != JUDGE_SYSTEM:
        return None
    content = user.get("content")
    if user.get("role") != "user" or not isinstance(content, str):
        return None
    m = _BLOCK.match(content)
    return None if m is None else (m.group(1), m.group(2))


def parse_reply(text: str | None) -> float | None:
    """The judge's ``SCORE: n`` as a quality in [0, 1]; None unless the reply is exactly that
    line (a judge talked into writing more is not trusted: no grade, fail closed)."""
    m = _SCORE.fullmatch((text or "").strip())
    if m is None:
        return None
    return min(max(float(m.group(1)) / 10.0, 0.0), 1.0)


def reply(score: float) -> str:
    """What a judge replies for a quality in [0, 1] (the simulators' answer)."""
    return f"SCORE: {round(min(max(score, 0.0), 1.0) * 10)}"


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def reference_quality(answer: str | None, reference: str | None) -> float | None:
    """1.0 when ``answer`` matches ``reference`` (normalised text, or the last number of the
    answer equals a numeric reference), 0.0 when not, None without a reference."""
    if reference is None or not reference.strip():
        return None
    text = answer or ""
    expected = _number(reference.strip())
    if expected is not None:
        numbers = _NUMBER.findall(text)
        got = _number(numbers[-1]) if numbers else None
        return (
            1.0
            if got is not None and abs(got - expected) <= 1e-9 * max(1.0, abs(expected))
            else 0.0
        )

    def norm(s: str) -> str:
        return _NOISE.sub(" ", s.lower()).strip()

    return 1.0 if norm(text) == norm(reference) else 0.0
