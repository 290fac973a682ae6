"""What the simulator's two batch APIs share: a batch's requests and lifecycle, the store of
one API's batches, and the ``POST /_sim/batches/{id}/expire`` control endpoint.

A batch keeps one byte per request (its planned outcome, drawn at creation from the app's
random source: expire with ``batch_expire_rate``, else error with ``batch_error_rate``, else
succeed) and, once ended, one byte per request for its final kind. The requests themselves
stay with the API module (the uploaded file, the request params as compact JSON); answers are
computed when results are read, never stored.

Lifecycle (:meth:`SimBatch.advance`, at each retrieve): a batch ends at the first retrieve at
or after ``created_at + processing_s`` (``processing_s`` being the config's
``batch_processing_s`` when it was created) with its planned outcomes; a batch whose cancel was
asked for ends at the next retrieve with every request canceled (requests are answered all at
once at the end, so none was answered before); ``POST /_sim/batches/{id}/expire`` ends it at
once with every request expired. Ending counts the outcomes in the API's counters
(``succeeded``, ``errored``, ``expired``, ``canceled``) and each answer as a completion of the
shared counters (with its source: judge, replay hit or miss; workers/sim/replay.py).

Replay mode (:meth:`BatchStore.plan_misses`, at creation): a request without a recorded answer
is planned as errored; its result is the realtime endpoint's 404 ``replay_miss`` error.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from aiohttp import web

from workers.sim.errors import openai_error
from workers.sim.prompt import Prompt
from workers.sim.replay import MISS, source
from workers.sim.state import STATE, SimState
from workers.sim.stats import Stats

__all__ = [
    "BATCH_STORES",
    "BatchStore",
    "Kind",
    "SimBatch",
    "TooLarge",
    "install",
    "read_limited",
    "stream_lines",
]

FINALIZING_AT = 0.8  # the share of the processing time after which OpenAI says "finalizing"
WINDOW_S = 24 * 3600  # the completion window: expires_at = created_at + 24 h


class Kind(IntEnum):
    """A request's outcome: planned at creation (the first three), final at the end."""

    SUCCEEDED = 0
    ERRORED = 1
    EXPIRED = 2
    CANCELED = 3


class TooLarge(Exception):
    """A request body over the API's size limit."""


@dataclass(eq=False)
class SimBatch:
    """One batch: its id, times, one planned and (once ended) one final kind per request."""

    id: str
    created_at: float
    processing_s: float
    plan: bytearray
    final: bytearray | None = None
    ended_at: float | None = None
    cancel_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the API module's own fields

    @property
    def size(self) -> int:
        return len(self.plan)

    @property
    def ended(self) -> bool:
        return self.final is not None

    def phase(self, now: float) -> str:
        """``in_progress``, ``finalizing``, ``canceling`` or ``ended`` (after :meth:`advance`)."""
        if self.ended:
            return "ended"
        if self.cancel_at is not None:
            return "canceling"
        if now >= self.created_at + FINALIZING_AT * self.processing_s:
            return "finalizing"
        return "in_progress"

    def due(self, now: float) -> bool:
        """Would a retrieve now end it?"""
        return not self.ended and (
            self.cancel_at is not None or now >= self.created_at + self.processing_s
        )

    def count(self, kind: Kind) -> int:
        return 0 if self.final is None else self.final.count(kind)

    def reason(self) -> Kind:
        """Why it ended: CANCELED, EXPIRED (some request not reached) or SUCCEEDED."""
        if self.count(Kind.CANCELED):
            return Kind.CANCELED
        return Kind.EXPIRED if self.count(Kind.EXPIRED) else Kind.SUCCEEDED


@dataclass
class BatchStore:
    """One API's batches, and the custom ids its earlier batches carried (for the
    ``duplicate_requests`` counter; forgotten with the counters at ``/_sim/reset``)."""

    section: str
    prefix: str
    prompts: Callable[[SimBatch], Iterator[Prompt | None]]  # in order; None: not valid
    batches: dict[str, SimBatch] = field(default_factory=dict)
    _seen: set[int] = field(default_factory=set)
    _stats: Stats | None = None
    _next: int = 0

    def counters(self, state: SimState) -> Any:
        return state.stats.section(self.section)

    def new_id(self) -> str:
        self._next += 1
        return f"{self.prefix}{self._next:08d}{time.time_ns() % 10**9:09d}"

    def create(self, state: SimState, batch_id: str, custom_ids: Iterator[str]) -> SimBatch:
        """A new batch of these requests, each outcome drawn now; counted as submitted."""
        counters = self.counters(state)
        seen = self._seen_of(state)
        cfg = state.config
        plan = bytearray()
        for custom_id in custom_ids:
            key = int.from_bytes(hashlib.blake2b(custom_id.encode(), digest_size=8).digest())
            counters["duplicate_requests"] += key in seen
            seen.add(key)
            plan.append(_draw(state, cfg.batch_expire_rate, cfg.batch_error_rate))
        counters["batches_created"] += 1
        counters["requests_submitted"] += len(plan)
        batch = SimBatch(batch_id, time.time(), cfg.batch_processing_s, plan)
        self.batches[batch_id] = batch
        return batch

    def advance(self, state: SimState, batch: SimBatch) -> SimBatch:
        """End ``batch`` if a retrieve now ends it (see the module's docstring)."""
        if batch.due(time.time()):
            everyone: Kind | None = Kind.CANCELED if batch.cancel_at is not None else None
            self.finish(state, batch, everyone)
        return batch

    def finish(self, state: SimState, batch: SimBatch, everyone: Kind | None = None) -> None:
        """End ``batch`` now: every request ``everyone``, or as planned; count it all."""
        final = bytearray([everyone]) * batch.size if everyone is not None else batch.plan
        batch.final, batch.ended_at = bytearray(final), time.time()
        counters = self.counters(state)
        for kind in Kind:
            counters[kind.name.lower()] += batch.final.count(kind)
        if everyone is not None:
            return
        if state.replay is None and not batch.count(Kind.SUCCEEDED):
            return
        for prompt, outcome in zip(self.prompts(batch), batch.final, strict=True):
            if prompt is None or outcome not in (Kind.SUCCEEDED, Kind.ERRORED):
                continue
            origin = source(prompt, state.replay)[0]
            if outcome == Kind.SUCCEEDED:
                state.stats.record_completion(prompt.model, prompt.digest)
                state.tally(origin)
            elif origin == MISS:
                state.tally(origin)

    def plan_misses(self, state: SimState, batch: SimBatch) -> None:
        """Replay mode: plan each request without a recorded answer as errored (its result a
        404 ``replay_miss`` error; decided at creation, like the other outcomes)."""
        if state.replay is None:
            return
        for index, prompt in enumerate(self.prompts(batch)):
            planned = batch.plan[index] == Kind.SUCCEEDED
            if planned and prompt is not None and source(prompt, state.replay)[0] == MISS:
                batch.plan[index] = Kind.ERRORED

    def _seen_of(self, state: SimState) -> set[int]:
        if self._stats is not state.stats:  # the counters were reset: forget with them
            self._stats, self._seen = state.stats, set()
        return self._seen


def _draw(state: SimState, expire_rate: float, error_rate: float) -> Kind:
    if state.roll(expire_rate):
        return Kind.EXPIRED
    return Kind.ERRORED if state.roll(error_rate) else Kind.SUCCEEDED


BATCH_STORES = web.AppKey("sim_batch_stores", dict[str, BatchStore])


def stores(app: web.Application) -> dict[str, BatchStore]:
    """The app's batch stores by API (made on first use)."""
    if BATCH_STORES not in app:
        app[BATCH_STORES] = {}
    return app[BATCH_STORES]


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The body these ``chunks`` make, up to ``limit`` bytes (TooLarge beyond: the app's
    ``client_max_size`` is the realtime endpoints' limit, far below a batch's)."""
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"more than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def stream_lines(
    request: web.Request, lines: Iterable[bytes], content_type: str
) -> web.StreamResponse:
    """Send ``lines`` as they are generated, letting the event loop serve others meanwhile
    (answers of a large batch are computed here, when they are read)."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    chunk: list[bytes] = []
    for count, line in enumerate(lines, 1):
        chunk.append(line)
        if count % 500 == 0:
            await response.write(b"".join(chunk))
            chunk.clear()
            await asyncio.sleep(0)
    await response.write(b"".join(chunk))
    await response.write_eof()
    return response


async def expire(request: web.Request) -> web.Response:
    """``POST /_sim/batches/{id}/expire``: end the batch now, every request expired."""
    batch_id = request.match_info["batch_id"]
    state = request.app[STATE]
    for store in stores(request.app).values():
        batch = store.batches.get(batch_id)
        if batch is None:
            continue
        if batch.ended:
            return openai_error(409, f"batch {batch_id} has already ended", "conflict", None)
        store.finish(state, batch, Kind.EXPIRED)
        return web.json_response({"id": batch_id, "expired": batch.size})
    return openai_error(404, f"no batch {batch_id}", "invalid_request_error", "not_found")


def install(app: web.Application) -> None:
    app.router.add_post("/_sim/batches/{batch_id}/expire", expire)
