"""What the serving engines take and give (the seam of ``workers/calls.py``): a distinct
prompt to serve (:class:`Row`), how serving it on one tier ended (:class:`Outcome`, its
final :class:`~routing.schema.Status`), the outcome with everything that led to it
(:class:`Served`), the :class:`TierEngine` Protocol both engines implement, and a
cascade's merge of a first answer with the dearer tier's (:func:`escalated`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum, auto
from typing import Protocol

from routing.cost import ZERO
from routing.judge import JUDGE_SYSTEM, judge_messages, parse_reply
from routing.policy import ModelSpec, TierSpec
from routing.schema import Status
from routing.tokens import count_tokens
from workers.provider import Completion

# ---------------------------------------------------------------- rows in, rows out


@dataclass(frozen=True)
class Row:
    """What serving needs of one distinct prompt."""

    ref: str  # "c<chunk>/r<input row>", never the customer's prompt_id: ledger key, cache owner
    prompt: str
    system: str | None
    max_output_tokens: int | None
    tenant: str
    input_tokens: int
    allowed: int | None  # bit mask of the tiers the policy allows (None: any)


class Outcome(Enum):
    """How serving a prompt on one tier ended — internal to the engine, never written out.

    Every outcome but ``UNAVAILABLE`` is already a row's final :class:`Status`.
    ``UNAVAILABLE`` (every model of the tier down: breaker open, failing or no client) is
    what fallback acts on; unresolved, it ends as ``failed`` (:func:`final_status`)."""

    OK = auto()
    FAILED = auto()  # a permanent error, or retries exhausted with nothing to fall back on
    UNAVAILABLE = auto()  # every model of the tier down (breaker open / failing)
    OVER_BUDGET = auto()


_FINAL: dict[Outcome, Status] = {
    Outcome.OK: Status.OK,
    Outcome.FAILED: Status.FAILED,
    Outcome.UNAVAILABLE: Status.FAILED,
    Outcome.OVER_BUDGET: Status.OVER_BUDGET,
}


def final_status(outcome: Outcome) -> Status:
    """The row status an engine outcome ends as (the one mapping between the two)."""
    return _FINAL[outcome]


@dataclass
class Served:
    """The outcome for one prompt: its final answer and everything that led to it."""

    outcome: Outcome
    done: Completion
    tier: TierSpec
    model: ModelSpec
    cost: Decimal = ZERO
    calls: int = 0
    fallback_from: str | None = None
    escalated_from: str | None = None
    confidence: float | None = None  # the cascade's score of the tier's answer
    confidence_source: str | None = None  # what scored it: logprobs | verifier:<version>
    cache_hit: bool = False
    notes: list[str] = field(default_factory=list)
    mode: str = "realtime"  # how the answer was obtained: "realtime" or "batch"
    batch_id: str | None = None  # the provider batch that answered, in batch mode
    round: int = 1  # the job round of the answer (2: an escalation, a cascade's second call)
    batch_saved: Decimal = ZERO  # realtime price − batch price of the row's batch calls
    explored: str | None = None  # the tier that answered it too (policy explore: labels)

    @property
    def status(self) -> Status:
        return final_status(self.outcome)


class TierEngine(Protocol):
    """Executes one round of one tier batch (the seam: see the module doc)."""

    def run(self, rows: Sequence[Row]) -> list[Served]:
        """One outcome per row, in the rows' order."""
        ...


def scored(served: Served) -> str:
    """``confidence 0.412`` or ``verifier:learned-1/… 0.412``: a cascade score for notes."""
    source = served.confidence_source
    name = "confidence" if source in (None, "logprobs") else source
    return f"{name} {served.confidence or 0.0:.3f}"


def escalated(first: Served, better: Served) -> Served:
    """A row's outcome after a cascade asked a dearer tier again (``better``) because its
    first answer's score (``first.confidence``, from ``first.confidence_source``) was below
    the tier's threshold: the better answer with ``escalated_from``, the first score and
    its source, both calls' cost and the rounds added — or, when the second call did not
    succeed, the first answer with a note (and any cost)."""
    assert first.tier.cascade is not None
    threshold = first.tier.cascade.threshold
    if better.outcome is not Outcome.OK:
        first.notes.append(f"escalation to {better.tier.name} failed: {better.done.error}")
        first.cost += better.cost
        first.calls += better.calls
        return first
    better.escalated_from = first.tier.name
    better.confidence, better.confidence_source = first.confidence, first.confidence_source
    better.cost += first.cost
    better.calls += first.calls
    better.round += first.round
    better.batch_saved += first.batch_saved
    better.fallback_from = first.fallback_from or better.fallback_from
    better.notes = [
        *first.notes,
        f"{scored(first)} < {threshold:.2f}: {first.tier.name} → {better.tier.name}",
        *better.notes,
    ]
    return better


JUDGE_MAX_TOKENS = 16  # "SCORE: 10" and a little room


def judge_row(row: Row, answer: str, purpose: str, judge: int) -> Row | None:
    """The request that asks the judge tier (index ``judge`` in the policy's order) to grade
    ``answer`` to ``row`` (``routing.judge``), or None when the row may not go to that tier
    (PII, entitlements, rules: the judge reads the prompt and the answer, so the row's
    allowed tiers bind it too). Its own ledger key, ``<ref>/<purpose>`` (the cascade's and
    exploration's judgings of one row never share one), only the judge tier allowed (no
    fallback or downgrade to another model), a small output cap."""
    if row.allowed is not None and not row.allowed >> judge & 1:
        return None
    (system, user) = judge_messages(row.prompt, answer)
    assert system["content"] == JUDGE_SYSTEM
    tokens = int(count_tokens([JUDGE_SYSTEM + user["content"]])[0])
    return Row(
        ref=f"{row.ref}/{purpose}",
        prompt=user["content"],
        system=JUDGE_SYSTEM,
        max_output_tokens=JUDGE_MAX_TOKENS,
        tenant=row.tenant,
        input_tokens=tokens,
        allowed=1 << judge,
    )


def grade_of(verdict: Served) -> float | None:
    """The grade a judge call gave (``routing.judge.parse_reply``): None when the call
    failed or the reply was not a score."""
    return parse_reply(verdict.done.text) if verdict.outcome is Outcome.OK else None
