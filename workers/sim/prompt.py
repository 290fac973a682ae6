"""A prompt as every protocol of the simulator parses it (``Prompt``), its fingerprint, and
the reading of a request's JSON body."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from workers.sim.errors import BadRequest

__all__ = ["MAX_BODY_BYTES", "Prompt", "fingerprint", "read_json"]

MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Prompt:
    """What the answer depends on: the model, the texts counted as the prompt's tokens, the
    fingerprint that seeds the answer, the output token limit, and whether logprobs are asked."""

    model: str
    contents: tuple[str, ...]
    digest: bytes
    max_tokens: int | None
    logprobs: bool


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
