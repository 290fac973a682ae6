"""Route a validated batch: features → score → tier → within-batch dedupe.

Pure computation over Arrow/polars; the ingest stage calls :func:`route_batch` once per
chunk. Routing columns are added to the table; internal ones start with ``__br_``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from routing.classify import Scorer
from routing.dedupe import mark_duplicates
from routing.features import compute_features
from routing.policy import Policy
from routing.route import assign_tiers
from routing.tokens import count_tokens

INTERNAL = "__br_"
FINGERPRINT = f"{INTERNAL}fingerprint"
EST_INPUT_TOKENS = f"{INTERNAL}input_tokens"
TOO_LONG = "prompt exceeds every tier's max_input_tokens"


def _fit_input_limits(
    tiers: list[str], reasons: list[str], tokens: np.ndarray, policy: Policy
) -> None:
    """Move a prompt up to the first tier whose input limit it fits (in place)."""
    names = policy.tier_names
    limits = [t.max_input_tokens for t in policy.tiers]
    for i, (tier, n) in enumerate(zip(tiers, tokens, strict=True)):
        start = names.index(tier)
        if n <= limits[start]:
            continue
        fits = [j for j in range(start + 1, len(names)) if n <= limits[j]]
        tiers[i] = names[fits[0]] if fits else ""
        reasons[i] = (
            f"{n} input tokens > {tier}.max_input_tokens → {names[fits[0]]}" if fits else TOO_LONG
        )


def _scopes(table: pa.Table) -> list[str]:
    """What besides the text makes two requests different: tenant and output limit."""
    n = table.num_rows
    tenants = table.column("tenant").to_pylist() if "tenant" in table.column_names else [""] * n
    limits = (
        table.column("max_output_tokens").to_pylist()
        if "max_output_tokens" in table.column_names
        else [None] * n
    )
    return [f"{t or ''}|{m if m is not None else ''}" for t, m in zip(tenants, limits, strict=True)]


def route_batch(table: pa.Table, policy: Policy, scorer: Scorer) -> pa.Table:
    """Add ``complexity_score``, ``tier`` (empty string: unroutable), ``route_reason``,
    ``dedupe_of`` and the internal fingerprint / token estimate columns."""
    prompts = table.column("prompt").to_pylist()
    systems = (
        table.column("system").to_pylist()
        if "system" in table.column_names
        else [None] * len(prompts)
    )
    tokens = count_tokens(prompts) + count_tokens(systems)
    features = compute_features(pl.Series("prompt", prompts, dtype=pl.String))
    scores = scorer.score(features, tokens)
    tiers, reasons = assign_tiers(scores, policy)
    _fit_input_limits(tiers, reasons, tokens, policy)
    marks = mark_duplicates(
        pl.DataFrame(
            {
                "prompt_id": table.column("prompt_id").to_pylist(),
                "prompt": prompts,
                "system": systems,
                "tier": tiers,
                "scope": _scopes(table),
            },
            schema={
                "scope": pl.String,
                "prompt_id": pl.String,
                "prompt": pl.String,
                "system": pl.String,
                "tier": pl.String,
            },
        )
    )
    # A duplicate goes wherever its first occurrence goes: dispatch answers it from that
    # row, which must therefore be in the same tier batch (whitespace-only differences
    # change the token count, so the duplicate's own score could pick another tier).
    first = pl.col("row").first().over("fingerprint")
    canonical = marks.with_row_index("row").select(first).to_series().to_numpy()
    scores = np.asarray(scores)[canonical]
    tiers = [tiers[j] for j in canonical]
    reasons = [reasons[j] for j in canonical]
    return (
        table.append_column("complexity_score", pa.array(scores, pa.float64()))
        .append_column("tier", pa.array(tiers, pa.string()))
        .append_column("route_reason", pa.array(reasons, pa.string()))
        .append_column("dedupe_of", marks.get_column("dedupe_of").to_arrow())
        .append_column(FINGERPRINT, marks.get_column("fingerprint").to_arrow())
        .append_column(EST_INPUT_TOKENS, pa.array(tokens, pa.int64()))
    )
