"""Anthropic's Message Batches protocol, with the header rules of ``/v1/messages``
(workers/sim/anthropic_messages.py: a key, and ``anthropic-version``).

- ``POST /v1/messages/batches``: ``{requests: [{custom_id, params: <Messages request>}]}``, 1 to
  100,000 requests, at most 256 MB (413 ``request_too_large`` beyond); each ``custom_id``
  matches ``^[a-zA-Z0-9_-]{1,64}$`` and is unique in the batch, each ``params`` an object, else
  400 ``invalid_request_error``. ``params`` are checked when the batch runs, as Anthropic does:
  one the Messages endpoint would refuse comes back ``errored`` with an
  ``invalid_request_error``.
- ``GET /v1/messages/batches/{id}``, ``POST /v1/messages/batches/{id}/cancel`` (409 once
  ended), ``GET /v1/messages/batches`` (newest first; ``limit`` 1..1000, default 20;
  ``after_id`` / ``before_id``; ``data``, ``has_more``, ``first_id``, ``last_id``).
- The Message Batch object: ``{id: "msgbatch_…", type: "message_batch", processing_status:
  in_progress | canceling | ended, request_counts: {processing, succeeded, errored, canceled,
  expired}, ended_at, created_at, expires_at, cancel_initiated_at, archived_at: null,
  results_url}`` with RFC 3339 times; ``results_url`` once ended. The lifecycle is
  workers/sim/batch_core.py's.
- ``GET /v1/messages/batches/{id}/results`` (400 before the batch ended): JSONL, one line per
  request in an order shuffled with the app's random source: ``{custom_id, result: {type:
  "succeeded", message}}`` (the ``message`` as ``POST /v1/messages`` answers it), ``{type:
  "errored", error: {type: "error", error: {type, message}}}``, ``{type: "canceled"}`` or
  ``{type: "expired"}``. Answers are computed when the results are read. In replay mode
  (workers/sim/replay.py) a request without a recording is ``errored`` with a
  ``not_found_error``.
"""

from __future__ import annotations

import json
import re
import time
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from workers.sim import batch_core
from workers.sim.anthropic_messages import _header_error, message_body, parse
from workers.sim.batch_core import BatchStore, Kind, SimBatch
from workers.sim.errors import BadRequest, anthropic_error
from workers.sim.prompt import Prompt
from workers.sim.replay import MISS, Replay, miss_message, source
from workers.sim.state import STATE, SimState

__all__ = ["install"]

MAX_BODY_BYTES = 256 * 1024 * 1024
MAX_REQUESTS = 100_000
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_PATH = "/v1/messages/batches"


def _rfc3339(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")


def _prompt(params: bytes) -> Prompt | None:
    try:
        return parse(json.loads(params))
    except BadRequest:
        return None


def _prompts(batch: SimBatch) -> Iterator[Prompt | None]:
    return map(_prompt, batch.extra["params"])


def _batch_object(batch: SimBatch, url: str) -> dict[str, Any]:
    ended = batch.ended
    counts = {k.name.lower(): batch.count(k) for k in Kind}
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": batch.phase(time.time()).replace("finalizing", "in_progress"),
        "request_counts": {"processing": 0 if ended else batch.size, **counts},
        "ended_at": _rfc3339(batch.ended_at),
        "created_at": _rfc3339(batch.created_at),
        "expires_at": _rfc3339(batch.created_at + batch_core.WINDOW_S),
        "cancel_initiated_at": _rfc3339(batch.cancel_at),
        "archived_at": None,
        "results_url": f"{url}{_PATH}/{batch.id}/results" if ended else None,
    }


def _root(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _requests(body: Any) -> list[tuple[str, bytes]]:
    """The custom ids and compact params of a create request; BadRequest when refused."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_REQUESTS:
        raise BadRequest(f"requests: 1 to {MAX_REQUESTS} requests are required", None, "")
    seen: set[str] = set()
    out = []
    for i, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
            raise BadRequest(
                f"requests.{i}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$", None, ""
            )
        if custom_id in seen:
            raise BadRequest(f"requests.{i}.custom_id: {custom_id!r} is not unique", None, "")
        if not isinstance(item.get("params"), dict):
            raise BadRequest(f"requests.{i}.params: must be an object", None, "")
        seen.add(custom_id)
        out.append((custom_id, json.dumps(item["params"], separators=(",", ":")).encode()))
    return out


async def create_batch(request: web.Request) -> web.Response:
    state, store = request.app[STATE], _store(request.app)
    try:
        raw = await batch_core.read_limited(request.content.iter_chunked(1 << 20), MAX_BODY_BYTES)
    except batch_core.TooLarge:
        return _error(413, "request_too_large", "Request exceeds the maximum size of 256 MB.")
    try:
        requests = _requests(json.loads(raw))
    except ValueError:
        return anthropic_error(400, "The request body is not valid JSON.")
    except BadRequest as exc:
        return anthropic_error(400, str(exc))
    batch = store.create(state, store.new_id(), (custom_id for custom_id, _ in requests))
    batch.extra["custom_ids"] = [custom_id for custom_id, _ in requests]
    batch.extra["params"] = [params for _, params in requests]
    for index, prompt in enumerate(_prompts(batch)):
        if prompt is None:  # refused when run: an invalid_request_error result
            batch.plan[index] = Kind.ERRORED
    store.plan_misses(state, batch)
    return web.json_response(_batch_object(batch, _root(request)))


def _failure(prompt: Prompt | None, replay: Replay | None) -> dict[str, str]:
    """Why an errored request failed: invalid params, a replay miss, or a simulated 500."""
    if prompt is None:
        return {"type": "invalid_request_error", "message": "params: not a valid Messages request"}
    if replay is not None and source(prompt, replay)[0] == MISS:
        return {"type": "not_found_error", "message": miss_message(prompt.model)}
    return {"type": "api_error", "message": "Internal server error (simulated)."}


def _result(batch: SimBatch, index: int, replay: Replay | None) -> dict[str, Any]:
    kind = (batch.final or batch.plan)[index]
    if kind == Kind.SUCCEEDED:
        prompt = _prompt(batch.extra["params"][index])
        assert prompt is not None  # an invalid request is planned as errored
        tail = f"{batch.id.removeprefix('msgbatch_')}{index:06d}"
        return {"type": "succeeded", "message": message_body(prompt, f"msg_{tail}", replay)}
    if kind == Kind.ERRORED:
        error = _failure(_prompt(batch.extra["params"][index]), replay)
        return {"type": "errored", "error": {"type": "error", "error": error}}
    return {"type": "canceled" if kind == Kind.CANCELED else "expired"}


def _order(state: SimState, batch: SimBatch) -> array[int]:
    """The batch's results order: shuffled once, with the app's random source."""
    if "order" not in batch.extra:
        shuffled = list(range(batch.size))
        state.rng.shuffle(shuffled)
        batch.extra["order"] = array("I", shuffled)
    order: array[int] = batch.extra["order"]
    return order


async def results(request: web.Request) -> web.StreamResponse:
    state, store = request.app[STATE], _store(request.app)
    batch = store.batches.get(request.match_info["batch_id"])
    if batch is None:
        return _error(404, "not_found_error", "No such message batch.")
    if not batch.ended:
        return anthropic_error(400, f"Message batch {batch.id} has not ended yet.")
    store.counters(state)["results_downloads"] += 1
    ids = batch.extra["custom_ids"]
    lines = (
        json.dumps(
            {"custom_id": ids[i], "result": _result(batch, i, state.replay)},
            separators=(",", ":"),
        ).encode()
        + b"\n"
        for i in _order(state, batch)
    )
    return await batch_core.stream_lines(request, lines, "application/binary")


def _error(status: int, kind: str, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status)


def _store(app: web.Application) -> BatchStore:
    return batch_core.stores(app)["anthropic"]


async def get_batch(request: web.Request) -> web.Response:
    state, store = request.app[STATE], _store(request.app)
    batch = store.batches.get(request.match_info["batch_id"])
    if batch is None:
        return _error(404, "not_found_error", "No such message batch.")
    store.counters(state)["retrieves"] += 1
    return web.json_response(_batch_object(store.advance(state, batch), _root(request)))


async def cancel_batch(request: web.Request) -> web.Response:
    state, store = request.app[STATE], _store(request.app)
    batch = store.batches.get(request.match_info["batch_id"])
    if batch is None:
        return _error(404, "not_found_error", "No such message batch.")
    if batch.ended:
        return _error(409, "invalid_request_error", f"Message batch {batch.id} has ended.")
    if batch.cancel_at is None:
        batch.cancel_at = time.time()
        store.counters(state)["cancels"] += 1
    return web.json_response(_batch_object(batch, _root(request)))


def _page(newest: list[str], query: Any, limit: int) -> tuple[list[str], bool]:
    """The ids of one list page (newest first) and whether more lie beyond it."""
    if query.get("before_id") in newest:
        end = newest.index(query["before_id"])
        return newest[max(0, end - limit) : end], end - limit > 0
    after = query.get("after_id")
    start = newest.index(after) + 1 if after in newest else 0
    return newest[start : start + limit], start + limit < len(newest)


async def list_batches(request: web.Request) -> web.Response:
    state, store = request.app[STATE], _store(request.app)
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        return anthropic_error(400, "limit: must be between 1 and 1000")
    ids, more = _page(list(reversed(store.batches)), request.query, limit)
    page = [_batch_object(store.advance(state, store.batches[i]), _root(request)) for i in ids]
    return web.json_response(
        {
            "data": page,
            "has_more": more,
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
        }
    )


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    """The Messages endpoint's header rules on every batch route."""
    if request.path.startswith(_PATH):
        _store(request.app).counters(request.app[STATE])["http_requests"] += 1
        refused = _header_error(request)
        if refused is not None:
            return refused
    response: web.StreamResponse = await handler(request)
    return response


def install(app: web.Application) -> None:
    batch_core.stores(app)["anthropic"] = BatchStore("anthropic_batches", "msgbatch_", _prompts)
    app.middlewares.append(_headers)
    app.router.add_post(_PATH, create_batch)
    app.router.add_get(_PATH, list_batches)
    app.router.add_get(_PATH + "/{batch_id}", get_batch)
    app.router.add_get(_PATH + "/{batch_id}/results", results)
    app.router.add_post(_PATH + "/{batch_id}/cancel", cancel_batch)
