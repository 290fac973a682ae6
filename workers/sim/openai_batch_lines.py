"""The JSONL of OpenAI's Batch API (workers/sim/openai_batches.py): the check of an input
file's request lines, the prompts they hold, and the lines of a batch's output and error files
(generated when read: see that module's docstring for their shapes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

from workers.sim.batch_core import Kind, SimBatch
from workers.sim.errors import BadRequest
from workers.sim.openai_chat import completion_body, parse, replay_miss
from workers.sim.prompt import Prompt
from workers.sim.replay import MISS, Replay, source

__all__ = ["ENDPOINT", "MAX_REQUESTS", "file_lines", "lines", "prompts", "validate"]

ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS = 50_000
MAX_ERRORS = 100
_CLOSED: dict[int, str] = {Kind.EXPIRED: "batch_expired", Kind.CANCELED: "batch_cancelled"}


def lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The file's non-blank lines with their (1-based) line numbers, without copying it whole."""
    start, number = 0, 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        number += 1
        line = data[start:end].strip()
        start = end + 1
        if line:
            yield number, line


def _check_line(line: bytes, seen: set[str]) -> str:
    """The custom id of a valid request line; BadRequest(message, param, code) otherwise."""
    try:
        request = json.loads(line)
    except ValueError:
        request = None
    if not isinstance(request, dict):
        raise BadRequest("The line is not a JSON object.", None, "invalid_json_line")
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise BadRequest("Missing custom_id.", "custom_id", "missing_custom_id")
    if custom_id in seen:
        message = "The custom_id for this request is a duplicate of another request."
        raise BadRequest(message, "custom_id", "duplicate_custom_id")
    if request.get("method") != "POST":
        raise BadRequest("The method must be POST.", "method", "invalid_method")
    if request.get("url") != ENDPOINT:
        raise BadRequest(f"The url must be {ENDPOINT}.", "url", "invalid_url")
    parse(request.get("body"))
    return custom_id


async def validate(data: bytes) -> tuple[list[str], list[dict[str, Any]]]:
    """The custom ids of a valid input file, or the errors that fail its batch."""
    ids: list[str] = []
    seen: set[str] = set()
    errors: list[dict[str, Any]] = []
    for number, line in lines(data):
        if number % 500 == 0:
            await asyncio.sleep(0)  # let the event loop serve others
        try:
            custom_id = _check_line(line, seen)
        except BadRequest as exc:
            error = {"code": exc.code, "message": str(exc), "param": exc.param, "line": number}
            errors.append(error)
            continue
        seen.add(custom_id)
        ids.append(custom_id)
    if not ids and not errors:
        errors.append({"code": "empty_file", "message": "The file is empty.", "line": None})
    if len(ids) > MAX_REQUESTS:
        message = f"A batch may hold at most {MAX_REQUESTS} requests."
        errors.append({"code": "too_many_requests", "message": message, "line": None})
    return ids, errors[:MAX_ERRORS]


def prompts(batch: SimBatch) -> Iterator[Prompt | None]:
    for _, line in lines(batch.extra["data"]):
        yield parse(json.loads(line)["body"])


def _error_response(request: dict[str, Any], replay: Replay | None) -> tuple[int, Any]:
    """An errored request's status and body: a replay miss's 404, else a simulated 500."""
    if replay is not None:
        prompt = parse(request["body"])
        if source(prompt, replay)[0] == MISS:
            return 404, replay_miss(prompt.model)
    message = "The server had an error while processing your request (simulated)."
    error = {"message": message, "type": "server_error", "param": None, "code": "server_error"}
    return 500, {"error": error}


def _result_line(
    batch: SimBatch, index: int, line: bytes, kind: int, replay: Replay | None
) -> dict[str, Any]:
    request = json.loads(line)
    tail = f"{batch.id.removeprefix('batch_')}{index:06d}"
    result: dict[str, Any] = {"id": f"batch_req_{tail}", "custom_id": request["custom_id"]}
    if kind in _CLOSED:
        message = f"This request was not run: the batch {_CLOSED[kind].split('_')[1]}."
        return {**result, "response": None, "error": {"code": _CLOSED[kind], "message": message}}
    if kind == Kind.ERRORED:
        status, body = _error_response(request, replay)
    else:
        status, body = 200, completion_body(parse(request["body"]), f"chatcmpl-{tail}", 0, replay)
    response = {"status_code": status, "request_id": f"req_{tail}", "body": body}
    return {**result, "response": response, "error": None}


def file_lines(batch: SimBatch, output: bool, replay: Replay | None = None) -> Iterator[bytes]:
    """The output (or error) file of an ended batch, line by line, in input order
    (``replay``: the app's replay mode, workers/sim/replay.py)."""
    final = batch.final or bytearray()
    for index, ((_, line), kind) in enumerate(zip(lines(batch.extra["data"]), final, strict=True)):
        if (kind == Kind.SUCCEEDED) == output:
            result = _result_line(batch, index, line, kind, replay)
            yield json.dumps(result, separators=(",", ":")).encode() + b"\n"
