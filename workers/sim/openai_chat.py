"""OpenAI's Chat Completions protocol: ``POST /v1/chat/completions``.

Request: ``model`` (str, required), ``messages`` (non-empty list of ``{role, content}``;
``content`` is a string, a list of ``{"type": "text", "text": ...}`` parts, or null), optional
``max_completion_tokens`` / ``max_tokens`` (positive int; the former wins), ``logprobs`` (bool),
``n`` (only 1). ``stream: true`` is rejected. Other fields (temperature, ...) are ignored.
A reasoning model (:data:`REASONING_MODELS`: ``o1``, ``o3-mini``, ``o4-mini``, ``gpt-5``…)
rejects ``max_tokens`` as the real API does (400 ``unsupported_parameter``: use
``max_completion_tokens``) and reports ``usage.completion_tokens_details.reasoning_tokens``
(deterministic per prompt, counted in ``completion_tokens``; 0 for other models).
Prompt caching as OpenAI does it: a request whose first message is 1,024 tokens or more
and was sent to the same model before reports that message's tokens, rounded down to a
multiple of 128, as ``usage.prompt_tokens_details.cached_tokens`` (counted in
``prompt_tokens``; 0 otherwise; realtime only, the batch API reports 0).

Response: ``{id, object: "chat.completion", created, model, system_fingerprint, choices:
[{index: 0, message: {role: "assistant", content}, logprobs, finish_reason}], usage:
{prompt_tokens, completion_tokens, total_tokens}}``. The answer (workers/sim/answer.py) is
deterministic per (model, messages); a token limit below its length truncates it
(``finish_reason: "length"``, else ``"stop"``). ``usage`` counts o200k tokens: all message
contents for the prompt, the produced content for the completion. With ``logprobs: true``,
``choices[0].logprobs.content`` holds one ``{token, logprob, bytes, top_logprobs: []}`` per
output token (deterministic, -0.01..-2.0).

A judge request (workers/sim/judge.py) is answered with its grade, ``SCORE: n``; in replay
mode (workers/sim/replay.py) a prompt with its recorded answer, or 404 ``replay_miss``.

Errors use OpenAI's shape (workers/sim/errors.py): 400 ``invalid_request_error`` for a bad
request; the simulated faults (workers/sim/faults.py) as 500 ``server_error``, 429
``rate_limit_exceeded`` with ``Retry-After`` (seconds) and ``retry-after-ms``, 401
``invalid_api_key`` (the message quotes the request's auth headers, as careless providers do).
"""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from workers.sim.answer import answer, count_prompt, logprobs
from workers.sim.errors import BadRequest, openai_error
from workers.sim.faults import simulate
from workers.sim.prompt import Prompt, conversation, fingerprint, read_json
from workers.sim.replay import MISS, Replay, miss_message, source
from workers.sim.state import STATE, SimState

__all__ = ["REASONING_MODELS", "completion_body", "install", "parse", "replay_miss"]

# OpenAI's reasoning families: they take max_completion_tokens and think before answering.
REASONING_MODELS = re.compile(r"^(o\d+|gpt-5)(-[a-z0-9.-]+)?$")


def _message_text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise BadRequest(
        f"Invalid content in messages[{index}].", f"messages[{index}].content", "invalid_type"
    )


def _parse_messages(messages: Any) -> tuple[str, ...]:
    if messages is None:
        raise BadRequest(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array.", "messages", "invalid_type")
    contents = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(
                f"messages[{i}] must be an object with a 'role'.", f"messages[{i}]", "invalid_type"
            )
        contents.append(_message_text(message.get("content"), i))
    return tuple(contents)


def _parse_limit(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"'{name}' must be a positive integer.", name, "invalid_value")
        return value
    return None


def parse(body: Any) -> Prompt:
    """A chat completions request body as a prompt; BadRequest names the offending param."""
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.", None, "invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(
            "Missing required parameter: 'model'.", "model", "missing_required_parameter"
        )
    contents = _parse_messages(body.get("messages"))
    if body.get("stream"):
        raise BadRequest(
            "The simulated provider does not support streaming.", "stream", "unsupported_parameter"
        )
    if body.get("n", 1) != 1:
        raise BadRequest("The simulated provider only supports n=1.", "n", "unsupported_value")
    if REASONING_MODELS.match(model) and "max_tokens" in body:
        raise BadRequest(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    judge, user = conversation([m["role"] for m in body["messages"]], contents)
    return Prompt(
        model=model,
        contents=contents,
        digest=fingerprint(model, body["messages"]),
        max_tokens=_parse_limit(body),
        logprobs=body.get("logprobs") is True,
        judge=judge,
        user=user,
    )


def replay_miss(model: str) -> dict[str, Any]:
    """The error body of a replay miss (its status: 404)."""
    error = {"message": miss_message(model), "type": "invalid_request_error", "param": None}
    return {"error": {**error, "code": "replay_miss"}}


def completion_body(
    prompt: Prompt, response_id: str, cached: int = 0, replay: Replay | None = None
) -> dict[str, Any]:
    """The ``chat.completion`` object answering ``prompt`` (``cached`` of its prompt tokens
    read from the prompt cache; ``replay``: replay mode, ReplayMiss without a recording)."""
    reply = answer(prompt, replay)
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": reply.text, "refusal": None},
        "logprobs": logprobs(prompt.digest, reply.token_ids) if prompt.logprobs else None,
        "finish_reason": "length" if reply.truncated else "stop",
    }
    thought = reasoning_tokens(prompt)
    usage = {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens + thought,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens + thought,
        "completion_tokens_details": {"reasoning_tokens": thought},
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": prompt.model,
        "system_fingerprint": "fp_sim",
        "choices": [choice],
        "usage": usage,
    }


CACHE_MIN_TOKENS, CACHE_STEP = 1024, 128


def cached_tokens(state: SimState, prompt: Prompt) -> int:
    """The prompt-cache hit of ``prompt``: its first message's tokens, in steps of 128, when
    that message (1,024 tokens or more) reached this model before; it is remembered now."""
    if len(prompt.contents) < 2:
        return 0
    first = count_prompt(prompt.contents[0])
    if first < CACHE_MIN_TOKENS:
        return 0
    key = (prompt.model, prompt.contents[0])
    return first // CACHE_STEP * CACHE_STEP if state.prefixes.seen(key) else 0


def reasoning_tokens(prompt: Prompt) -> int:
    """What a reasoning model spent thinking on ``prompt`` (32–287, from its fingerprint);
    0 for other models."""
    return 32 + prompt.digest[0] if REASONING_MODELS.match(prompt.model) else 0


async def chat_completions(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.stats.requests += 1
    try:
        prompt = parse(await read_json(request))
    except BadRequest as exc:
        state.stats.invalid += 1
        return openai_error(400, str(exc), "invalid_request_error", exc.code, exc.param)
    state.stats.requests_by_model[prompt.model] += 1
    fault = await simulate(state, prompt.model, request.headers)
    if fault is not None:
        return fault.openai()
    kind = source(prompt, state.replay)[0]
    state.tally(kind)
    if kind == MISS:
        return web.json_response(replay_miss(prompt.model), status=404)
    response_id = f"chatcmpl-sim{next(state.ids):010d}"
    body = completion_body(prompt, response_id, cached_tokens(state, prompt), state.replay)
    state.record_answer(request, prompt)
    return web.json_response(body)


def install(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
