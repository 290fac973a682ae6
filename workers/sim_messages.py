"""The simulated provider's Anthropic Messages endpoint: ``POST /v1/messages``.

It shares the simulator's state, faults, latency, counters and deterministic answers
(workers/simprovider.py); only the wire format differs, after Anthropic's API:

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
  ``invalid_request_error``, 401 ``authentication_error``, 429 ``rate_limit_error``
  (with ``retry-after``), 500 ``api_error``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from workers import simprovider as sim

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    kind = _ERROR_TYPES.get(status, "api_error")
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in content
    ):
        return "".join(b["text"] for b in content)
    raise sim._BadRequest(f"{where}: expected a string or a list of text blocks", where, "")


def _parse(body: Any) -> tuple[sim._ChatRequest, int]:
    """The request as the simulator's chat request, and its ``max_tokens``."""
    if not isinstance(body, dict):
        raise sim._BadRequest("Request body must be a JSON object.", None, "")
    model, limit, messages = body.get("model"), body.get("max_tokens"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise sim._BadRequest("model: Field required", "model", "")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise sim._BadRequest("max_tokens: Field required (a positive integer)", "max_tokens", "")
    if body.get("stream"):
        raise sim._BadRequest("The simulated provider does not support streaming.", "stream", "")
    if not isinstance(messages, list) or not messages:
        raise sim._BadRequest("messages: at least one message is required", "messages", "")
    contents = [_text(body["system"], "system")] if body.get("system") is not None else []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise sim._BadRequest(f"messages.{i}.role: must be 'user' or 'assistant'", None, "")
        contents.append(_text(message.get("content"), f"messages.{i}.content"))
    if messages[0]["role"] != "user":
        raise sim._BadRequest("messages: the first message must use the 'user' role", None, "")
    digest = sim._fingerprint(model, [body.get("system"), messages])
    return sim._ChatRequest(model, tuple(contents), digest, limit, False), limit


def _answer_body(req: sim._ChatRequest, limit: int, message_id: str) -> dict[str, Any]:
    prompt_tokens = sum(sim.count_tokens(text) for text in req.contents)
    token_ids, content = sim._answer(req.digest, prompt_tokens)
    stop_reason = "end_turn"
    if limit < len(token_ids):
        token_ids, stop_reason = token_ids[:limit], "max_tokens"
        content = sim._decode(token_ids)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": [{"type": "text", "text": content}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": len(token_ids)},
    }


async def messages(request: web.Request) -> web.Response:
    state = request.app[sim._STATE]
    state.stats.requests += 1
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not (request.headers.get("x-api-key") or bearer):
        state.stats.invalid += 1
        return _error(401, "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        state.stats.invalid += 1
        return _error(400, "anthropic-version: header is required")
    try:
        if request.content_length and request.content_length > sim._MAX_PROMPT_BYTES:
            raise sim._BadRequest("Request body too large.", None, "")
        try:
            body = await request.json()
        except ValueError as exc:
            raise sim._BadRequest("Request body is not valid JSON.", None, "") from exc
        chat, limit = _parse(body)
    except sim._BadRequest as exc:
        state.stats.invalid += 1
        return _error(400, str(exc))
    state.stats.requests_by_model[chat.model] += 1
    faulted = await sim._simulate(state, chat.model, request.headers)
    if faulted is not None:  # the simulator's fault, re-shaped as Anthropic's error
        assert isinstance(faulted.text, str)
        message = json.loads(faulted.text)["error"]["message"]
        headers = {k: v for k, v in faulted.headers.items() if k.lower() == "retry-after"}
        return _error(faulted.status, message, headers)
    answer = _answer_body(chat, limit, f"msg_sim{next(state.ids):010d}{int(time.time())}")
    if request.transport is None or request.transport.is_closing():
        state.stats.abandoned += 1
    else:
        state.stats.record_completion(chat.model, chat.digest)
    return web.json_response(answer)
