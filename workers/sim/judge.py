"""The simulator as an LLM judge: a grade for a judge request, without a model.

A chat request whose messages are a judge request (:func:`routing.judge.parse_request`: the
system message of :func:`routing.judge.judge_messages` and one user message holding the
question and the answer between tags; for Anthropic's Messages the top-level ``system`` is
taken as that system message) is answered :func:`routing.judge.reply` of a quality drawn
deterministically "from the difficulty the simulator assigned":

- the question's **difficulty** d = blake2b(question) mapped to [0, 1) (:func:`difficulty`);
- the answer's **draw** u = blake2b(answer) mapped to [0, 1) (:func:`draw`);
- quality = 1.0 when u >= d, else 0.2 (:func:`rule_quality`) — so a harder question fails
  more of its answers, the same answer to the same question always gets the same grade,
  and the reply is ``SCORE: 10`` or ``SCORE: 2``.

In replay mode (workers/sim/replay.py) a judge request whose question and answer are a
recorded prompt and one model's recorded response to it is graded with that label row's
quality instead; any other falls back to the rule above. The reply's usage is counted as
for any other request: the prompt tokens of the messages, the completion tokens of the reply.
"""

from __future__ import annotations

import hashlib

__all__ = ["FAIL_QUALITY", "difficulty", "draw", "rule_quality"]

FAIL_QUALITY = 0.2  # the grade of an answer that falls short of its question's difficulty


def _unit(text: str, person: bytes) -> float:
    """blake2b of ``text`` (personalised by its role) as a number in [0, 1): its top 53 bits,
    so the float is exact and never rounds up to 1."""
    digest = hashlib.blake2b(
        text.encode("utf-8", "surrogatepass"), digest_size=8, person=person
    ).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2.0**53


def difficulty(question: str) -> float:
    """How hard the simulator deems ``question``: d in [0, 1)."""
    return _unit(question, b"sim-difficulty")


def draw(answer: str) -> float:
    """The answer's draw u in [0, 1), compared with its question's difficulty."""
    return _unit(answer, b"sim-answer-draw")


def rule_quality(question: str, answer: str) -> float:
    """1.0 when the answer's draw reaches the question's difficulty, else :data:`FAIL_QUALITY`."""
    return 1.0 if draw(answer) >= difficulty(question) else FAIL_QUALITY
