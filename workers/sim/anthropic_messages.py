"""Anthropic's Messages protocol: ``POST /v1/messages``.

It shares the simulator's state, faults, latency, counters and deterministic answers with
the chat completions endpoint; only the wire format differs, after Anthropic's API:

- Headers: a key is required, as ``x-api-key`` or ``Authorization: Bearer …`` (recent
  SDKs send the latter) — else 401 ``authentication_error``; ``anthropic-version`` is
  required (400).
- Request: ``model`` (str), ``max_tokens`` (positive int, required), ``messages``
  (non-empty list of ``{role: user|assistant, content}``, the first from ``user``;
  ``content`` a string or a list of ``{"type": "text", "text": ...}`` blocks), optional
  ``system`` (a string or text blocks). ``stream: true`` is rejected. Other fields
  (temperature, stop_sequences, …) are ignored.
- Response: ``{id: "msg_…", type: "message", role: "assistant", model, content: [{type:
  "text", text}], stop_reason: "end_turn" | "max_tokens", stop_sequence: null, usage:
  {input_tokens, output_tokens}}`` — no logprobs (Anthropic has none).
- Errors: ``{"type": "error", "error": {"type", "message"}}``: 400
  ``invalid_request_error``, 401 ``authentication_error``, 404 ``not_found_error`` (a
  replay miss), 429 ``rate_limit_error`` (with ``retry-after``), 500 ``api_error``.

A judge request (its ``system`` the judge's system prompt, one user message:
workers/sim/judge.py) is answered with its grade; in replay mode (workers/sim/replay.py) a
prompt with its recorded answer, or 404 when there is none.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from workers.sim.answer import answer
from workers.sim.errors import BadRequest, anthropic_error
from workers.sim.faults import simulate
from workers.sim.prompt import Prompt, conversation, fingerprint, read_json
from workers.sim.replay import MISS, Replay, miss_message, source
from workers.sim.state import STATE

__all__ = ["install", "message_body", "parse"]


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in content
    ):
        return "".join(b["text"] for b in content)
    raise BadRequest(f"{where}: expected a string or a list of text blocks", where, "")


def _contents(body: dict[str, Any], messages: list[Any]) -> tuple[str, ...]:
    contents = [_text(body["system"], "system")] if body.get("system") is not None else []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise BadRequest(f"messages.{i}.role: must be 'user' or 'assistant'", None, "")
        contents.append(_text(message.get("content"), f"messages.{i}.content"))
    if messages[0]["role"] != "user":
        raise BadRequest("messages: the first message must use the 'user' role", None, "")
    return tuple(contents)


def parse(body: Any) -> Prompt:
    """A Messages request body as a prompt (its ``max_tokens`` required)."""
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.", None, "")
    model, limit, messages = body.get("model"), body.get("max_tokens"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: Field required", "model", "")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise BadRequest("max_tokens: Field required (a positive integer)", "max_tokens", "")
    if body.get("stream"):
        raise BadRequest("The simulated provider does not support streaming.", "stream", "")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required", "messages", "")
    contents = _contents(body, messages)
    digest = fingerprint(model, [body.get("system"), messages])
    roles = ["system"] * (len(contents) - len(messages)) + [m["role"] for m in messages]
    judge, user = conversation(roles, contents)
    return Prompt(model, contents, digest, limit, False, judge, user)


def message_body(prompt: Prompt, message_id: str, replay: Replay | None = None) -> dict[str, Any]:
    """The ``message`` object answering ``prompt`` (``replay``: replay mode, ReplayMiss
    without a recording)."""
    reply = answer(prompt, replay)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": prompt.model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": "max_tokens" if reply.truncated else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
    }


def _header_error(request: web.Request) -> web.Response | None:
    """401 without a key, 400 without ``anthropic-version``."""
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not (request.headers.get("x-api-key") or bearer):
        return anthropic_error(401, "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        return anthropic_error(400, "anthropic-version: header is required")
    return None


async def messages(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.stats.requests += 1
    refused = _header_error(request)
    if refused is not None:
        state.stats.invalid += 1
        return refused
    try:
        prompt = parse(await read_json(request))
    except BadRequest as exc:
        state.stats.invalid += 1
        return anthropic_error(400, str(exc))
    state.stats.requests_by_model[prompt.model] += 1
    fault = await simulate(state, prompt.model, request.headers)
    if fault is not None:
        return fault.anthropic()
    kind = source(prompt, state.replay)[0]
    state.tally(kind)
    if kind == MISS:
        return anthropic_error(404, miss_message(prompt.model))
    message_id = f"msg_sim{next(state.ids):010d}{int(time.time())}"
    body = message_body(prompt, message_id, state.replay)
    state.record_answer(request, prompt)
    return web.json_response(body)


def install(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
