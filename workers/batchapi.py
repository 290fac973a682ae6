"""Provider batch APIs: the transport of batch mode, as ``workers.provider`` is realtime's.

:class:`BatchApi` is one provider's batch API — OpenAI's Files + Batches
(workers/batchapi_openai.py) or Anthropic's Message Batches (workers/batchapi_anthropic.py) —
through the official SDK client the process already has for that provider
(``provider.client_for``: one per process, on the I/O loop, the SDK's own retries off). Its
coroutines run on that loop (``workers.aio.io_loop().run(...)``). It makes one call per
method and never retries, waits or polls: a provider error is raised classified
(``ProviderRetryableError`` / ``ProviderPermanentError``, as ``provider.classify`` sorts it,
its text redacted); what to do about it, and when to look again, is the engine's
(workers/batches/).

A request's result is a :class:`BatchResult` whose ``completion`` has the realtime form:
an answer parsed as realtime answers are (``attempts=1``, ``latency_ms=0.0``), a failure with
``retryable`` and ``status`` as realtime failures have them, or, for a request the batch did
not reach, ``ok=False``, ``retryable=False`` and ``"request expired in batch <id>"`` /
``"request canceled in batch <id>"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import anthropic

from routing.policy import ModelSpec, Policy
from workers.batchapi_anthropic import AnthropicBatchApi
from workers.batchapi_base import BatchResult, BatchState, ResultKind
from workers.batchapi_openai import OpenAIBatchApi
from workers.provider import ChatRequest, client_for
from workers.settings import Settings

__all__ = [
    "AnthropicBatchApi",
    "BatchApi",
    "BatchResult",
    "BatchState",
    "OpenAIBatchApi",
    "ResultKind",
    "batch_api",
]


class BatchApi(Protocol):
    """One provider's batch API."""

    kind: str  # "openai" | "anthropic"

    def encode(
        self, custom_id: str, model: str, request: ChatRequest, *, reasoning: bool = False
    ) -> bytes:
        """One request exactly as it is sent, ending in ``b"\\n"`` (its size counts toward
        the provider's file or batch size limit); ``reasoning``: a reasoning model's form
        (``provider.chat_body``)."""
        ...

    async def submit(self, lines: Sequence[bytes], tag: str) -> str:
        """Create one provider batch of these encoded requests; its id."""
        ...

    async def find(self, tag: str, since: float) -> str | None:
        """The id of a batch already submitted under ``tag`` no earlier than ``since`` (unix
        seconds): a crash between create and recording its id. None when there is none, or
        when the provider cannot tell (Anthropic: no metadata)."""
        ...

    async def state(self, batch_id: str) -> BatchState:
        """The batch as the provider shows it now."""
        ...

    async def results(self, batch_id: str, files: Sequence[str] | None = None) -> list[BatchResult]:
        """Every result of an ended batch, in no particular order. ``files``: where they
        are, as its ended :class:`BatchState` said (saves a retrieve; None: look it up)."""
        ...

    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to cancel the batch (nothing happens to one already ended)."""
        ...


def batch_api(policy: Policy, model: ModelSpec, settings: Settings) -> BatchApi:
    """The batch API of ``model``'s provider, on this process's SDK client for it (callable
    from any thread, like ``provider.client_for``)."""
    client = client_for(policy, model, settings)
    if isinstance(client, anthropic.AsyncAnthropic):
        return AnthropicBatchApi(client)
    return OpenAIBatchApi(client)
