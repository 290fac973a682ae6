"""OpenAI's Batch API (Files + Batches) through the official ``openai`` SDK: the
:class:`workers.batchapi.BatchApi` of an ``openai`` provider, for ``/v1/chat/completions``.

Requests are JSONL lines ``{"custom_id", "method": "POST", "url": "/v1/chat/completions",
"body"}`` with the body realtime calls send (``provider.chat_body``). A batch is an uploaded
file (``purpose="batch"``) and a batch over it (``completion_window="24h"``) tagged
``metadata={"batch_router": tag}``, by which :meth:`OpenAIBatchApi.find` finds it again.
Results are the output file (answers) and the error file (a request answered with an error,
or ``error.code`` ``batch_expired`` / ``batch_cancelled`` for one the batch did not reach).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, Final, Literal

import openai
from openai.types import Batch

from routing.errors import ProviderPermanentError
from workers import redact
from workers.batchapi_base import BatchResult, BatchState, answered, classified, errored, unrun
from workers.provider import ChatRequest, chat_body, parse_chat

__all__ = ["OpenAIBatchApi"]

ENDPOINT: Final = "/v1/chat/completions"
TAG_KEY = "batch_router"  # the metadata key a batch's tag is stored under
ENDED = frozenset({"failed", "completed", "expired", "cancelled"})
_UNRUN: dict[str, Literal["expired", "canceled"]] = {
    "batch_expired": "expired",
    "batch_cancelled": "canceled",
}
_LIST_PAGE = 100


class OpenAIBatchApi:
    """The Batch API of one OpenAI(-compatible) endpoint, on the process's SDK client."""

    kind = "openai"

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client

    def encode(
        self, custom_id: str, model: str, request: ChatRequest, *, reasoning: bool = False
    ) -> bytes:
        line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT}
        line["body"] = chat_body(model, request, reasoning=reasoning)  # type: ignore[assignment]
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    async def submit(self, lines: Sequence[bytes], tag: str) -> str:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", tag)[:100] + ".jsonl"
        upload = await classified(
            self._client.files.create(file=(name, b"".join(lines)), purpose="batch")
        )
        batch = await classified(
            self._client.batches.create(
                input_file_id=upload.id,
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata={TAG_KEY: tag},
            )
        )
        return batch.id

    async def find(self, tag: str, since: float) -> str | None:
        """The newest batch tagged ``tag`` created at ``since`` or later (the API's
        ``created_at`` is in whole seconds: compared with ``since`` rounded down)."""
        oldest = math.floor(since)
        page = await classified(self._client.batches.list(limit=_LIST_PAGE))
        while True:
            for batch in page.data:
                if batch.created_at < oldest:
                    return None
                if (batch.metadata or {}).get(TAG_KEY) == tag:
                    return batch.id
            if not page.has_next_page():
                return None
            page = await classified(page.get_next_page())

    async def state(self, batch_id: str) -> BatchState:
        return _state(await classified(self._client.batches.retrieve(batch_id)))

    async def results(self, batch_id: str, files: Sequence[str] | None = None) -> list[BatchResult]:
        if files is None:
            batch = await classified(self._client.batches.retrieve(batch_id))
            if batch.status not in ENDED:
                raise ProviderPermanentError(f"batch {batch_id} has not ended ({batch.status})")
            files = _files(batch)
        found: list[BatchResult] = []
        for file_id in files:
            if file_id:
                content = await classified(self._client.files.content(file_id))
                lines = filter(None, content.content.splitlines())
                found.extend(_result(json.loads(line), batch_id) for line in lines)
        return found

    async def cancel(self, batch_id: str) -> None:
        """Ask for the batch to be cancelled; one that has already ended (409) is left as
        it is."""
        try:
            await classified(self._client.batches.cancel(batch_id))
        except ProviderPermanentError as exc:
            if exc.status != 409:
                raise


def _state(batch: Batch) -> BatchState:
    counts = batch.request_counts.model_dump() if batch.request_counts else {}
    return BatchState(
        batch_id=batch.id,
        status=batch.status,
        ended=batch.status in ENDED,
        counts={k: int(v) for k, v in counts.items()},
        created_at=float(batch.created_at),
        error=_errors(batch) if batch.status == "failed" else None,
        files=_files(batch) if batch.status in ENDED else None,
    )


def _files(batch: Batch) -> tuple[str, ...]:
    """An ended batch's output and error files (those it has)."""
    return tuple(f for f in (batch.output_file_id, batch.error_file_id) if f)


def _errors(batch: Batch) -> str:
    """A failed batch's validation errors, one ``line N: code: message`` each."""
    errors = (batch.errors.data if batch.errors else None) or []
    text = "; ".join(
        f"line {e.line}: {e.code}: {e.message}" if e.line else f"{e.code}: {e.message}"
        for e in errors
    )
    return redact.redact_error(f"batch {batch.id} failed: {text or 'no reason given'}")


def _result(line: dict[str, Any], batch_id: str) -> BatchResult:
    """One line of an output or error file."""
    custom_id = str(line.get("custom_id"))
    response, error = line.get("response"), line.get("error")
    if response is not None:
        status = response.get("status_code")
        body = response.get("body")
        if status == 200:
            return answered(custom_id, parse_chat(body, 1, None))
        message = (body or {}).get("error", {}).get("message") if isinstance(body, dict) else body
        return errored(custom_id, status, str(message))
    code = (error or {}).get("code")
    if code in _UNRUN:
        return unrun(custom_id, _UNRUN[code], batch_id)
    return errored(custom_id, None, f"{code}: {(error or {}).get('message')}")
