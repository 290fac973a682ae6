"""Provider batch mode's engine: a tier batch served through provider batch APIs, in rounds.

``dispatch`` of a ``mode: batch`` tier calls :func:`submit`; no worker ever waits on a
provider batch. Polling is a chain of short tasks (:func:`collect`, rescheduled with a
countdown by the executor: ``workers/tasks.py``, ``workers/local.py``), each of which
looks at the provider batches once and moves the tier batch on. The state between steps
is the record (``workers/batches/record.py``) in the object store.

**Submit** (round 1 on the routed tier, or a later round on the tier a cascade escalates
to): rows answered by the response cache are served at once; every other row's budget is
reserved at the batch price for the whole round before anything is sent (held up to the
tier's ``deadline_s``); rows that do not fit go to the realtime engine
(``workers/calls.py``), which downgrades them or marks them ``over_budget`` exactly as in
realtime mode (an escalation that does not fit keeps its first answer). The rest is split
into provider batches by the tier's file limits (``routing.batching.split``), each written
to the record as *planned*, submitted, and recorded with its id.

**Collect**: each provider batch's state is read; one past ``deadline_s`` is cancelled.
When every batch of the tier batch has ended, each is collected: an answer is settled in
the ledger at the batch price and cached; an errored request is retried in a next provider
batch while the policy's retry rule and the job's retry budget allow (else it fails); a
request the batch did not reach (expired, cancelled) follows ``on_expired`` — served now in
realtime mode, sent in a new batch, or failed. A round whose tier has a ``cascade`` then
scores its answers together (``workers/verifier.py``: logprob confidence or the job's
verifier) and sends those below the threshold to the nearest dearer tier the row is allowed —
round 2, as a provider batch when that tier is in batch mode, else in realtime; both calls
are paid. When no round is open the result part is written, with the same schema as
realtime (``mode``, ``batch_id``, ``round`` per row).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from routing.batching import request_id, split
from routing.errors import ProviderPermanentError, ProviderRetryableError
from routing.plan import JobContext
from routing.policy import TierSpec
from workers import layout
from workers.accounting import Accounting
from workers.aio import io_loop
from workers.attempts import no_call
from workers.batchapi import BatchApi, batch_api
from workers.batches import record as rec
from workers.calls import Caller
from workers.provider import Completion
from workers.redact import redact_error
from workers.runtime import Runtime
from workers.served import Outcome, Row, Served, escalated
from workers.tierbatch import (
    canonical_mask,
    job_tenant,
    load_batch,
    serving_rows,
)

MIN_POLL_S = 0.05  # the first look at a new batch; the gap doubles with its age, to poll_s
HOLD_MARGIN_S = 3600.0  # a batch reservation is held deadline_s + this


class TierBatchEngine:
    """One tier batch of one chunk in batch mode (see the module doc)."""

    def __init__(self, rt: Runtime, ctx: JobContext, chunk: int, tier: str) -> None:
        self.rt, self.ctx, self.chunk = rt, ctx, chunk
        self.policy = rt.policy(ctx)
        self.tier = self.policy.tier(tier)
        self.guards = rt.guards(self.policy)
        self.accounts = Accounting(self.policy, self.guards, ctx)
        self.uri = layout.batch_record(ctx.job_root, chunk, tier)
        self.index = rec.index(rt.settings)
        self._apis: dict[str, BatchApi] = {}
        self._rows: dict[str, dict[str, Row]] = {}
        self._table: Any = None
        self._record: rec.TierBatch | None = None
        self._lines: dict[tuple[str, str, int, int], bytes] = {}  # see _request_line
        self._written: dict[str, dict[str, Served]] = {}  # outcomes this engine wrote
        self._fresh: set[str] = set()  # batches planned here and not yet sent: none created
        self.dirty = False  # the record changed since it was saved (a plan, a look, …)

    # ------------------------------------------------------------ the record

    @property
    def record(self) -> rec.TierBatch:
        assert self._record is not None
        return self._record

    def load(self) -> rec.TierBatch:
        """The tier batch's record, read again (a poll task's first step)."""
        self._record = rec.load(self.rt.storage, self.uri)
        if self._record is None:
            raise FileNotFoundError(f"{self.uri}: no batch record for this tier batch")
        return self._record

    def save(self) -> None:
        rec.save(self.rt.storage, self.uri, self.record)
        self.dirty = False

    def save_if_dirty(self) -> None:
        """Save what changed (a poll step saves once, when it stops; what it redoes after a
        crash before that — reading states and results, settling, writing outcomes — gives
        the same outcome: the ledger's settlement per row is replaced, not added)."""
        if self.dirty:
            self.save()

    def write_outcomes(self, round_: int, step: str, served: dict[str, Served]) -> None:
        """Keep a step's outcomes (``_job/batches/c<chunk>-<tier>/n<round>-<step>``)."""
        uri = rec.outcomes_uri(self.ctx.job_root, self.record, round_, step)
        rec.write_outcomes(self.rt.storage, uri, served)
        self._written[uri] = dict(served)

    def read_outcomes(self, upto: int | None = None) -> dict[str, Served]:
        """Every step's outcomes so far (of rounds ≤ ``upto``): the ones this engine wrote
        as they are, the others read back."""
        root, storage = self.ctx.job_root, self.rt.storage
        return rec.read_outcomes(storage, root, self.record, self.policy, upto, self._written)

    def staged_table(self) -> Any:
        if self._table is None:
            self._table = self.rt.storage.read_parquet_file(self.record.staged)
        return self._table

    def rows(self, tier: TierSpec) -> dict[str, Row]:
        """The distinct prompts of the tier batch, as served on ``tier`` (its truncation)."""
        if tier.name not in self._rows:
            table = self.staged_table()
            served = serving_rows(
                table, canonical_mask(table), tier, self.chunk, job_tenant(self.ctx)
            )
            self._rows[tier.name] = {r.ref: r for r in served}
        return self._rows[tier.name]

    def api(self, tier: TierSpec) -> BatchApi:
        if tier.name not in self._apis:
            self._apis[tier.name] = batch_api(self.policy, tier.primary, self.rt.settings)
        return self._apis[tier.name]

    # ------------------------------------------------------------ submit

    def start(self, batch: dict[str, Any]) -> None:
        """Plan round 1 (once: a redelivered message finds the record) and submit it."""
        self._record = rec.load(self.rt.storage, self.uri)
        if self._record is None:
            staged = batch.get("staged")
            if not staged:
                staged = layout.staged_batch(self.ctx.job_root, self.chunk, self.tier.name)
                table = load_batch(self.rt.storage, batch)
                self.rt.storage.write_parquet(staged, table, compression=rec.INTERMEDIATE)
            self._record = rec.TierBatch(
                chunk=self.chunk, tier=self.tier.name, staged=staged, nonce=secrets.token_hex(4)
            )
            self.open_round(list(self.rows(self.tier).values()), 1, self.tier, None)
        self.submit_planned()

    def open_round(
        self, rows: Sequence[Row], round_: int, tier: TierSpec, prior: dict[str, Served] | None
    ) -> None:
        """Serve what can be served now (cache; rows over budget in realtime), reserve the
        rest at the batch price and plan their provider batches; save the record."""
        step = rec.Round(round=round_, tier=tier.name, reserved_at=time.time(), refs=[])
        hits, fitting, over = io_loop().run(self._prepare(rows, tier, step.reserved_at))
        if prior is None:
            settled = dict(hits)
            if over:
                served = self.caller(tier).run(over)
                settled.update(zip((r.ref for r in over), served, strict=True))
        else:  # an escalation: a hit is merged with the first answer; over budget keeps it
            settled = {ref: self.merge(prior[ref], s) for ref, s in hits.items()}
            for row in over:
                note = f"escalation to {tier.name} over budget: first answer kept"
                first = prior[row.ref]
                settled[row.ref] = replace(first, notes=[*first.notes, note])
        step.refs = [r.ref for r in rows]
        self.record.rounds.append(step)
        self.plan(fitting, tier, round_, 1)
        if settled:
            self.write_outcomes(round_, f"{tier.name}-now", settled)
        self.save()

    async def _prepare(
        self, rows: Sequence[Row], tier: TierSpec, at: float
    ) -> tuple[dict[str, Served], list[Row], list[Row]]:
        """(cache hits, rows whose batch-price reservation fit, rows over budget)."""
        model, hits = tier.primary, {}
        await self.accounts.prefetch(rows, tier)
        asked: list[Row] = []
        for row in rows:
            hit = await self.accounts.cached(row, model, self.accounts.request(row, tier))
            if hit is None:
                asked.append(row)
            else:
                hits[row.ref] = _from_cache(hit, tier)
        fits = await self.accounts.reserve_many(
            asked,
            tier,
            model,
            datetime.fromtimestamp(at, UTC),
            ttl_s=tier.batch.deadline_s + HOLD_MARGIN_S,
        )
        fitting = [row for row, fit in zip(asked, fits, strict=True) if fit]
        over = [row for row, fit in zip(asked, fits, strict=True) if not fit]
        return hits, fitting, over

    def _request_line(self, row: Row, tier: TierSpec, round_: int, attempt: int) -> bytes:
        """The request's line in the provider's batch file (encoded once per process: the
        plan measures it, the submit right after sends it)."""
        memo = (row.ref, tier.name, round_, attempt)
        line = self._lines.pop(memo, None)
        if line is None:
            custom_id = str(request_id(self.ctx.job_id, row.ref, round_, attempt))
            request = self.accounts.request(row, tier)
            model = tier.primary
            line = self.api(tier).encode(custom_id, model.name, request, reasoning=model.reasoning)
        return line

    def plan(self, rows: Sequence[Row], tier: TierSpec, round_: int, attempt: int) -> None:
        """Provider batches for ``rows`` within the provider's file limits, planned."""
        if not rows:
            return
        lines = [self._request_line(r, tier, round_, attempt) for r in rows]
        self._lines.update(
            ((r.ref, tier.name, round_, attempt), line) for r, line in zip(rows, lines, strict=True)
        )
        sizes = [len(line) for line in lines]
        limits = tier.batch.limits(self.policy.providers[tier.primary.provider].kind)
        for part in split(sizes, limits):
            key = f"n{round_}-a{attempt}-f{len(self.record.batches)}"
            refs = [rows[i].ref for i in part]
            batch = rec.ProviderBatch(
                key=key, round=round_, attempt=attempt, tier=tier.name, refs=refs
            )
            batch.status = "submitting"  # saved with the plan: a create may follow it
            self.record.batches.append(batch)
            self._fresh.add(key)
        self.dirty = True

    def tag(self, batch: rec.ProviderBatch) -> str:
        """The batch's name at the provider (OpenAI: ``metadata.batch_router``)."""
        name = f"{self.ctx.job_id}/c{self.chunk}/{self.tier.name}/{batch.key}"
        return f"{name}/{self.record.nonce}" if self.record.nonce else name

    def submit_planned(self) -> None:
        """Submit every planned provider batch; each recorded with its id right after.
        A batch is saved as *submitting* before its create (with its plan, or alone), so
        a redelivery that finds it so looks for it at the provider by its tag first."""
        for batch in self.record.batches:
            if batch.batch_id is None and not batch.ended:
                self._submit(batch)

    def _submit(self, batch: rec.ProviderBatch) -> None:
        tier = self.policy.tier(batch.tier)
        api, rows = self.api(tier), self.rows(tier)
        lines = [
            self._request_line(rows[ref], tier, batch.round, batch.attempt) for ref in batch.refs
        ]
        tag = self.tag(batch)
        try:
            found = None
            if batch.status == "submitting" and batch.key not in self._fresh:
                found = io_loop().run(api.find(tag, self.record.created_at - 300))  # a crash
            if found is None:  # may have come after the create; else, the record says
                if batch.status != "submitting" or self.dirty:  # "submitting", saved, first
                    batch.status = "submitting"
                    self.save()
                self._fresh.discard(batch.key)
                found = io_loop().run(api.submit(lines, tag))
        except ProviderRetryableError as exc:
            batch.submit_errors += 1
            batch.error = redact_error(f"could not submit: {exc}")
            if batch.submit_errors >= self.policy.retry.max_attempts:
                batch.ended, batch.status = True, "not_submitted"
            self.save()
            return
        except ProviderPermanentError as exc:
            batch.ended, batch.status = True, "not_submitted"
            batch.error = redact_error(f"provider refused the batch: {exc}")
            self.save()
            return
        batch.batch_id, batch.submitted_at, batch.status = found, time.time(), "submitted"
        self.save()
        self.summary(batch)

    def summary(self, batch: rec.ProviderBatch) -> None:
        provider = self.policy.tier(batch.tier).primary.provider
        rec.publish_summary(self.index, self.ctx.job_id, self.chunk, batch, provider)

    def caller(self, tier: TierSpec) -> Caller:
        """The realtime engine for rows of ``tier`` this tier batch serves now."""
        check = self.rt.answer_check(self.ctx, self.policy)
        return Caller(self.policy, self.rt.settings, self.guards, self.ctx, tier, check)

    def merge(self, first: Served, better: Served) -> Served:
        """A round-2 outcome merged with the round-1 answer it escalates (workers.calls)."""
        return escalated(first, better)


def _from_cache(hit: tuple[Completion, Decimal | None], tier: TierSpec) -> Served:
    """A cached answer: free, or — this very row's own answer from an earlier delivery —
    at the cost it was settled at."""
    done, own = hit
    if own is not None:
        return Served(Outcome.OK, done, tier, tier.primary, own, done.attempts, mode="batch")
    return Served(Outcome.OK, done, tier, tier.primary, cache_hit=True, mode="batch")


def lost(tier: TierSpec, ref: str) -> Served:
    return Served(Outcome.FAILED, no_call(f"no outcome recorded for {ref}"), tier, tier.primary)
