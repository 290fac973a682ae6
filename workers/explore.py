"""Exploration and judged labels at the end of a tier batch (``routing/explore.py`` says
what is sampled and who answers; ``docs/training.md`` how the labels are used).

:func:`explore` runs when a tier batch's answers are final — in realtime mode before the
result part is written (``workers/stages.py``), in batch mode when the last round is
collected (``workers/batches/collect.py``) — so one code path serves both. For the sampled
rows it asks the partner tier (realtime calls through :class:`~workers.calls.Caller`
without cascade: budgets, cache, breakers and retries as for any call), grades both answers
(the ``reference`` column, or the judge tier's primary model with the ``routing.judge``
protocol), folds what was spent into the row (``cost_usd``, ``attempts``, a note in
``route_reason``, the partner in ``explored``) and returns the label rows: two per graded
prompt, in the label format of ``../shared/data/labels/`` plus ``response``.
:func:`write_labels` stores them under the output root, one file per tier batch —
``minimise`` applies (a label whose text the policy keeps out of outputs is not written).

A prompt whose pair of models was judged on an earlier night (the planner lists the
tenant's judged pairs in ``_job/explored.parquet``) is not explored again: its label would
add nothing, and the loop benchmark measured ~15 % of exploration spend going there.

A redelivered task runs it again: the calls are the cached answers of the first delivery
at the cost they were settled at (the cache's own-answer rule), so nothing is paid twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from routing.cost import ZERO, usd_text
from routing.explore import REFERENCE, REFERENCE_COLUMN, partner, sampled
from routing.judge import reference_quality
from routing.minimise import dropped
from routing.plan import JobContext
from routing.policy import Policy
from routing.rules import allowed_tiers
from workers import layout
from workers.calls import Caller
from workers.runtime import Runtime
from workers.served import Outcome, Row, Served, grade_of, judge_row

LABEL_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),  # "feedback"
        ("prompt_id", pa.string()),  # fb-<16 hex of the prompt text>: one id across nights
        ("prompt", pa.string()),
        ("model", pa.string()),
        ("quality", pa.float64()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("cost_usd", pa.float64()),
        ("response", pa.string()),
        ("tier", pa.string()),
        ("judge", pa.string()),  # reference | <tier>/<model>
        ("tenant", pa.string()),
        ("customer_tier", pa.string()),  # as in the input (minimise entries match it)
        ("arm", pa.string()),  # the experiment arm that routed the prompt (policy experiment)
        ("served", pa.bool_()),  # this answer is the row's (the other: the partner tier's)
        ("job_id", pa.string()),
        ("source_prompt_id", pa.string()),  # the input's prompt_id
        ("labelled_at", pa.string()),
    ]
)


def label_id(prompt: str) -> str:
    """A feedback prompt's id: the same text has the same id in every job and night."""
    digest = hashlib.blake2b(prompt.encode("utf-8", "surrogatepass"), digest_size=8)
    return f"fb-{digest.hexdigest()}"


def explore(
    rt: Runtime,
    ctx: JobContext,
    policy: Policy,
    table: pa.Table,
    canonical: Sequence[bool],
    rows: Sequence[Row],
    served: list[Served],
) -> list[dict[str, Any]]:
    """Explore the sampled rows of a finished tier batch (see the module doc); ``served``
    is updated in place. Returns the label rows."""
    spec = policy.explore
    if not spec.enabled or not rows:
        return []
    names = policy.tier_names
    by_reference = spec.judge == REFERENCE
    refs = _column(table, canonical, REFERENCE_COLUMN) if by_reference else [None] * len(rows)
    judge = None if by_reference else names.index(spec.judge)
    known = rt.judged_pairs(ctx)
    picks: dict[str, list[int]] = {}
    for i, (row, s) in enumerate(zip(rows, served, strict=True)):
        if s.outcome is not Outcome.OK or not sampled(ctx.job_id, row.prompt, spec.rate):
            continue
        # Only what can be graded is explored: a reference to grade by, or a judge tier the
        # prompt may go to (PII, entitlements and rules bind the judge too).
        if by_reference and not (refs[i] or "").strip():
            continue
        if judge is not None and row.allowed is not None and not row.allowed >> judge & 1:
            continue
        allowed = names if row.allowed is None else allowed_tiers(row.allowed, names)
        mate = partner(s.tier.name, names, allowed, spec.direction)
        if mate is None:
            continue
        pair = {s.model.name, policy.tier(mate).primary.name}
        if known and {(label_id(row.prompt), m) for m in pair} <= known:
            continue  # judged on an earlier night: not paid for again
        picks.setdefault(mate, []).append(i)
    if spec.max_rows is not None:
        kept = set(sorted(i for idx in picks.values() for i in idx)[: spec.max_rows])
        picks = {t: [i for i in idx if i in kept] for t, idx in picks.items()}
    context = {
        "source_prompt_id": _column(table, canonical, "prompt_id"),
        "customer_tier": _column(table, canonical, "customer_tier"),
        "arm": _column(table, canonical, "arm"),
    }
    labels: list[dict[str, Any]] = []
    for name, idx in picks.items():
        if not idx:
            continue
        answers = _caller(rt, ctx, policy, name).run(
            [replace(rows[i], ref=f"{rows[i].ref}/explore") for i in idx]
        )
        pairs = [(i, other) for i, other in zip(idx, answers, strict=True)]
        grades = _grade(rt, ctx, policy, rows, served, pairs, refs)
        for (i, other), (q_first, q_other, spent) in zip(pairs, grades, strict=True):
            first = served[i]
            _fold(first, other, name, q_first, q_other, spent)
            if q_first is not None and q_other is not None:
                extra = {k: v[i] for k, v in context.items()}
                labels += _labels(ctx, rows[i], (first, q_first), (other, q_other), policy, extra)
    return labels


def _caller(rt: Runtime, ctx: JobContext, policy: Policy, tier: str) -> Caller:
    check = rt.answer_check(ctx, policy)
    return Caller(
        policy, rt.settings, rt.guards(policy), ctx, policy.tier(tier), check, cascade=False
    )


def _column(table: pa.Table, canonical: Sequence[bool], name: str) -> list[str | None]:
    """The canonical rows' values of a column, as text (None without the column, and for a
    column of a type that is not text: a customer's ``reference`` of lists grades nothing
    rather than failing a tier batch whose calls are paid)."""
    if name not in table.column_names:
        return [None] * sum(canonical)
    try:
        values = table.column(name).cast(pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return [None] * sum(canonical)
    return [v for v, first in zip(values, canonical, strict=True) if first]


Grade = tuple[float | None, float | None, tuple[Decimal, int]]


def _grade(
    rt: Runtime,
    ctx: JobContext,
    policy: Policy,
    rows: Sequence[Row],
    served: Sequence[Served],
    pairs: Sequence[tuple[int, Served]],
    refs: Sequence[str | None],
) -> list[Grade]:
    """(quality of the first answer, of the partner's, (judge cost, judge calls)) per pair."""
    judge = policy.explore.judge
    at = policy.tier_names.index(judge) if judge != REFERENCE else 0
    out: list[Grade] = []
    asks: list[Row] = []
    for i, other in pairs:
        texts = (served[i].done.text, other.done.text)
        if other.outcome is not Outcome.OK:
            out.append((None, None, (ZERO, 0)))
        elif judge == REFERENCE:
            q1, q2 = (reference_quality(t, refs[i]) for t in texts)
            out.append((q1, q2, (ZERO, 0)))
        else:
            out.append((None, None, (ZERO, 0)))
            for k, text in enumerate(texts):
                ask = judge_row(rows[i], text or "", f"explore-judge{k}", at)
                assert ask is not None  # explore() picks only rows the judge may read
                asks.append(ask)
    if judge == REFERENCE or not asks:
        return out
    verdicts = iter(_caller(rt, ctx, policy, judge).run(asks))
    graded = []
    for (_, other), grade in zip(pairs, out, strict=True):
        if other.outcome is not Outcome.OK:
            graded.append(grade)
            continue
        a, b = next(verdicts), next(verdicts)
        graded.append((grade_of(a), grade_of(b), (a.cost + b.cost, a.calls + b.calls)))
    return graded


def _fold(
    first: Served,
    other: Served,
    tier: str,
    q_first: float | None,
    q_other: float | None,
    spent: tuple[Decimal, int],
) -> None:
    """Charge the row with the partner's answer and the judging; say what happened."""
    first.explored = tier
    first.cost += other.cost + spent[0]
    first.calls += other.calls + spent[1]
    if other.outcome is not Outcome.OK:
        first.notes.append(f"explored: {tier} did not answer ({other.done.error})")
    elif q_first is None or q_other is None:
        first.notes.append(f"explored: {tier} answered too ({usd_text(other.cost)}), ungraded")
    else:
        first.notes.append(
            f"explored: {tier} answered too ({usd_text(other.cost + spent[0])} with grading); "
            f"graded {first.tier.name} {q_first:.2f}, {tier} {q_other:.2f}"
        )


def _labels(
    ctx: JobContext,
    row: Row,
    first: tuple[Served, float],
    other: tuple[Served, float],
    policy: Policy,
    extra: dict[str, str | None],
) -> list[dict[str, Any]]:
    """The two label rows of a graded pair (the first answer's row first)."""
    judge = policy.explore.judge
    if judge != REFERENCE:
        judge = f"{judge}/{policy.tier(judge).primary.name}"
    now = datetime.now(UTC).isoformat(timespec="seconds")
    out = []
    for (s, q), served in ((first, True), (other, False)):
        done = s.done
        out.append(
            {
                "dataset": "feedback",
                "prompt_id": label_id(row.prompt),
                "prompt": row.prompt,
                "model": s.model.name,
                "quality": q,
                "input_tokens": done.input_tokens,
                "output_tokens": done.output_tokens,
                "cost_usd": float(done.cost(s.model)),
                "response": done.text,
                "tier": s.tier.name,
                "judge": judge,
                "tenant": row.tenant,
                "job_id": ctx.job_id,
                "labelled_at": now,
                "served": served,
                **extra,
            }
        )
    return out


def write_labels(
    rt: Runtime,
    ctx: JobContext,
    policy: Policy,
    chunk: int,
    part: str,
    labels: list[dict[str, Any]],
) -> None:
    """Store a tier batch's labels (pairs whose text ``minimise`` keeps out are dropped)."""
    if not labels:
        return
    table = pa.Table.from_pylist(labels, schema=LABEL_SCHEMA)
    drops = dropped(table, policy.minimise)
    keep = [
        drops[k] is None and drops[k ^ 1] is None  # both rows of a pair, or neither
        for k in range(table.num_rows)
    ]
    table = table.filter(pa.array(keep))
    if table.num_rows == 0:
        return
    day = datetime.now(UTC).date().isoformat()
    tenant = str(table.column("tenant")[0])
    rt.storage.write_parquet(layout.labels_part(ctx.job_root, day, tenant, chunk, part), table)
