"""Exact cost arithmetic.

Money is :class:`decimal.Decimal`, quantised to 12 fractional digits (the ``MONEY``
Parquet type), so sums over millions of rows do not drift.

Attribution rules:

- ``cost_usd`` = input tokens × the serving model's input price + output tokens × its
  output price, from the provider's reported usage — at the model's batch prices for a
  request answered through a provider batch API (``mode = batch``).
- ``baseline_cost_usd`` = the same tokens at the *realtime* prices of the policy's most
  expensive tier (its primary model): what sending this prompt to the expert tier would
  have cost, so the saving shown includes the batch discount.
  Output tokens are those of the answer actually received (a documented estimate: an
  expert answer may be longer or shorter).
- A duplicate row (``dedupe_of`` set) costs 0; its baseline is its canonical row's
  baseline (the all-expert baseline makes every call).
- Rejected and failed rows cost 0 and have a baseline of 0.
"""

from __future__ import annotations

from decimal import Decimal

from routing.policy import ModelSpec

QUANTUM = Decimal("1e-12")
ZERO = Decimal(0).quantize(QUANTUM)


def call_cost(
    model: ModelSpec,
    input_tokens: int,
    output_tokens: int,
    *,
    batch: bool = False,
    cached: int = 0,
    written: int = 0,
) -> Decimal:
    """USD for one call of ``model`` with the given usage (at its batch price if ``batch``):
    of the ``input_tokens``, ``cached`` read from the provider's prompt cache and
    ``written`` to it are priced at the model's cache prices (``ModelSpec.cache_per_token``)."""
    per_in, per_out = model.per_token(batch=batch)
    raw = per_in * max(input_tokens - cached - written, 0) + per_out * output_tokens
    if cached or written:
        read, write = model.cache_per_token(batch=batch)
        raw += read * cached + write * written
    return raw.quantize(QUANTUM)


def usd_text(value: Decimal | None) -> str:
    """An exact USD amount as the manifest, the tracker and every report write it: a fixed
    12-place decimal string (``"0.000000000000"``, ``"1.752317650000"``); None is 0."""
    return f"{(value or ZERO).quantize(QUANTUM):f}"


def pct(part: Decimal, whole: Decimal) -> float:
    """``part`` as a percentage of ``whole``, to 3 places (0.0 when ``whole`` is 0)."""
    return round(float(part / whole * 100), 3) if whole else 0.0
