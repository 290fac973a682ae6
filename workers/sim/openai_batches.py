"""OpenAI's Files and Batches protocols, for ``/v1/chat/completions`` requests.

- ``POST /v1/files`` (multipart: ``purpose=batch``, ``file`` a JSONL file of at most 200 MB)
  → the File object ``{id: "file-…", object: "file", bytes, created_at, filename, purpose,
  status: "processed"}``; ``GET /v1/files/{id}``; ``GET /v1/files/{id}/content``.
- ``POST /v1/batches`` (``input_file_id``, ``endpoint: "/v1/chat/completions"``,
  ``completion_window: "24h"``, optional ``metadata`` of at most 16 string pairs) → the Batch
  object, ``status: "validating"``; ``GET /v1/batches/{id}``; ``POST /v1/batches/{id}/cancel``
  (409 once the batch has ended); ``GET /v1/batches`` (newest first; ``limit`` 1..100,
  default 20; ``after`` a batch id; ``first_id``, ``last_id``, ``has_more``).
- The input file is checked when the batch is created: a line that is not a JSON object, a
  missing or repeated ``custom_id``, a ``method`` other than POST, a ``url`` other than the
  batch's endpoint, a ``body`` the chat endpoint would refuse, an empty file or more than
  50,000 requests make the batch ``failed`` with ``errors: {object: "list", data: [{code,
  message, param, line}]}`` (at most 100 listed).
- Statuses after creation, at each retrieve (workers/sim/batch_core.py): ``in_progress``,
  ``finalizing`` (the last fifth of the processing time), then ``completed`` — or ``expired``
  when a request was not reached, ``cancelling`` → ``cancelled`` after a cancel.
- The output file (``file-out-<batch id>``, purpose ``batch_output``) holds a line per answered
  request ``{id: "batch_req_…", custom_id, response: {status_code: 200, request_id, body:
  <chat.completion>}, error: null}``; the error file (``file-err-<batch id>``) a line per other
  request: ``response.status_code`` 500 with an error body for a failed one (404
  ``replay_miss`` for one replay mode has no recording of: workers/sim/replay.py), ``response:
  null`` and ``error: {code: "batch_expired" | "batch_cancelled", message}`` for one the batch
  did not reach. Either id is null when its file would be empty. Both are generated, in
  input order, when read; ``request_counts`` are ``{total, completed, failed}``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from workers.sim import batch_core
from workers.sim import openai_batch_lines as jsonl
from workers.sim.batch_core import BatchStore, Kind, SimBatch
from workers.sim.errors import BadRequest, openai_error
from workers.sim.openai_batch_lines import ENDPOINT
from workers.sim.prompt import read_json
from workers.sim.state import STATE

__all__ = ["install"]

MAX_FILE_BYTES = 200 * 1024 * 1024
_OUT, _ERR = "file-out-", "file-err-"
_FILES = web.AppKey("sim_openai_files", dict[str, "InputFile"])


@dataclass(frozen=True)
class InputFile:
    id: str
    data: bytes
    filename: str
    created_at: int


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def _status(batch: SimBatch, now: float) -> str:
    if batch.extra.get("errors"):
        return "failed"
    phase = batch.phase(now)
    if phase != "ended":
        return "cancelling" if phase == "canceling" else phase
    return {Kind.CANCELED: "cancelled", Kind.EXPIRED: "expired"}.get(batch.reason(), "completed")


def _times(batch: SimBatch, status: str) -> dict[str, int | None]:
    created, ended = batch.created_at, batch.ended_at
    finalizing = created + batch_core.FINALIZING_AT * batch.processing_s
    ran = status not in ("validating", "failed")
    return {
        "in_progress_at": _ts(created) if ran else None,
        "finalizing_at": _ts(finalizing) if status in ("finalizing", "completed") else None,
        "completed_at": _ts(ended) if status == "completed" else None,
        "failed_at": _ts(created) if status == "failed" else None,
        "expired_at": _ts(ended) if status == "expired" else None,
        "cancelling_at": _ts(batch.cancel_at),
        "cancelled_at": _ts(ended) if status == "cancelled" else None,
    }


def _batch_object(batch: SimBatch, status: str | None = None) -> dict[str, Any]:
    status = status or _status(batch, time.time())
    errors = batch.extra.get("errors")
    succeeded = batch.count(Kind.SUCCEEDED)
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": ENDPOINT,
        "errors": {"object": "list", "data": errors} if errors else None,
        "input_file_id": batch.extra["input_file_id"],
        "completion_window": "24h",
        "status": status,
        "output_file_id": _OUT + batch.id if succeeded else None,
        "error_file_id": _ERR + batch.id if batch.ended and succeeded < batch.size else None,
        "created_at": int(batch.created_at),
        "expires_at": int(batch.created_at) + batch_core.WINDOW_S,
        **_times(batch, status),
        "request_counts": {
            "total": batch.size,
            "completed": succeeded,
            "failed": batch.count(Kind.ERRORED),
        },
        "metadata": batch.extra.get("metadata"),
    }


def _store(app: web.Application) -> BatchStore:
    return batch_core.stores(app)["openai"]


def _not_found(what: str) -> web.Response:
    return openai_error(404, f"No such {what}.", "invalid_request_error", "not_found")


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(1 << 20):
        yield chunk


async def upload(request: web.Request) -> web.Response:
    fields: dict[str, str] = {}
    data, filename = None, "input.jsonl"
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                filename = part.filename or filename
                data = await batch_core.read_limited(_part_chunks(part), MAX_FILE_BYTES)
            elif part.name:
                fields[part.name] = await part.text()
    except batch_core.TooLarge:
        return openai_error(413, "File is larger than 200 MB.", "invalid_request_error", None)
    except (ValueError, AssertionError) as exc:
        return openai_error(400, f"Invalid multipart body: {exc}", "invalid_request_error", None)
    if data is None or fields.get("purpose") != "batch":
        message = (
            "A 'file' and purpose 'batch' are required (the simulator takes only batch files)."
        )
        return openai_error(400, message, "invalid_request_error", None, "purpose")
    state = request.app[STATE]
    file = InputFile(f"file-{next(state.ids):012d}", data, filename, int(time.time()))
    request.app[_FILES][file.id] = file
    _store(request.app).counters(state)["files_uploaded"] += 1
    return web.json_response(_file_object(file.id, len(data), file.filename, file.created_at))


def _file_object(file_id: str, size: int, name: str, created: int, purpose: str = "batch") -> Any:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": created,
        "filename": name,
        "purpose": purpose,
        "status": "processed",
    }


def _file_view(request: web.Request) -> tuple[Any, Iterator[bytes] | bytes] | None:
    """The File object and content of an input file or of a batch's output / error file."""
    file_id = request.match_info["file_id"]
    file = request.app[_FILES].get(file_id)
    if file is not None:
        return _file_object(file.id, len(file.data), file.filename, file.created_at), file.data
    prefix = file_id[: len(_OUT)]
    batch = _store(request.app).batches.get(file_id[len(_OUT) :])
    if prefix not in (_OUT, _ERR) or batch is None or batch.ended_at is None:
        return None
    output = prefix == _OUT
    replay = request.app[STATE].replay
    if "bytes" + prefix not in batch.extra:
        batch.extra["bytes" + prefix] = sum(map(len, jsonl.file_lines(batch, output, replay)))
    name = f"{batch.id}_{'output' if output else 'error'}.jsonl"
    size, created = batch.extra["bytes" + prefix], int(batch.ended_at)
    return _file_object(file_id, size, name, created, "batch_output"), jsonl.file_lines(
        batch, output, replay
    )


async def get_file(request: web.Request) -> web.Response:
    view = _file_view(request)
    return _not_found("file") if view is None else web.json_response(view[0])


async def file_content(request: web.Request) -> web.StreamResponse:
    view = _file_view(request)
    if view is None:
        return _not_found("file")
    content = view[1]
    if isinstance(content, bytes):
        return web.Response(body=content, content_type="application/octet-stream")
    _store(request.app).counters(request.app[STATE])["results_downloads"] += 1
    return await batch_core.stream_lines(request, content, "application/octet-stream")


def _create_error(body: Any, files: dict[str, InputFile]) -> web.Response | None:
    """400 for a create request the API refuses outright."""
    if not isinstance(body, dict):
        return openai_error(400, "Body must be a JSON object.", "invalid_request_error", None)
    checks = (
        ("input_file_id", body.get("input_file_id") in files, "No such input file."),
        ("endpoint", body.get("endpoint") == ENDPOINT, f"Only {ENDPOINT} is supported."),
        ("completion_window", body.get("completion_window") == "24h", "Only '24h' is supported."),
        ("metadata", _metadata_ok(body.get("metadata")), "At most 16 string pairs."),
    )
    for param, ok, message in checks:
        if not ok:
            return openai_error(400, message, "invalid_request_error", "invalid_value", param)
    return None


def _metadata_ok(metadata: Any) -> bool:
    if metadata is None:
        return True
    return (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    )


async def create_batch(request: web.Request) -> web.Response:
    state, store, files = request.app[STATE], _store(request.app), request.app[_FILES]
    try:
        body = await read_json(request)
    except BadRequest as exc:
        return openai_error(400, str(exc), "invalid_request_error", exc.code)
    refused = _create_error(body, files)
    if refused is not None:
        return refused
    file = files[body["input_file_id"]]
    ids, errors = await jsonl.validate(file.data)
    extra = {"input_file_id": file.id, "data": file.data, "metadata": body.get("metadata")}
    batch_id = store.new_id()
    if errors:
        batch = SimBatch(batch_id, time.time(), 0.0, bytearray(), bytearray(), time.time())
        store.batches[batch_id] = batch
        batch.extra.update(extra, errors=errors)
        counters = store.counters(state)
        counters["batches_created"] += 1
        counters["batches_failed_validation"] += 1
    else:
        batch = store.create(state, batch_id, iter(ids))
        batch.extra.update(extra)
        store.plan_misses(state, batch)
    return web.json_response(_batch_object(batch, "validating"))


async def get_batch(request: web.Request) -> web.Response:
    state, store = request.app[STATE], _store(request.app)
    batch = store.batches.get(request.match_info["batch_id"])
    if batch is None:
        return _not_found("batch")
    store.counters(state)["retrieves"] += 1
    return web.json_response(_batch_object(store.advance(state, batch)))


async def cancel_batch(request: web.Request) -> web.Response:
    state, store = request.app[STATE], _store(request.app)
    batch = store.batches.get(request.match_info["batch_id"])
    if batch is None:
        return _not_found("batch")
    if batch.ended:
        status = _status(batch, time.time())
        message = f"Cannot cancel a batch with status '{status}'."
        return openai_error(409, message, "invalid_request_error", "batch_not_cancellable")
    if batch.cancel_at is None:
        batch.cancel_at = time.time()
        store.counters(state)["cancels"] += 1
    return web.json_response(_batch_object(batch))


async def list_batches(request: web.Request) -> web.Response:
    state, store = request.app[STATE], _store(request.app)
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        return openai_error(400, "limit must be 1..100", "invalid_request_error", None, "limit")
    newest = list(reversed(store.batches))
    after = request.query.get("after")
    start = newest.index(after) + 1 if after in store.batches else 0
    page = [store.advance(state, store.batches[i]) for i in newest[start : start + limit]]
    return web.json_response(
        {
            "object": "list",
            "data": [_batch_object(b) for b in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": start + limit < len(newest),
        }
    )


@web.middleware
async def _count(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith(("/v1/files", "/v1/batches")):
        _store(request.app).counters(request.app[STATE])["http_requests"] += 1
    response: web.StreamResponse = await handler(request)
    return response


def install(app: web.Application) -> None:
    batch_core.stores(app)["openai"] = BatchStore("openai_batches", "batch_", jsonl.prompts)
    app.middlewares.append(_count)
    app[_FILES] = {}
    app.router.add_post("/v1/files", upload)
    app.router.add_get("/v1/files/{file_id}", get_file)
    app.router.add_get("/v1/files/{file_id}/content", file_content)
    app.router.add_post("/v1/batches", create_batch)
    app.router.add_get("/v1/batches", list_batches)
    app.router.add_get("/v1/batches/{batch_id}", get_batch)
    app.router.add_post("/v1/batches/{batch_id}/cancel", cancel_batch)
