"""Collecting a tier batch in batch mode: one look at its provider batches per poll task
(``workers/batches/engine.py`` explains the whole; this is its second half).

:meth:`Collector.step` reads the state of every provider batch not ended (cancelling one
past its deadline), collects the ended ones — answers settled at the batch price, errored
requests retried in a next provider batch within the retry rule and the job's retry budget,
unanswered ones after ``on_expired`` — closes a finished round (a cascade's unsure answers
escalated: round 2), and writes the result part when no round is open. A provider that
cannot be reached during a look (a retryable error) is looked at again at the next poll.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from decimal import Decimal

from routing.batching import request_id
from routing.errors import ProviderPermanentError, ProviderRetryableError
from routing.policy import TierSpec
from routing.results import assemble
from routing.rules import allowed_tiers
from workers.aio import io_loop
from workers.attempts import no_call
from workers.batchapi import BatchResult
from workers.batches import record as rec
from workers.batches.engine import MIN_POLL_S, TierBatchEngine, lost
from workers.explore import explore, write_labels
from workers.provider import Completion
from workers.redact import redact_error
from workers.runtime import Sink
from workers.served import Outcome, Row, Served
from workers.tierbatch import canonical_mask, outcomes, publish


class Collector:
    """The collecting half of a :class:`TierBatchEngine`."""

    def __init__(self, engine: TierBatchEngine) -> None:
        self.e = engine

    # ------------------------------------------------------------ collect

    def step(self, sink: Sink) -> float | None:
        """One look: the seconds until the next, or None when the result part is written."""
        self.e.load()
        if self.e.record.published:
            return None
        self.e.submit_planned()
        if self._poll():
            return self._again()
        for batch in self.e.record.pending():
            self._collect(batch)
        self.e.submit_planned()
        if self.e.record.pending():
            return self._again()
        for round_ in self.e.record.open_rounds():
            self._close(round_)
        if self.e.record.pending():
            self.e.submit_planned()
            return self._again()
        self._publish(sink)  # saves the record: the common path writes it once per step
        return None

    def _again(self) -> float:
        """The record saved (when this step changed it) and the seconds to the next look."""
        self.e.save_if_dirty()
        return self.delay()

    def _poll(self) -> bool:
        """Read the state of every submitted batch not ended; cancel those past their
        deadline. True while any batch has not ended (or is yet to be submitted). A batch's
        summary is published, and the record marked to be saved, only when a look changed
        it."""
        waiting, now = False, time.time()
        for batch in self.e.record.pending():
            if batch.ended:
                continue
            if batch.batch_id is None:
                waiting = True
                continue
            tier, before = self.e.policy.tier(batch.tier), _looks(batch)
            try:
                state = io_loop().run(self.e.api(tier).state(batch.batch_id))
            except ProviderRetryableError as exc:  # looked at again at the next poll
                batch.error = redact_error(f"could not read the batch: {exc}")
                waiting = True
            except ProviderPermanentError as exc:  # the provider does not know it (any more)
                batch.ended, batch.status = True, "lost"
                batch.error = redact_error(f"the provider lost the batch: {exc}")
            else:
                batch.status, batch.counts, batch.ended = state.status, state.counts, state.ended
                batch.files = list(state.files) if state.files is not None else None
                batch.error = state.error or batch.error
                overdue = now - (batch.submitted_at or now) > tier.batch.deadline_s
                if not batch.ended and overdue and not batch.cancel_requested:
                    io_loop().run(self.e.api(tier).cancel(batch.batch_id))
                    batch.cancel_requested = True
                waiting = waiting or not batch.ended
                if _looks(batch) != before:
                    self.e.summary(batch)
            self.e.dirty = self.e.dirty or _looks(batch) != before
        return waiting

    def delay(self) -> float:
        """Until the next look: the youngest pending batch's age (doubling), ≤ poll_s."""
        pending = self.e.record.pending()
        poll_s = min(self.e.policy.tier(b.tier).batch.poll_s for b in pending)
        now = time.time()
        ages = [now - b.submitted_at for b in pending if b.submitted_at is not None]
        return min(poll_s, max(MIN_POLL_S, min(ages, default=0.0)))

    def _collect(self, batch: rec.ProviderBatch) -> None:
        """Settle an ended provider batch's rows; retries go into a next provider batch."""
        tier = self.e.policy.tier(batch.tier)
        results: dict[str, BatchResult] = {}
        if batch.batch_id is not None and batch.status not in ("not_submitted", "lost"):
            try:
                found = io_loop().run(self.e.api(tier).results(batch.batch_id, batch.files))
            except ProviderRetryableError as exc:  # collected at the next poll
                batch.error = redact_error(f"could not read the results: {exc}")
                self.e.dirty = True
                return
            results = {r.custom_id: r for r in found}
        round_ = next(
            r for r in self.e.record.rounds if r.round == batch.round and r.tier == tier.name
        )
        rows = self.e.rows(tier)  # built here, not on the I/O loop's thread
        settled, retry, realtime = io_loop().run(self._settle(batch, tier, round_, rows, results))
        fresh = [ref for ref, s in settled.items() if s.outcome is Outcome.OK]
        if tier.cascade is not None and fresh and batch.round == 1:
            # scored together, as the realtime engine does; an escalation's answer (round 2)
            # is final — a cascade escalates once, in both modes
            self.e.caller(tier).score([rows[r] for r in fresh], [settled[r] for r in fresh])
        if realtime:
            served = self.e.caller(tier).run([rows[ref] for ref in realtime])
            for ref, s in zip(realtime, served, strict=True):
                s.notes.append(f"batch {batch.batch_id} did not answer: served in realtime")
                settled[ref] = s
        if batch.round > 1:
            prior = self._prior(batch.round)
            settled = {ref: self.e.merge(prior[ref], s) for ref, s in settled.items()}
        self.e.write_outcomes(batch.round, batch.key, settled)
        self.e.plan([rows[ref] for ref in retry], tier, batch.round, batch.attempt + 1)
        batch.collected = True
        self.e.dirty = True
        self.e.summary(batch)

    async def _settle(
        self,
        batch: rec.ProviderBatch,
        tier: TierSpec,
        round_: rec.Round,
        rows: dict[str, Row],
        results: dict[str, BatchResult],
    ) -> tuple[dict[str, Served], list[str], list[str]]:
        """Per row: (final outcomes, refs to retry in a batch, refs to serve in realtime).
        The answers are settled together (:meth:`Accounting.settle_many`)."""
        model = tier.primary
        at = datetime.fromtimestamp(round_.reserved_at, UTC)
        settled: dict[str, Served] = {}
        answered: list[str] = []
        retry: list[str] = []
        realtime: list[str] = []
        retry_limit = self._retry_limit()
        answers: list[tuple[Row, Completion]] = []
        for ref in batch.refs:
            result = results.get(self._custom_id(batch, ref))
            if result is not None and result.kind == "succeeded":
                answered.append(ref)
                answers.append((rows[ref], result.completion))
                continue
            then = await self._after_failure(batch, tier, result, retry_limit)
            if then == "retry":
                retry.append(ref)
                continue
            row = rows[ref]
            request = self.e.accounts.request(row, tier)
            await self.e.accounts.release(
                self.e.accounts.reservation(row, tier, model, request, at, batch=True)
            )
            if then == "realtime":
                realtime.append(ref)
            else:
                settled[ref] = self._failed(batch, tier, result)
        costs = await self.e.accounts.settle_many(answers, tier, model, at)
        for ref, (_, done), cost in zip(answered, answers, costs, strict=True):
            settled[ref] = self._answered(batch, tier, done, cost)
        return settled, retry, realtime

    def _custom_id(self, batch: rec.ProviderBatch, ref: str) -> str:
        return str(request_id(self.e.ctx.job_id, ref, batch.round, batch.attempt))

    def _retry_limit(self) -> int:
        return max(1, math.ceil(self.e.policy.retry.job_budget * max(self.e.ctx.rows_total, 1)))

    async def _after_failure(
        self, batch: rec.ProviderBatch, tier: TierSpec, result: BatchResult | None, limit: int
    ) -> str:
        """What a request that was not answered becomes: ``retry``, ``realtime`` or ``fail``."""
        more = batch.attempt < self.e.policy.retry.max_attempts
        if result is not None and result.kind == "errored":
            retryable = result.completion.retryable and more
            if retryable and await self.e.guards.retries.take(self.e.ctx.job_id, limit):
                return "retry"
            return "fail"
        if batch.status == "not_submitted" or (result is None and batch.error and not batch.counts):
            return "fail"  # the whole batch was refused (validation, submission)
        policy = tier.batch.on_expired
        if policy == "resubmit":
            return "retry" if more else "fail"
        return policy

    def _answered(
        self, batch: rec.ProviderBatch, tier: TierSpec, done: Completion, cost: Decimal
    ) -> Served:
        model = tier.primary
        full = done.cost(model)
        served = Served(
            Outcome.OK,
            done,
            tier,
            model,
            cost,
            calls=batch.attempt,
            mode="batch",
            batch_id=batch.batch_id,
            batch_saved=full - cost,
        )
        return served

    def _failed(
        self, batch: rec.ProviderBatch, tier: TierSpec, result: BatchResult | None
    ) -> Served:
        if result is not None:
            done = result.completion
        else:
            why = batch.error or f"no result for the request in batch {batch.batch_id}"
            done = no_call(why, attempts=batch.attempt)
        return Served(
            Outcome.FAILED,
            done,
            tier,
            tier.primary,
            calls=batch.attempt if batch.batch_id else 0,
            mode="batch",
            batch_id=batch.batch_id,
        )

    # ------------------------------------------------------------ rounds

    def _prior(self, round_: int) -> dict[str, Served]:
        """The outcomes of the rounds before ``round_`` (what an escalation started from)."""
        return self.e.read_outcomes(upto=round_ - 1)

    def _close(self, round_: rec.Round) -> None:
        """A round whose batches are all collected: escalate its unsure answers (cascade)."""
        tier = self.e.policy.tier(round_.tier)
        round_.done, self.e.dirty = True, True
        if tier.cascade is None:  # nothing more to send
            return
        mine = self.e.read_outcomes(upto=round_.round)
        unsure = [
            ref
            for ref in round_.refs
            if (s := mine.get(ref)) is not None
            and s.outcome is Outcome.OK
            and s.mode == "batch"
            and s.round == round_.round
            and s.confidence is not None
            and s.escalated_from is None  # escalated once already: final, as in realtime
            and s.confidence < tier.cascade.threshold
        ]
        groups: dict[str, list[str]] = {}
        for ref in unsure:
            dearer = self._dearer(tier, self.e.rows(tier)[ref])
            if dearer is not None:
                groups.setdefault(dearer, []).append(ref)
        for name, refs in groups.items():
            target = self.e.policy.tier(name)
            rows = self.e.rows(target)
            prior = {ref: mine[ref] for ref in refs}
            if target.batched:
                self.e.open_round([rows[r] for r in refs], round_.round + 1, target, prior)
                continue
            served = self.e.caller(target).run([rows[r] for r in refs])
            merged = {r: self.e.merge(prior[r], s) for r, s in zip(refs, served, strict=True)}
            self.e.write_outcomes(round_.round + 1, f"{name}-now", merged)
        if groups:  # escalations were paid: a crash from here on must not pay them again
            self.e.save()

    def _dearer(self, tier: TierSpec, row: Row) -> str | None:
        names = self.e.policy.tier_names
        allowed = names if row.allowed is None else allowed_tiers(row.allowed, names)
        dearer = [n for n in names[names.index(tier.name) + 1 :] if n in allowed]
        return dearer[0] if dearer else None

    # ------------------------------------------------------------ publish

    def _publish(self, sink: Sink) -> None:
        """Every round done: the result part, in the realtime schema; the record says so."""
        found = self.e.read_outcomes()
        table = self.e.staged_table()
        rows = self.e.rows(self.e.tier)
        served = [found.get(ref) or lost(self.e.tier, ref) for ref in rows]
        canonical = canonical_mask(table)
        e = self.e
        labels = explore(e.rt, e.ctx, e.policy, table, canonical, list(rows.values()), served)
        values = outcomes(table, canonical, served, self.e.policy, self.e.ctx)
        write_labels(e.rt, e.ctx, e.policy, e.chunk, e.tier.name, labels)
        publish(
            self.e.rt, self.e.ctx, self.e.chunk, self.e.tier.name, assemble(table, values), sink
        )
        self.e.record.published = True
        self.e.save()
        if self.e.policy.minimise:  # the staged copy holds the prompt text
            self.e.rt.storage.delete(self.e.record.staged)


def _looks(batch: rec.ProviderBatch) -> tuple[object, ...]:
    """What a look at a provider batch may change."""
    return (batch.status, batch.counts, batch.ended, batch.error, batch.cancel_requested)
