"""Anthropic's Message Batches API through the official ``anthropic`` SDK: the
:class:`workers.batchapi.BatchApi` of an ``anthropic`` provider.

A request is ``{"custom_id", "params"}`` with the params realtime calls send
(``provider.messages_body``); a ``custom_id`` must match ``^[a-zA-Z0-9_-]{1,64}$``
(:meth:`AnthropicBatchApi.encode` refuses others at once rather than the whole batch being
refused). Results stream in any order, one per request: ``succeeded`` (a Message),
``errored`` (an error object whose type gives the HTTP status it stands for), ``canceled``,
``expired``.

Message Batches carry no metadata, so a batch cannot be found again by its tag:
:meth:`AnthropicBatchApi.find` always answers None (an engine records a batch's id before
anything else can lose it, or accepts that a crash between create and record resubmits).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import anthropic
import httpx
from anthropic.types.messages import MessageBatch

from routing.errors import ProviderPermanentError
from workers.batchapi_base import BatchResult, BatchState, answered, classified, errored, unrun
from workers.provider import ChatRequest, messages_body, parse_messages

__all__ = ["AnthropicBatchApi"]

CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# The HTTP status each error type stands for (Anthropic's errors page).
_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicBatchApi:
    """The Message Batches API of one Anthropic endpoint, on the process's SDK client."""

    kind = "anthropic"

    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self._client = client

    def encode(
        self, custom_id: str, model: str, request: ChatRequest, *, reasoning: bool = False
    ) -> bytes:  # Messages takes max_tokens from every model
        if not CUSTOM_ID.fullmatch(custom_id):
            raise ValueError(f"custom_id {custom_id!r} does not match ^[a-zA-Z0-9_-]{{1,64}}$")
        line = {"custom_id": custom_id, "params": messages_body(model, request)}
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    async def submit(self, lines: Sequence[bytes], tag: str) -> str:
        """Create one Message Batch of these requests (``tag`` is not sent: the API has no
        place for it)."""
        requests: list[Any] = [json.loads(line) for line in lines]
        batch = await classified(self._client.messages.batches.create(requests=requests))
        return batch.id

    async def find(self, tag: str, since: float) -> str | None:
        """Always None: a Message Batch has no metadata to find a tag by."""
        return None

    async def state(self, batch_id: str) -> BatchState:
        return _state(await classified(self._client.messages.batches.retrieve(batch_id)))

    async def results(
        self, batch_id: str, files: Sequence[str] | None = None
    ) -> list[BatchResult]:  # the results stream is found by the batch id alone
        lines = await classified(self._result_lines(batch_id))
        return [_result(json.loads(line), batch_id) for line in lines]

    async def _result_lines(self, batch_id: str) -> list[str]:
        """The results stream's lines, raw (``with_streaming_response``: the typed decoder's
        model per line cost ~5x the CPU of this at 100,000 results)."""
        streamed = self._client.messages.batches.with_streaming_response.results(batch_id)
        async with streamed as response:
            try:
                return [line async for line in response.iter_lines() if line]
            except (httpx.TransportError, OSError) as exc:  # the stream broke off
                raise anthropic.APIConnectionError(request=response.http_request) from exc

    async def cancel(self, batch_id: str) -> None:
        """Ask for the batch to be canceled; one that has already ended (409) is left as
        it is."""
        try:
            await classified(self._client.messages.batches.cancel(batch_id))
        except ProviderPermanentError as exc:
            if exc.status != 409:
                raise


def _state(batch: MessageBatch) -> BatchState:
    return BatchState(
        batch_id=batch.id,
        status=batch.processing_status,
        ended=batch.processing_status == "ended",
        counts={k: int(v) for k, v in batch.request_counts.model_dump().items()},
        created_at=batch.created_at.timestamp(),
    )


def _result(line: dict[str, Any], batch_id: str) -> BatchResult:
    """One line of the results stream."""
    custom_id, result = str(line.get("custom_id")), line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        message = parse_messages(result.get("message"), 1, None)
        return answered(custom_id, message)
    if kind == "errored":
        error = (result.get("error") or {}).get("error") or {}
        name = error.get("type")
        return errored(custom_id, _STATUS.get(str(name)), f"{name}: {error.get('message')}")
    if kind in ("expired", "canceled"):
        return unrun(custom_id, kind, batch_id)
    return errored(custom_id, None, f"unknown result type {kind!r}")
