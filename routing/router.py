"""Route a validated batch: features → score → tier → within-batch dedupe.

Pure computation over Arrow/polars; the ingest stage calls :func:`route_batch` once per
chunk. Routing columns are added to the table; internal ones start with ``__br_``.

What depends on a text alone — its token count, its features, its PII kinds — is computed
once per distinct text of the batch, and kept across batches in a bounded :class:`TextMemo`
(nightly jobs repeat prompts, templates and system prompts across chunks); the score once
per distinct (system, prompt) pair. Duplicates copy the values: every output is the same
as computing each row on its own (a scorer's score of a row depends on that row only).
A whole row's decision is kept too, in a bounded :class:`DecisionMemo` keyed by the
request (scope, system, prompt), policy version and scorer: a row seen before is not
routed again, only its batch's duplicate marks are worked out (routing.decision_memo).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from routing.classify import Scorer
from routing.decision_memo import FIELDS, DecisionMemo
from routing.dedupe import CANONICAL, first_occurrences, mark_duplicates
from routing.enforcement.decisions import Decisions, apply_rules
from routing.gaming import GAMING_KINDS
from routing.memo import TextMemo, compute_values
from routing.policy import Policy
from routing.route import assign_tiers

INTERNAL = "__br_"
FINGERPRINT = f"{INTERNAL}fingerprint"
EST_INPUT_TOKENS = f"{INTERNAL}input_tokens"
REJECTED_REASON = f"{INTERNAL}rejected_reason"
# The tiers the policy allows the row (Int64 bit mask, bit k = k-th tier; routing.enforcement).
ALLOWED = f"{INTERNAL}allowed"
# Columns rules and entitlements may read (besides the prompt and its token count).
_RULE_COLUMNS = ("tenant", "customer_tier", "domain", "metadata")


def _distinct(values: list[str | None]) -> tuple[list[str | None], np.ndarray]:
    """The distinct values in first-seen order, and each row's index into them."""
    index = dict.fromkeys(values)
    if len(index) == len(values):
        return values, np.arange(len(values))
    for i, v in enumerate(index):
        index[v] = i
    return list(index), np.fromiter(map(index.__getitem__, values), np.int64, len(values))


def _pairs(first: np.ndarray, second: np.ndarray, n_second: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (first, second) pairs in first-seen order: each pair's first row, and each
    row's pair."""
    _, start, inverse = np.unique(first * n_second + second, True, True)
    order = np.argsort(start, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return start[order], rank[inverse.reshape(-1)]


def _decide(
    table: pa.Table,
    prompts: pl.Series,
    tokens: np.ndarray,
    score: tuple[pl.Series, list[str]],
    kinds: pl.Series | None,
    policy: Policy,
    gaming: pl.Series | None = None,
) -> Decisions:
    """Rules, entitlements, PII and input limits (routing.enforcement) after the score's tiers;
    ``gaming``: the rows' gaming flags, capped at ``policy.gaming.cap`` when one is set."""
    columns = [prompts.alias("prompt"), pl.Series("input_tokens", tokens)]
    for name in _RULE_COLUMNS:
        if name in table.column_names:
            columns.append(_strings(table, name))
    return apply_rules(
        pl.DataFrame(columns),
        score[0],
        policy.tier_names,
        policy.rules,
        policy.entitlements,
        policy.pii_allowed_tiers,
        kinds,
        score_reasons=score[1],
        # A tier that truncates its input (at dispatch) takes a prompt of any length.
        input_limits={t.name: t.max_input_tokens for t in policy.tiers if not t.truncate_input},
        flagged_cap=(gaming.is_not_null().to_numpy(), policy.gaming.cap)
        if gaming is not None and policy.gaming.cap is not None
        else None,
    )


def _strings(table: pa.Table, name: str) -> pl.Series:
    column = table.column(name)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return pl.Series(name, column, dtype=pl.String)
    return pl.Series(name, column.to_pylist(), dtype=pl.String)


def _scopes(table: pa.Table) -> pl.Series:
    """What besides the text makes two requests different: everything a rule or an
    entitlement may read (tenant, customer tier, domain, metadata) and the output limit.
    Each part is length-prefixed (``<chars>:<value>``; null: ``-``), so no two different
    rows share a scope, whatever characters their values hold."""
    n = table.num_rows
    names = (*_RULE_COLUMNS, "max_output_tokens")
    if all(
        pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
        for t in (table.schema.field(c).type for c in names if c in table.column_names)
    ):
        parts = [
            pl.Series(c, table.column(c)).cast(pl.String)
            if c in table.column_names
            else pl.repeat(None, n, dtype=pl.String, eager=True)
            for c in names
        ]
        encoded = [
            pl.when(p.is_null())
            .then(pl.lit("-"))
            .otherwise(pl.concat_str([p.str.len_chars().cast(pl.String), pl.lit(":"), p]))
            for p in parts
        ]
        return pl.select(pl.concat_str(encoded).alias("scope")).to_series()
    lists = [table.column(c).to_pylist() if c in table.column_names else [None] * n for c in names]

    def part(value: object) -> str:
        return "-" if value is None else f"{len(str(value))}:{value}"

    return pl.Series(
        "scope",
        ["".join(map(part, row)) for row in zip(*lists, strict=True)],
        dtype=pl.String,
    )


class _Batch:
    """A batch's text values: per row (tokens, PII kinds and gaming flags of the prompt and
    the system prompt) and per distinct (system, prompt) pair (features with the text,
    tokens), with each row's pair."""

    def __init__(self, table: pa.Table, policy: Policy, memo: TextMemo | None) -> None:
        n = table.num_rows
        values = memo.values if memo is not None else compute_values
        self.prompts = pl.Series("prompt", table.column("prompt"), dtype=pl.String)
        texts, text_of = _distinct(table.column("prompt").to_pylist())
        of_text = values(
            texts,
            features=True,
            pii=policy.pii if policy.pii.enabled else None,
            gaming=policy.gaming if policy.gaming.enabled else None,
        )
        self.tokens = of_text.tokens[text_of]
        self.kinds = of_text.kinds.gather(text_of) if of_text.kinds is not None else None
        self.gaming = of_text.gaming.gather(text_of) if of_text.gaming is not None else None
        system_of, systems = np.zeros(n, np.int64), list[str | None]([None])
        if "system" in table.column_names:
            # The system prompt goes to the provider too: its tokens count, and PII or
            # gaming tricks in it count as the row's.
            systems, system_of = _distinct(table.column("system").to_pylist())
            of_system = values(
                systems,
                pii=policy.pii if policy.pii.enabled else None,
                gaming=policy.gaming if policy.gaming.enabled else None,
            )
            self.tokens = self.tokens + of_system.tokens[system_of]
            if self.kinds is not None and of_system.kinds is not None:
                self.kinds = _union_kinds(self.kinds, of_system.kinds.gather(system_of))
            if self.gaming is not None and of_system.gaming is not None:
                self.gaming = _union_flags(self.gaming, of_system.gaming.gather(system_of))
        first, self.pair_of = _pairs(text_of, system_of, len(systems))
        self.distinct = len(first) < n
        assert of_text.features is not None
        # The frame carries the text too: a learned scorer reads it (n-grams).
        self.features = of_text.features.select(pl.all().gather(text_of[first])).with_columns(
            self.prompts.gather(first)
        )
        self.pair_tokens = self.tokens[first]

    def per_row(self, values: list[str]) -> list[str]:
        return [values[j] for j in self.pair_of] if self.distinct else values


def route_batch(
    table: pa.Table,
    policy: Policy,
    scorer: Scorer,
    *,
    memo: TextMemo | None = None,
    decisions: DecisionMemo | None = None,
) -> pa.Table:
    """Add ``complexity_score``, ``tier`` (empty string: rejected by the policy, reason in
    the internal ``REJECTED_REASON`` column), ``route_reason``, ``dedupe_of``,
    ``near_dup_of``, ``pii_kinds``, ``gaming_flags``, ``classifier_version`` and the
    internal fingerprint / token / allowed tiers columns (a duplicate carries its first
    occurrence's score, tier, reasons and allowed tiers).

    ``memo``: where values of texts seen before are kept; ``decisions``: where decisions
    of requests seen before are kept (routing.decision_memo) — only the rows not found
    there are routed. The caller owns both (a worker process's: workers/memos.py); None,
    the default: compute everything. The result is the same either way."""
    n = table.num_rows
    if decisions is None or n == 0 or policy.dedupe.near_duplicates.enabled:
        own, marks = _route_rows(table, policy, scorer, memo)
        return _assemble(table, own, marks, scorer)
    namespace = (policy.version, scorer.version)
    h1, h2 = _request_keys(table)
    found = decisions.lookup(namespace, scorer, h1, h2)
    miss = np.fromiter((i for i, d in enumerate(found) if d is None), np.int64)
    if len(miss) == n:
        own, marks = _route_rows(table, policy, scorer, memo)
        _remember(decisions, (namespace, scorer), h1, h2, own, marks, np.arange(n))
        return _assemble(table, own, marks, scorer)
    hit = np.flatnonzero(np.fromiter((d is not None for d in found), np.bool_, n))
    known = [found[i] for i in hit.tolist()]
    parts = [
        pa.table(
            [pa.array(col, t) for col, t in zip(zip(*known, strict=True), _OWN.types, strict=True)],
            schema=_OWN,
        )
    ]
    if len(miss):
        sub, sub_marks = _route_rows(table.take(miss), policy, scorer, memo)
        _remember(decisions, (namespace, scorer), h1, h2, sub, sub_marks, miss)
        parts.append(sub)
    order = np.empty(n, np.int64)
    order[np.concatenate([hit, miss])] = np.arange(n)
    own = pa.concat_tables(parts).take(order)
    ids = pl.Series("prompt_id", table.column("prompt_id"), dtype=pl.String)
    return _assemble(table, own, first_occurrences(own.column("fingerprint"), ids), scorer)


# A row's own values (before a duplicate takes its first occurrence's): routing.decision_memo.
_OWN = pa.schema(
    [
        ("complexity_score", pa.float64()),
        ("tier", pa.string()),
        ("route_reason", pa.string()),
        ("rejected_reason", pa.string()),
        ("allowed", pa.int64()),
        ("pii_kinds", pa.string()),
        ("gaming_flags", pa.string()),
        ("input_tokens", pa.int64()),
        ("fingerprint", pa.large_string()),
    ]
)
assert tuple(_OWN.names) == FIELDS


def _request_keys(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Two independently seeded 64-bit hashes of each row's (scope, system, prompt)."""
    columns = [_scopes(table), pl.Series("prompt", table.column("prompt"), dtype=pl.String)]
    if "system" in table.column_names:
        columns.append(_strings(table, "system"))
    frame = pl.DataFrame(columns)

    def hashed(seed: int) -> pl.Expr:
        out = pl.lit(0, pl.UInt64)
        for i, name in enumerate(frame.columns):
            out = out ^ pl.col(name).hash(seed + 7919 * i)
        return out

    keys = frame.select(hashed(0xD1CE).alias("h1"), hashed(0xFACE).alias("h2"))
    return keys.get_column("h1").to_numpy(), keys.get_column("h2").to_numpy()


def _remember(
    decisions: DecisionMemo,
    space: tuple[tuple[str, str], Scorer],
    h1: np.ndarray,
    h2: np.ndarray,
    own: pa.Table,
    marks: pl.DataFrame,
    rows: np.ndarray,
) -> None:
    """Store the decisions of the first occurrences among ``own`` (rows ``rows`` of the
    batch): a duplicate's own values are never stored in place of what it would get alone."""
    first = np.flatnonzero(marks.get_column(CANONICAL).to_numpy() == np.arange(len(own)))
    kept = own.take(first)
    values = list(zip(*(kept.column(f).to_pylist() for f in FIELDS), strict=True))
    decisions.store(*space, h1[rows[first]], h2[rows[first]], values)


def _route_rows(
    table: pa.Table, policy: Policy, scorer: Scorer, memo: TextMemo | None
) -> tuple[pa.Table, pl.DataFrame]:
    """Each row's own values (:data:`_OWN`) and its duplicate marks (routing.dedupe)."""
    batch = _Batch(table, policy, memo)
    pair_scores = np.asarray(scorer.score(batch.features, batch.pair_tokens))
    score_tiers, score_reasons = assign_tiers(pair_scores, policy)
    score = (pl.Series(batch.per_row(score_tiers), dtype=pl.String), batch.per_row(score_reasons))
    decisions = _decide(
        table, batch.prompts, batch.tokens, score, batch.kinds, policy, batch.gaming
    )
    tiers = decisions.tier.fill_null("")
    marks = mark_duplicates(
        pl.DataFrame(
            [
                _scopes(table),
                pl.Series("prompt_id", table.column("prompt_id"), dtype=pl.String),
                batch.prompts,
                _strings(table, "system")
                if "system" in table.column_names
                else pl.Series("system", [None] * table.num_rows, dtype=pl.String),
                tiers.alias("tier"),
            ]
        ),
        policy.dedupe,
    )

    def strings(series: pl.Series) -> pa.Array:
        return series.to_arrow().cast(pa.string())

    own = pa.table(
        [
            pa.array(pair_scores[batch.pair_of], pa.float64()),
            strings(tiers),
            strings(decisions.route_reason),
            strings(decisions.rejected_reason),
            _allowed(decisions, table.num_rows),
            strings(_pii_text(batch.kinds, table.num_rows)),
            _gaming_text(batch.gaming, table.num_rows),
            pa.array(batch.tokens, pa.int64()),
            marks.get_column("fingerprint").to_arrow().cast(pa.large_string()),
        ],
        schema=_OWN,
    )
    return own, marks


def _assemble(table: pa.Table, own: pa.Table, marks: pl.DataFrame, scorer: Scorer) -> pa.Table:
    """The routed batch: ``own`` values, a duplicate's decision taken from the row that
    answers it (``marks``' canonical row)."""
    # A duplicate goes wherever its first occurrence goes: dispatch answers it from that
    # row, which must therefore be in the same tier batch (whitespace-only differences
    # change the token count, so the duplicate's own score could pick another tier).
    # (With near-duplicate reuse, a near-duplicate's canonical row is its near-duplicate.)
    canonical = pa.array(marks.get_column(CANONICAL).to_numpy())
    n = table.num_rows
    return (
        table.append_column("complexity_score", own.column("complexity_score").take(canonical))
        .append_column("tier", own.column("tier").take(canonical))
        .append_column("route_reason", own.column("route_reason").take(canonical))
        .append_column("dedupe_of", marks.get_column("dedupe_of").to_arrow())
        .append_column("near_dup_of", marks.get_column("near_dup_of").to_arrow())
        .append_column(FINGERPRINT, own.column("fingerprint"))
        .append_column("pii_kinds", own.column("pii_kinds"))
        .append_column("gaming_flags", own.column("gaming_flags"))
        .append_column("classifier_version", pa.repeat(pa.scalar(scorer.version), n))
        .append_column(REJECTED_REASON, own.column("rejected_reason").take(canonical))
        .append_column(EST_INPUT_TOKENS, own.column("input_tokens"))
        .append_column(ALLOWED, own.column("allowed").take(canonical))
    )


def _allowed(decisions: Decisions, n: int) -> pa.Array:
    if decisions.allowed is None:
        return pa.nulls(n, pa.int64())
    return decisions.allowed.to_arrow().cast(pa.int64())


def _union_kinds(prompt: pl.Series, system: pl.Series) -> pl.Series:
    """Per row, the sorted unique PII kinds of the prompt and the system prompt."""
    if not (system.list.len() > 0).any():
        return prompt
    return pl.select(
        pl.concat_list(prompt, system).list.unique().list.sort().alias(prompt.name)
    ).to_series()


def _union_flags(prompt: pl.Series, system: pl.Series) -> pl.Series:
    """Per row, the gaming kinds of the prompt and the system prompt (GAMING_KINDS order;
    null: none)."""
    if system.null_count() == len(system):
        return prompt
    merged = []
    for p, s in zip(prompt.to_list(), system.to_list(), strict=True):
        found = {*(p.split(",") if p else ()), *(s.split(",") if s else ())}
        merged.append(",".join(k for k in GAMING_KINDS if k in found) or None)
    return pl.Series(prompt.name, merged, dtype=pl.String)


def _gaming_text(flags: pl.Series | None, n: int) -> pa.Array:
    """The gaming kinds per row (null: none, or detection off)."""
    return pa.nulls(n, pa.string()) if flags is None else flags.to_arrow().cast(pa.string())


def _pii_text(kinds: pl.Series | None, n: int) -> pl.Series:
    """ "a, b" per row, or null when none was found (or PII is not checked)."""
    if kinds is None:
        return pl.Series([None] * n, dtype=pl.String)
    return pl.select(pl.when(kinds.list.len() > 0).then(kinds.list.join(", "))).to_series()
