"""Exact token counting with the o200k encoding, offline (``bpe-openai`` ships the tables)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import bpe_openai
import numpy as np

ENCODING = "o200k_base"


@cache
def _encoding() -> bpe_openai.Encoding:
    return bpe_openai.get_encoding(ENCODING)


def count_tokens(texts: Sequence[str | None]) -> np.ndarray:
    """o200k token count of each text (0 for None), as int64."""
    enc = _encoding()
    return np.fromiter(
        (len(enc.encode_ordinary(t)) if t else 0 for t in texts), dtype=np.int64, count=len(texts)
    )


def truncate_tokens(text: str, max_tokens: int) -> str:
    """The last ``max_tokens`` tokens of ``text`` (the end of a prompt carries the question)."""
    enc = _encoding()
    ids = enc.encode_ordinary(text)
    if len(ids) <= max_tokens:
        return text
    # The cut may fall inside a multi-byte character; drop its orphaned bytes rather than
    # decode them to U+FFFD, so the result is always a suffix of ``text``.
    # ``ids[len(ids) - n:]``, not ``ids[-n:]``, which would keep everything for n = 0.
    return str(enc.decode(ids[len(ids) - max(max_tokens, 0) :], errors="ignore"))
