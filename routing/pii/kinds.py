"""Kinds of PII: :class:`PiiKind` (a name, a polars regex, a validator, a prefilter) and the
built-in kinds' patterns (:data:`BUILTIN_KINDS`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from routing.pii.validators import (
    NUMBERING,
    Validator,
    valid_card,
    valid_email,
    valid_iban,
    valid_ipv4,
    valid_ipv6,
    valid_phone,
    valid_ssn,
)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class PiiKind:
    """One kind of PII: a polars regex, an optional validator of each match, and an
    optional cheap ``prefilter`` regex that every text matching ``pattern`` also matches
    (it selects the rows the full pattern runs on)."""

    name: str
    pattern: str
    validator: Validator | None = None
    prefilter: str | None = None

    def __post_init__(self) -> None:
        # Patterns are checked by PiiDetector, not here: the built-in kinds are made at
        # import, and running polars at import would start its thread pool in a Celery
        # parent process, whose forked children then deadlock in polars.
        if not _NAME.match(self.name):
            raise ValueError(f"PII kind name {self.name!r} must match {_NAME.pattern}")

    def check(self) -> None:
        """Raise ``ValueError`` if polars cannot compile the pattern or the prefilter."""
        check_pattern(self.pattern)
        if self.prefilter is not None:
            check_pattern(self.prefilter)


def check_pattern(pattern: str) -> None:
    """Raise ``ValueError`` if polars cannot compile ``pattern``."""
    try:
        pl.Series([""], dtype=pl.String).str.contains(pattern)
    except pl.exceptions.ComputeError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(f"invalid PII regex {pattern!r}: {' '.join(first[:4])}") from exc


# --- patterns ---------------------------------------------------------------------------
# ASCII word boundaries and classes only: a Unicode ``\b`` makes the Rust regex engine
# leave its DFA on non-ASCII text and costs ~10× (measured on the corpus).
_B = r"(?-u:\b)"
# In front of a number: start of text, or one character that is not part of a longer token.
_LEAD = r"(?:^|[^A-Za-z0-9_.$/+\-:@])"
# Behind a number: a word boundary, then (captured so the validator can reject it) a
# continuation that shows the number is part of something longer (``…-6789-1``).
_TAIL = _B + r"(?:[.,\-/:][0-9])?"

EMAIL = r"(?i)[a-z0-9._%+\-]+@(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+[a-z]{2,24}" + _B
PHONE = (
    _LEAD
    + r"(?:\+[1-9](?:[ .\-]?\(?[0-9]{1,4}\)?){2,7}"
    + r"|(?:1[ .\-]?)?(?:\([2-9][0-9]{2}\)[ .\-]?|[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4})"
    + _TAIL
)
CARD = (
    _LEAD
    + r"(?:[0-9]{13,19}|[0-9]{4}(?:[ \-][0-9]{4}){2,3}(?:[ \-][0-9]{1,4})?"
    + r"|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{4,5})"
    + _TAIL
)
SSN = _LEAD + r"[0-9]{3}[ \-][0-9]{2}[ \-][0-9]{4}" + _TAIL
IBAN = _B + r"[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)" + _B
IPV4 = (
    r"(?:^|[^A-Za-z0-9_.\-])(?:(?i:"
    + NUMBERING
    + r")\s*)?"
    + r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}"
    + _B
    + r"(?:\.[0-9])?"
)
IPV6 = (
    r"(?i)(?:^|[^a-z0-9_:.])(?:[0-9a-f]{0,4}:){2,7}"
    + r"(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9a-f]{1,4})?(?:%[0-9a-z]+)?[a-z0-9_:.]*"
)

BUILTIN_KINDS: Mapping[str, PiiKind] = {
    k.name: k
    for k in (
        PiiKind("card", CARD, valid_card, r"[0-9]{4}[ \-]?[0-9]{4}[ \-]?[0-9]{2}"),
        PiiKind("email", EMAIL, valid_email, "@"),
        PiiKind("iban", IBAN, valid_iban, r"[A-Z]{2}[0-9]{2}"),
        PiiKind("ipv4", IPV4, valid_ipv4, r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]"),
        PiiKind("ipv6", IPV6, valid_ipv6, r"(?i)[0-9a-f]{0,4}:[0-9a-f]{0,4}:"),
        PiiKind("phone", PHONE, valid_phone, r"[0-9]{3}[ .\-][0-9]{4}|\+[1-9]"),
        PiiKind("ssn", SSN, valid_ssn, r"[0-9]{3}[ \-][0-9]{2}[ \-][0-9]{4}"),
    )
}
