"""How sure is an answer? The cascade's signal, from the answer alone (pure).

``confidence = exp(mean token logprob)`` — the geometric mean of the token probabilities —
when the provider returned logprobs; without them 1.0 (nothing says it is unsure). Then
three overrides to 0.0: an empty answer, a truncated one (``finish_reason == "length"``),
and a refusal or "cannot answer" marker near its start (``REFUSAL``, case-insensitive).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

REFUSAL = re.compile(
    r"\b(?:i\s+(?:cannot|can't|can not|am unable to|am not able to|don't know|do not know)"
    r"|i'm\s+(?:unable|not able|sorry, but i can(?:no|')t)"
    r"|as an ai\b|unable to (?:answer|help|comply)|not enough information)",
    re.IGNORECASE,
)
_HEAD = 200  # characters of the answer searched for a refusal


def confidence(
    text: str | None, finish_reason: str | None, logprobs: Sequence[float] | None
) -> float:
    """Confidence in [0, 1] of one answer (see the module doc)."""
    if not text or not text.strip() or finish_reason == "length":
        return 0.0
    if REFUSAL.search(text[:_HEAD]):
        return 0.0
    if not logprobs:
        return 1.0
    return math.exp(sum(logprobs) / len(logprobs))
