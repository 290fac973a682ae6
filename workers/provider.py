"""Provider transport: one call over one of two wire protocols, its errors classified,
its answer parsed. OpenAI chat completions (the official ``openai`` SDK, any
OpenAI-compatible endpoint) and Anthropic Messages (the official ``anthropic`` SDK,
``POST /v1/messages``); a provider's ``kind`` in the policy picks one.

Requests go through the SDK's generic ``post`` with plain-dict bodies and responses
(``cast_to=object``): same transport, auth and typed errors, without the per-request
TypedDict transform and pydantic parsing of ``chat.completions.create``, which cost
~3 ms of CPU per call here (measured on loopback with the simulated provider, 2,000
calls, 64 in flight: ``create`` 260/s, ``post`` 1,143/s with the aiohttp transport; httpx
466/s, so aiohttp is the default). The SDK's own retries are off.

This module makes **one** attempt (:func:`call_once`) and never retries, waits or counts:
every outcome is a :class:`Completion`, a failure classified once (:func:`classify`) as
retryable (429, 408, 5xx including Anthropic's 529, timeouts, connection errors) or
permanent, with the provider's ``Retry-After`` and its text redacted (:func:`_failure`).
What to do with an outcome — retries, backoff, breakers, rate limits, budgets, fallback,
cascade — is the serving engine's (``workers/calls.py``, ``workers/attempts.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anthropic
import openai

from routing.cost import call_cost
from routing.errors import (
    ConfigError,
    ProviderPermanentError,
    ProviderRetryableError,
)
from routing.policy import ModelSpec, Policy, ProviderSpec
from workers import redact
from workers.aio import io_loop
from workers.settings import Settings

NO_KEY = "simulated"  # the key sent to a simulated provider that has none configured


@dataclass(frozen=True)
class ChatRequest:
    prompt: str
    system: str | None
    max_tokens: int
    logprobs: bool = False  # ask for token logprobs (cascade confidence)


@dataclass(frozen=True)
class Completion:
    ok: bool
    text: str | None
    finish_reason: str | None
    input_tokens: int
    output_tokens: int
    latency_ms: float
    attempts: int
    error: str | None = None
    retryable: bool = False  # a failure worth retrying (429, 5xx, timeout, connection)
    retry_after: float | None = None  # the provider's Retry-After hint, seconds
    status: int | None = None  # the HTTP status of a failure, when there was one
    logprobs: tuple[float, ...] | None = None  # per output token, when asked for
    reasoning_tokens: int | None = None  # of output_tokens, spent thinking (None: not said)
    cached_input_tokens: int | None = None  # of input_tokens, read from the prompt cache
    cache_write_tokens: int | None = None  # of input_tokens, written to it (Anthropic)

    def cost(self, model: ModelSpec, *, batch: bool = False) -> Decimal:
        """What this usage costs on ``model`` (cache reads and writes at their prices)."""
        return call_cost(
            model,
            self.input_tokens,
            self.output_tokens,
            batch=batch,
            cached=self.cached_input_tokens or 0,
            written=self.cache_write_tokens or 0,
        )

    @classmethod
    def failure(
        cls,
        error: str,
        *,
        retryable: bool,
        status: int | None = None,
        latency_ms: float = 0.0,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> Completion:
        """A failed call: no text, no tokens, the (already redacted) error."""
        return cls(
            ok=False,
            text=None,
            finish_reason=None,
            input_tokens=0,
            output_tokens=0,
            latency_ms=latency_ms,
            attempts=attempts,
            error=error,
            retryable=retryable,
            retry_after=retry_after,
            status=status,
        )


@dataclass(frozen=True)
class Endpoint:
    """A resolved provider endpoint: where to call and with which key."""

    name: str
    base_url: str
    api_key: str
    timeout_s: float
    kind: str = "openai"  # the wire protocol: "openai" or "anthropic"


# A provider SDK client; :func:`call_once` speaks the protocol of the one it is given.
Client = openai.AsyncOpenAI | anthropic.AsyncAnthropic
# Anthropic's stop reasons as the chat-completions finish reasons the pipeline records.
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
}


def resolve_endpoint(name: str, spec: ProviderSpec, settings: Settings) -> Endpoint:
    """The provider's URL and key: settings override the policy, secrets come from env."""
    override = settings.providers.get(name)
    base_url = override.base_url if override and override.base_url else spec.base_url
    if base_url == "simulated":
        raise ConfigError(
            f"provider {name!r} is the simulated provider but no URL is set: start "
            f"`batch-router sim-provider` and set BATCH_ROUTER_PROVIDERS__{name.upper()}__BASE_URL"
        )
    key = override.api_key.get_secret_value() if override and override.api_key else None
    if key is None and spec.api_key_env:
        key = os.environ.get(spec.api_key_env)
    if key is None:
        if not spec.simulated:
            where = f"{spec.api_key_env} or " if spec.api_key_env else ""
            raise ConfigError(
                f"provider {name!r}: no API key (set {where}"
                f"BATCH_ROUTER_PROVIDERS__{name.upper()}__API_KEY)"
            )
        key = NO_KEY
    timeout = min(spec.timeout_s, settings.request_timeout_s)
    return Endpoint(name, base_url, key, timeout, spec.kind)


def classify(exc: Exception) -> ProviderRetryableError | ProviderPermanentError:
    """Sort an SDK exception (either SDK) into retryable or permanent, once."""
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        status = exc.status_code
        # 529: Anthropic's "overloaded".
        if status == 429 or status >= 500 or status == 408:
            return ProviderRetryableError(str(exc), status, _retry_after(exc))
        return ProviderPermanentError(str(exc), status)
    if isinstance(
        exc,
        openai.APITimeoutError
        | openai.APIConnectionError
        | anthropic.APITimeoutError
        | anthropic.APIConnectionError
        | asyncio.TimeoutError,
    ):
        # The SDK's text is generic ("Connection error.", and with the aiohttp transport a
        # refused connection reads "Request timed out."): the cause says what happened.
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        return ProviderRetryableError(f"{type(exc).__name__}: {exc}{cause}")
    return ProviderPermanentError(f"{type(exc).__name__}: {exc}")


def _retry_after(exc: openai.APIStatusError | anthropic.APIStatusError) -> float | None:
    return retry_after_s(exc.response.headers)


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The provider's wait hint in seconds (``headers``: case-insensitive, as httpx's;
    lower-case keys otherwise), read as the official SDKs read it:
    ``retry-after-ms`` (milliseconds), else ``retry-after`` as seconds or as an HTTP date
    (RFC 9110; ``now``: the current Unix time). None when absent, unreadable or negative."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        with contextlib.suppress(ValueError):
            value = float(millis) / 1000
            return value if math.isfinite(value) and value >= 0 else None
    text = headers.get("retry-after")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        parsed = email.utils.parsedate_tz(text)
        if parsed is None:
            return None
        value = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
    return value if math.isfinite(value) and value >= 0 else None


async def call_once(
    client: Client, model: str, request: ChatRequest, attempt: int = 1, *, reasoning: bool = False
) -> Completion:
    """One call in the client's protocol; every outcome is a :class:`Completion` (never
    raises for a provider error: it is classified once, into ``retryable`` or not)."""
    start = time.perf_counter()
    try:
        if isinstance(client, anthropic.AsyncAnthropic):
            answer = await client.post(
                "/v1/messages", body=messages_body(model, request), cast_to=object
            )
            return parse_messages(answer, attempt, start)
        answer = await client.post(
            "/chat/completions", body=chat_body(model, request, reasoning=reasoning), cast_to=object
        )
    except Exception as exc:  # classified here, re-raised never
        return _failure(classify(exc), attempt, start)
    return parse_chat(answer, attempt, start)


def chat_body(model: str, request: ChatRequest, *, reasoning: bool = False) -> dict[str, Any]:
    """A chat-completions request. A reasoning model (``ModelSpec.reasoning``) takes its
    output cap as ``max_completion_tokens`` (it rejects ``max_tokens``) and no logprobs."""
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages.append({"role": "user", "content": request.prompt})
    cap = "max_completion_tokens" if reasoning else "max_tokens"
    body: dict[str, Any] = {"model": model, "messages": messages, cap: request.max_tokens}
    if request.logprobs and not reasoning:
        body["logprobs"] = True
    return body


def messages_body(model: str, request: ChatRequest) -> dict[str, Any]:
    """An Anthropic Messages request: the system prompt is a top-level field, and there are
    no logprobs (a cascade on such a model uses its other signals: routing.confidence)."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": [{"role": "user", "content": request.prompt}],
    }
    if request.system:
        body["system"] = request.system
    return body


def _since(start: float | None) -> float:
    """Milliseconds since ``start`` (``time.perf_counter``); 0 without one (an answer read
    from a provider batch's results has no latency of its own)."""
    return 0.0 if start is None else (time.perf_counter() - start) * 1000


def _cached_tokens(usage: dict[str, Any]) -> int | None:
    """``usage.prompt_tokens_details.cached_tokens`` (counted in ``prompt_tokens``)."""
    value = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    return int(value) if value is not None else None


def _reasoning_tokens(usage: dict[str, Any]) -> int | None:
    """``usage.completion_tokens_details.reasoning_tokens``, when the provider says."""
    value = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    return int(value) if value is not None else None


def parse_chat(body: Any, attempts: int, start: float | None) -> Completion:
    """A chat-completions response body (a plain dict) as a :class:`Completion`."""
    try:
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        logprobs = None
        if choice.get("logprobs") and choice["logprobs"].get("content") is not None:
            logprobs = tuple(float(t["logprob"]) for t in choice["logprobs"]["content"])
        return Completion(
            ok=True,
            text=choice["message"].get("content"),
            finish_reason=choice.get("finish_reason"),
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            latency_ms=_since(start),
            attempts=attempts,
            logprobs=logprobs,
            reasoning_tokens=_reasoning_tokens(usage),
            cached_input_tokens=_cached_tokens(usage),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        error = ProviderPermanentError(f"malformed chat-completions response: {exc!r}")
        return _failure(error, attempts, start)


def parse_messages(body: Any, attempts: int, start: float | None) -> Completion:
    """An Anthropic Messages response body (a plain dict) as a :class:`Completion`: the
    text blocks joined, the stop reason mapped (``_STOP_REASONS``), the reported usage
    (prompt-cache reads and writes count as input tokens)."""
    try:
        if body.get("type") != "message":
            raise ValueError(f"type is {body.get('type')!r}, not 'message'")
        blocks = [b["text"] for b in body["content"] if b.get("type") == "text"]
        usage = body["usage"]
        input_tokens = sum(
            int(usage.get(k) or 0)
            for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        reason = body.get("stop_reason")
        return Completion(
            ok=True,
            text="".join(blocks),
            finish_reason=_STOP_REASONS.get(reason, reason),
            input_tokens=input_tokens,
            output_tokens=int(usage.get("output_tokens", 0)),
            latency_ms=_since(start),
            attempts=attempts,
            cached_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
            cache_write_tokens=int(usage.get("cache_creation_input_tokens") or 0),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        error = ProviderPermanentError(f"malformed messages response: {exc!r}")
        return _failure(error, attempts, start)


def _failure(error: Exception, attempts: int, start: float | None) -> Completion:
    status = getattr(error, "status", None)
    retryable = isinstance(error, ProviderRetryableError)
    kind = "retryable" if retryable else "permanent"
    # the one place provider and exception text becomes ``Completion.error`` (stored in the
    # results and the audit trail): secrets redacted, then cut (routing.redact)
    error_text = redact.redact_error(f"{kind} provider error (status {status}): {error}")
    return Completion.failure(
        error_text,
        retryable=retryable,
        status=status,
        latency_ms=_since(start),
        attempts=attempts,
        retry_after=getattr(error, "retry_after", None),
    )


def make_client(endpoint: Endpoint, transport: str) -> Client:
    """The SDK client of the endpoint's protocol; the SDK's own retries off. Its key is
    registered for redaction (an error body may echo it)."""
    if endpoint.api_key != NO_KEY:
        redact.register(endpoint.api_key)
    if endpoint.kind == "anthropic":
        return anthropic.AsyncAnthropic(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            max_retries=0,
            timeout=endpoint.timeout_s,
            http_client=anthropic.DefaultAioHttpClient()
            if transport == "aiohttp"
            else anthropic.DefaultAsyncHttpxClient(),
        )
    http_client = (
        openai.DefaultAioHttpClient()
        if transport == "aiohttp"
        else openai.DefaultAsyncHttpxClient()
    )
    return openai.AsyncOpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        max_retries=0,
        timeout=endpoint.timeout_s,
        http_client=http_client,
    )


def client_for(policy: Policy, model: ModelSpec, settings: Settings) -> Client:
    """This process's SDK client for ``model``'s provider (cached on the I/O loop)."""
    redact.register(settings)
    redact.register_policy_keys(policy)
    endpoint = resolve_endpoint(model.provider, policy.providers[model.provider], settings)
    transport = settings.http_transport
    return io_loop().cached(
        (endpoint, transport), lambda: make_client(endpoint, transport), _close_client
    )


async def _close_client(client: Client) -> None:
    await client.close()
