"""Route a validated batch: features → score → tier → within-batch dedupe.

Pure computation over Arrow/polars; the ingest stage calls :func:`route_batch` once per
chunk. Routing columns are added to the table; internal ones start with ``__br_``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl
import pyarrow as pa

from routing.classify import Scorer
from routing.dedupe import mark_duplicates
from routing.features import compute_features
from routing.pii import PiiDetector
from routing.policy import Policy
from routing.route import assign_tiers
from routing.rules import PiiSpec, apply_rules
from routing.tokens import count_tokens

INTERNAL = "__br_"
FINGERPRINT = f"{INTERNAL}fingerprint"
EST_INPUT_TOKENS = f"{INTERNAL}input_tokens"
REJECTED_REASON = f"{INTERNAL}rejected_reason"
# Columns rules and entitlements may read (besides the prompt and its token count).
_RULE_COLUMNS = ("tenant", "customer_tier", "domain", "metadata")


@cache
def _detector(spec: PiiSpec) -> PiiDetector:
    return spec.detector()


def _decide(
    table: pa.Table, prompts: list[str], tokens: np.ndarray, scores: np.ndarray, policy: Policy
) -> tuple[list[str], list[str], list[str | None], list[str | None]]:
    """Score tiers, then rules, entitlements, PII and input limits (routing.rules)."""
    score_tiers, score_reasons = assign_tiers(scores, policy)
    kinds = None
    if policy.pii.enabled:
        kinds = _detector(policy.pii).detect(pl.Series(prompts, dtype=pl.String))
    columns = {"prompt": pl.Series(prompts, dtype=pl.String), "input_tokens": pl.Series(tokens)}
    for name in _RULE_COLUMNS:
        if name in table.column_names:
            columns[name] = pl.Series(table.column(name).to_pylist(), dtype=pl.String)
    decisions = apply_rules(
        pl.DataFrame(columns),
        score_tiers,
        policy.tier_names,
        policy.rules,
        policy.entitlements,
        policy.pii_allowed_tiers,
        kinds,
        score_reasons=score_reasons,
        input_limits={t.name: t.max_input_tokens for t in policy.tiers},
    )
    pii: list[str | None] = [None] * len(prompts)
    if kinds is not None:
        pii = [", ".join(k) or None for k in kinds.to_list()]
    return (
        decisions.tier.fill_null("").to_list(),
        decisions.route_reason.to_list(),
        decisions.rejected_reason.to_list(),
        pii,
    )


def _scopes(table: pa.Table) -> list[str]:
    """What besides the text makes two requests different: everything a rule or an
    entitlement may read (tenant, customer tier, domain, metadata) and the output limit."""
    n = table.num_rows
    parts = [
        table.column(name).to_pylist() if name in table.column_names else [None] * n
        for name in (*_RULE_COLUMNS, "max_output_tokens")
    ]
    return [
        "\x1e".join("" if v is None else str(v) for v in row) for row in zip(*parts, strict=True)
    ]


def route_batch(table: pa.Table, policy: Policy, scorer: Scorer) -> pa.Table:
    """Add ``complexity_score``, ``tier`` (empty string: rejected by the policy, reason in
    the internal ``REJECTED_REASON`` column), ``route_reason``, ``dedupe_of``,
    ``pii_kinds``, ``classifier_version`` and the internal fingerprint / token columns."""
    prompts = table.column("prompt").to_pylist()
    systems = (
        table.column("system").to_pylist()
        if "system" in table.column_names
        else [None] * len(prompts)
    )
    tokens = count_tokens(prompts) + count_tokens(systems)
    text = pl.Series("prompt", prompts, dtype=pl.String)
    # The frame carries the text too: a learned scorer reads it (n-grams).
    scores = scorer.score(compute_features(text).with_columns(text), tokens)
    tiers, reasons, rejected, pii = _decide(table, prompts, tokens, scores, policy)
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
    rejected = [rejected[j] for j in canonical]
    return (
        table.append_column("complexity_score", pa.array(scores, pa.float64()))
        .append_column("tier", pa.array(tiers, pa.string()))
        .append_column("route_reason", pa.array(reasons, pa.string()))
        .append_column("dedupe_of", marks.get_column("dedupe_of").to_arrow())
        .append_column(FINGERPRINT, marks.get_column("fingerprint").to_arrow())
        .append_column("pii_kinds", pa.array(pii, pa.string()))
        .append_column("classifier_version", pa.array([scorer.version] * len(prompts), pa.string()))
        .append_column(REJECTED_REASON, pa.array(rejected, pa.string()))
        .append_column(EST_INPUT_TOKENS, pa.array(tokens, pa.int64()))
    )
