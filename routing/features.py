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

import numpy as np
import polars as pl
import pyarrow as pa

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
    """One row of features per prompt: the values of :func:`feature_exprs`, computed faster.

    The Unicode-aware regexes of :func:`feature_exprs` run on the slow regex engines as
    soon as a text has one non-ASCII character (``\\b`` then needs Unicode word tables);
    on the shared corpus 13% of the prompts made ~85% of the regex time. So the regexes run
    on an ASCII *image* of each text instead, made character for character: every
    non-ASCII character becomes an ASCII stand-in in the same classes for every pattern (a
    word character → ``_``, a space → tab, the bullet ``•`` → ``\\x01``, which the steps
    pattern reads in its place, anything else → ``\\x02``), so every match, hence every
    count, is the same. Texts the image cannot stand for (a non-ASCII decimal digit, or
    ``\\x01``/``\\x02`` already in the text) use :func:`feature_exprs`. Word, line,
    question and non-ASCII counts are byte counts over the Arrow buffers. The tests hold
    it to a frozen copy of the f1 expressions, on the corpus and on generated text.
    """
    text = prompts.cast(pl.String).fill_null("").rename("prompt")
    if len(text) == 0:
        return pl.DataFrame({"prompt": text}).select(feature_exprs("prompt"))
    image, odd = _image(text)
    lower, _ = _image(text.str.to_lowercase())  # lowercasing makes no digit, \x01 or \x02
    offsets, data = _utf8(text)
    n_chars = text.str.len_chars()
    non_ascii = _per_row(data >= 0xC0, offsets)  # UTF-8 lead bytes: one per non-ASCII char
    out = pl.DataFrame(
        [
            n_chars.alias("n_chars"),
            pl.Series("n_words", _words(*_utf8(image)), dtype=pl.UInt32),
            pl.Series("n_lines", _per_row(data == _NL, offsets) + 1, dtype=pl.UInt32),
            pl.Series("n_questions", _per_row(data == _QM, offsets), dtype=pl.UInt32),
            image.str.count_matches(_CODE).alias("code_markers"),
            lower.str.count_matches(_MATH).alias("math_markers"),
            lower.str.count_matches(_STEPS_IMAGE).alias("step_markers"),
            lower.str.count_matches(_REASON).alias("reasoning_verbs"),
            lower.str.count_matches(_CONSTRAINT).alias("constraint_words"),
            pl.Series(
                "non_ascii_ratio",
                non_ascii / np.maximum(n_chars.to_numpy(), 1).astype(np.float64),
                dtype=pl.Float64,
            ),
        ]
    )
    if len(odd):
        exact = pl.DataFrame({"prompt": text.gather(odd)}).select(feature_exprs("prompt"))
        out = out.with_columns(
            out.get_column(c).scatter(odd, exact.get_column(c)) for c in FEATURES
        )
    return out


# --- the ASCII image ----------------------------------------------------------------------

# The stand-ins of non-ASCII characters. Every class a feature pattern tests keeps its
# answer: \w (word boundaries), \s and \S, \d (a non-ASCII digit has no stand-in: no
# ASCII character is a digit outside [0-9], which "part [a-z0-9]" tests), the literals (all
# ASCII but "•"), "." (any character but a newline) and [^$].
_SPACE, _BULLET, _WORD, _OTHER, _DIGIT = 0x09, 0x01, ord("_"), 0x02, -1
_STEPS_IMAGE = _STEPS.replace("•", r"\x01")
_NL, _QM = ord("\n"), ord("?")
# Code point → stand-in byte, filled from the regex engine itself as characters show up
# (so it agrees with polars' own Unicode tables); at most every code point, ~1.1M.
_STAND_IN: dict[int, int] = {}


def _image(text: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """``text`` with every non-ASCII character replaced by its ASCII stand-in, and the
    rows the image cannot stand for (a non-ASCII digit, or ``\\x01``/``\\x02`` in the
    text: the regexes must run on the text itself there)."""
    offsets, data = _utf8(text)
    odd = np.flatnonzero(_per_row((data == _BULLET) | (data == _OTHER), offsets))
    wide = np.flatnonzero(data >= 0x80)
    if len(wide) == 0:
        return text, odd
    lead = wide[data[wide] >= 0xC0]
    points = _code_points(data, lead)
    unique, inverse = np.unique(points, return_inverse=True)
    stand_in = _stand_ins(unique.tolist())[inverse]
    digits = lead[stand_in == _DIGIT]
    if len(digits):
        odd = np.union1d(odd, np.searchsorted(offsets, digits, side="right") - 1)
    image = data.copy()
    image[lead] = np.maximum(stand_in, 0)
    follow = np.setdiff1d(wide, lead, assume_unique=True)  # continuation bytes, dropped
    keep = np.ones(len(data), np.bool_)
    keep[follow] = False
    arr = pa.LargeStringArray.from_buffers(
        len(text),
        pa.py_buffer(offsets - np.searchsorted(follow, offsets)),
        pa.py_buffer(image[keep]),
    )
    return pl.Series(text.name, arr, dtype=pl.String), odd


def _code_points(data: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """The code points of the UTF-8 sequences starting at the ``lead`` bytes."""
    last = len(data) - 1
    b0, b1, b2, b3 = (data[np.minimum(lead + i, last)].astype(np.int64) for i in range(4))
    two = ((b0 & 0x1F) << 6) | (b1 & 0x3F)
    three = ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F)
    four = ((b0 & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((b2 & 0x3F) << 6) | (b3 & 0x3F)
    points: np.ndarray = np.where(b0 < 0xE0, two, np.where(b0 < 0xF0, three, four))
    return points


def _stand_ins(points: list[int]) -> np.ndarray:
    """The stand-in byte of each code point (``_DIGIT``: none)."""
    new = [p for p in points if p not in _STAND_IN]
    if new:
        chars = pl.Series([chr(p) for p in new], dtype=pl.String).str
        digit, word, space = (chars.contains(rf"^\{c}$").to_list() for c in "dws")
        for p, d, w, s in zip(new, digit, word, space, strict=True):
            bullet = p == ord("•")
            _STAND_IN[p] = (
                _BULLET if bullet else _DIGIT if d else _WORD if w else _SPACE if s else _OTHER
            )
    return np.array([_STAND_IN[p] for p in points], np.int64)


def _utf8(text: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets (from 0) and the UTF-8 bytes of a string Series, without copies."""
    arr: pa.Array | pa.ChunkedArray = text.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, np.uint8)[offsets[0] : offsets[-1]] if data_buf else _EMPTY
    return offsets - offsets[0], data


_EMPTY = np.zeros(0, np.uint8)


def _per_row(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """How many bytes of each row ``mask`` marks (``mask`` is over all rows' bytes)."""
    counts: np.ndarray = np.diff(np.searchsorted(np.flatnonzero(mask), offsets))
    return counts


def _words(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """``count_matches(r"\\S+")`` of ASCII texts: non-space bytes after a space or a start."""
    space = (data == 0x20) | ((data >= 0x09) & (data <= 0x0D))  # ASCII \s
    after_space = np.empty(len(data), np.bool_)
    after_space[:1] = True
    after_space[1:] = space[:-1]
    starts = offsets[:-1]
    after_space[starts[starts < len(data)]] = True
    return _per_row(after_space & ~space, offsets)
