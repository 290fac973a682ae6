"""What both provider batch APIs share (workers/batchapi.py is the interface): a batch's
state and one request's result as the engine sees them, the completions of a result that
is not an answer, and provider errors raised classified.

Every text a provider sends that ends up stored (a failed batch's reason, a request's error)
goes through :func:`workers.redact.redact_error` here, as realtime failures do in
``workers.provider``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal, TypeVar

import anthropic
import openai

from routing.errors import ProviderPermanentError, ProviderRetryableError
from workers import redact
from workers.provider import Completion, classify

__all__ = ["BatchResult", "BatchState", "ResultKind", "answered", "classified", "errored", "unrun"]

T = TypeVar("T")
ResultKind = Literal["succeeded", "errored", "expired", "canceled"]


@dataclass(frozen=True)
class BatchState:
    """A provider batch as its last retrieve showed it."""

    batch_id: str
    status: str  # the provider's own word
    ended: bool  # nothing will change any more; results (if any) can be read
    counts: dict[str, int]  # the provider's request_counts as it names them
    created_at: float  # unix seconds
    error: str | None = None  # why the whole batch failed (OpenAI validation errors), redacted
    files: tuple[str, ...] | None = None  # an ended batch's result files (OpenAI), else None


@dataclass(frozen=True)
class BatchResult:
    """One request's result: its ``custom_id``, what became of it, and the completion (the
    parsed answer, or a failure in the form realtime failures take)."""

    custom_id: str
    kind: ResultKind
    completion: Completion


def answered(custom_id: str, completion: Completion) -> BatchResult:
    """A parsed answer (parsed with one attempt and no start time: latency 0); a malformed
    one parses as a permanent failure: then ``errored``."""
    return BatchResult(custom_id, "succeeded" if completion.ok else "errored", completion)


def errored(custom_id: str, status: int | None, message: str) -> BatchResult:
    """A request the provider answered with an error: retryable as ``provider.classify``
    sorts a status (429, 408, 5xx including 529), else permanent."""
    retryable = status is not None and (status in (408, 429) or status >= 500)
    kind = "retryable" if retryable else "permanent"
    text = redact.redact_error(f"{kind} provider error (status {status}): {message}")
    return BatchResult(
        custom_id, "errored", Completion.failure(text, retryable=retryable, status=status)
    )


def unrun(custom_id: str, kind: Literal["expired", "canceled"], batch_id: str) -> BatchResult:
    """A request its batch did not reach before it expired or was canceled."""
    text = f"request {kind} in batch {batch_id}"
    return BatchResult(custom_id, kind, Completion.failure(text, retryable=False))


async def classified(call: Awaitable[T]) -> T:
    """Await one SDK call; a provider error is raised classified (``provider.classify``),
    its text redacted."""
    try:
        return await call
    except (openai.OpenAIError, anthropic.AnthropicError) as exc:
        error = classify(exc)
        text = redact.redact_error(str(error))
        if isinstance(error, ProviderRetryableError):
            raise ProviderRetryableError(text, error.status, error.retry_after) from exc
        raise ProviderPermanentError(text, error.status) from exc
