"""A prompt as every protocol of the simulator parses it (``Prompt``), its fingerprint, what
its messages are (a judge request, the last user message: :func:`conversation`), and the
reading of a request's JSON body."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from routing.judge import parse_request
from workers.sim.errors import BadRequest

__all__ = ["MAX_BODY_BYTES", "Prompt", "conversation", "fingerprint", "read_json"]

MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Prompt:
    """What the answer depends on: the model, the texts counted as the prompt's tokens, the
    fingerprint that seeds the answer, the output token limit, whether logprobs are asked,
    the (question, answer) of a judge request (workers/sim/judge.py), and the text of the
    last user message (what replay mode looks up: workers/sim/replay.py)."""

    model: str
    contents: tuple[str, ...]
    digest: bytes
    max_tokens: int | None
    logprobs: bool
    judge: tuple[str, str] | None = None
    user: str | None = None


def conversation(
    roles: Sequence[str], contents: Sequence[str]
) -> tuple[tuple[str, str] | None, str | None]:
    """The (question, answer) when these messages (each a role and its text; Anthropic's
    ``system`` first, as role ``system``) are a judge request, and the last user message."""
    pairs = list(zip(roles, contents, strict=True))
    judge = None
    if len(pairs) == 2:
        judge = parse_request([{"role": role, "content": text} for role, text in pairs])
    user = next((text for role, text in reversed(pairs) if role == "user"), None)
    return judge, user


def fingerprint(model: str, messages: Any) -> bytes:
    """blake2b of the model and the request's messages, as canonical JSON."""
    canonical = json.dumps([model, messages], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=16).digest()


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; BadRequest when too large or not JSON."""
    if request.content_length and request.content_length > MAX_BODY_BYTES:
        raise BadRequest("Request body too large.", None, "request_too_large")
    try:
        return await request.json()
    except ValueError as exc:
        raise BadRequest("Request body is not valid JSON.", None, "invalid_json") from exc
