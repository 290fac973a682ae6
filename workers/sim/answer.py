"""The deterministic answer to a prompt, with its o200k usage and logprobs.

The answer text is deterministic per prompt fingerprint (workers/sim/prompt.py): a blake2b
digest seeds a small sentence generator; its length (~8..200 o200k tokens) depends on the
digest and the prompt's length. A token limit below that length truncates it. Prompt tokens
are the o200k counts (:func:`routing.tokens.count_long`) of the prompt's texts; completion
tokens are the answer's tokens, which are the concatenation of pre-tokenized pieces.

A judge request is answered with its grade, and in replay mode a prompt with its recorded
answer (:func:`workers.sim.replay.source`); such a text's tokens are its o200k encoding, and a
token limit cuts it the same way. A replay miss raises :class:`ReplayMiss`.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from routing import tokens
from workers.sim.prompt import Prompt
from workers.sim.replay import MISS, Replay, miss_message, source

__all__ = ["Answer", "ReplayMiss", "answer", "count_prompt", "logprobs"]

_CACHE_SIZE = 65_536
_COUNT_CACHE: dict[bytes, int] = {}
_ENCODING = tokens.encoding()


class ReplayMiss(Exception):
    """Replay mode has no recorded answer of the prompt's model to it (answered 404)."""


@dataclass(frozen=True)
class Answer:
    """An answer to a prompt: its usage, token ids and text, and whether a limit cut it."""

    prompt_tokens: int
    token_ids: tuple[int, ...]
    text: str
    truncated: bool

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


def count_prompt(text: str) -> int:
    """o200k token count of one prompt text, memoised by a blake2b hash of the content."""
    if not text:
        return 0
    key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    count = _COUNT_CACHE.get(key)
    if count is None:
        if len(_COUNT_CACHE) >= _CACHE_SIZE:
            _COUNT_CACHE.clear()
        count = _COUNT_CACHE[key] = tokens.count_long(text)
    return count


@functools.cache  # bounded by the vocabulary size
def _token_bytes(token_id: int) -> bytes:
    raw: bytes = _ENCODING.decode_single_token_bytes(token_id)
    return raw


def _decode(token_ids: Sequence[int]) -> str:
    return b"".join(map(_token_bytes, token_ids)).decode("utf-8", errors="replace")


# The answer text is assembled from pre-tokenized pieces that always meet at pre-token boundaries
# (" " + letter, or a word followed by "."), so its ids are the concatenation of the pieces' ids.
_Piece = tuple[tuple[int, ...], str]

_OPENERS = (
    "In short,",
    "Overall,",
    "Put simply,",
    "In practice,",
    "Generally,",
    "As a rule,",
    "For most cases,",
    "Here,",
    "Briefly,",
    "On balance,",
)
_SUBJECTS = (
    "the answer",
    "the best option",
    "this approach",
    "the result",
    "a simple model",
    "the first step",
    "the main risk",
    "the total cost",
    "a careful review",
    "the right choice",
    "the key idea",
    "a good plan",
    "the outcome",
)
_VERBS = (
    "depends on",
    "comes down to",
    "is driven by",
    "improves with",
    "should balance",
    "relies on",
    "is limited by",
    "benefits from",
    "starts with",
    "is shaped by",
)
_OBJECTS = (
    "the size of the input",
    "careful testing",
    "the available budget",
    "clear requirements",
    "the quality of the data",
    "a few key trade-offs",
    "how often it runs",
    "the context you give it",
    "small, steady steps",
    "what the user needs",
    "the details of the question",
    "reliable measurements",
)
_ENDINGS = (
    "",
    "",
    " in most settings",
    " over time",
    " for this kind of task",
    ", so start small",
    ", which keeps it predictable",
    " more than anything else",
)


def _pieces(texts: Sequence[str], prefix: str = "") -> tuple[_Piece, ...]:
    return tuple((tuple(_ENCODING.encode_ordinary(prefix + t)), prefix + t) for t in texts)


_CAPITALS = [s[0].upper() + s[1:] for s in _SUBJECTS]
_OPENER = (_pieces(_OPENERS), _pieces(_OPENERS, " "))  # [0]: starts the answer
_SUBJECT_CAP = (_pieces(_CAPITALS), _pieces(_CAPITALS, " "))
_SUBJECT = _pieces(_SUBJECTS, " ")
_VERB = _pieces(_VERBS, " ")
_OBJECT = _pieces(_OBJECTS, " ")
_ENDING = _pieces(_ENDINGS)
_PERIOD = _pieces(["."])[0]


def _sentence(rng: random.Random, first: bool) -> list[_Piece]:
    """One sentence; every choice is a mixed-radix digit of a single 64-bit draw."""
    bits = rng.getrandbits(64)
    lead = 0 if first else 1  # the answer's first piece has no leading space
    start = [_OPENER[lead], _SUBJECT] if bits & 1 else [_SUBJECT_CAP[lead]]
    bits >>= 1
    pieces = []
    for table in (*start, _VERB, _OBJECT, _ENDING):
        bits, index = divmod(bits, len(table))
        pieces.append(table[index])
    pieces.append(_PERIOD)
    return pieces


def _target_length(digest: bytes, prompt_tokens: int) -> int:
    """Deterministic answer length in tokens (the answer ends at the sentence reaching it)."""
    base = 8 + int.from_bytes(digest[:2], "big") % 96
    return min(base + prompt_tokens // 8, 180)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _full_answer(digest: bytes, prompt_tokens: int) -> _Piece:
    """Token ids and text of the full (untruncated) deterministic answer for one fingerprint."""
    rng = random.Random(digest)
    target = _target_length(digest, prompt_tokens)
    ids: list[int] = []
    texts: list[str] = []
    while len(ids) < target:
        for piece_ids, text in _sentence(rng, first=not texts):
            ids.extend(piece_ids)
            texts.append(text)
    return tuple(ids), "".join(texts)


@functools.lru_cache(maxsize=4096)
def _encode(text: str) -> tuple[int, ...]:
    """The o200k token ids of a recorded answer or a judge's reply."""
    return tuple(_ENCODING.encode_ordinary(text))


def answer(prompt: Prompt, replay: Replay | None = None) -> Answer:
    """The answer to ``prompt`` (a judge's grade, or ``replay``'s recording: see the module's
    docstring), cut to its ``max_tokens`` when that is shorter; ReplayMiss without one."""
    prompt_tokens = sum(count_prompt(text) for text in prompt.contents)
    kind, scripted = source(prompt, replay)
    if kind == MISS:
        raise ReplayMiss(miss_message(prompt.model))
    if scripted is None:
        token_ids, text = _full_answer(prompt.digest, prompt_tokens)
    else:
        token_ids, text = _encode(scripted), scripted
    limit = prompt.max_tokens
    if limit is None or limit >= len(token_ids):
        return Answer(prompt_tokens, token_ids, text, truncated=False)
    return Answer(prompt_tokens, token_ids[:limit], _decode(token_ids[:limit]), truncated=True)


def logprobs(digest: bytes, token_ids: Sequence[int]) -> dict[str, Any]:
    """OpenAI's ``choices[0].logprobs``: one deterministic entry (-0.01..-2.0) per token."""
    rng = random.Random(digest[::-1])
    content = []
    for token_id in token_ids:
        raw = _token_bytes(token_id)
        token = raw.decode("utf-8", errors="replace")
        logprob = round(-0.01 - 1.99 * rng.random() ** 3, 6)
        content.append({"token": token, "logprob": logprob, "bytes": list(raw), "top_logprobs": []})
    return {"content": content, "refusal": None}
