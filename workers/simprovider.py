"""Simulated LLM provider: a real aiohttp HTTP server speaking a subset of OpenAI's wire protocol,
and of Anthropic's Messages protocol (``POST /v1/messages``: workers/sim_messages.py).

Demos, tests and benchmarks point an OpenAI-compatible client (``base_url=".../v1"``) or an
Anthropic client (``base_url`` the server root) at it. It is never used silently in place of a
configured provider.

Wire protocol subset
--------------------
``POST /v1/chat/completions``
    Request: ``model`` (str, required), ``messages`` (non-empty list of ``{role, content}``;
    ``content`` is a string, a list of ``{"type": "text", "text": ...}`` parts, or null), optional
    ``max_completion_tokens`` / ``max_tokens`` (positive int; the former wins), ``logprobs`` (bool),
    ``n`` (only 1). ``stream: true`` is rejected. Other fields (temperature, ...) are ignored.
    Response: ``{id, object: "chat.completion", created, model, system_fingerprint,
    choices: [{index: 0, message: {role: "assistant", content}, logprobs, finish_reason}],
    usage: {prompt_tokens, completion_tokens, total_tokens}}``.
    The answer text is deterministic per (model, messages): a blake2b fingerprint seeds a small
    sentence generator; its length (~8..200 o200k tokens) depends on the hash and prompt length.
    A token limit below that length truncates it (``finish_reason: "length"``, else ``"stop"``).
    ``usage`` counts o200k tokens: all message contents for the prompt, the produced content for
    the completion. With ``logprobs: true``, ``choices[0].logprobs.content`` holds one
    ``{token, logprob, bytes, top_logprobs: []}`` per output token (deterministic, -0.01..-2.0).
    Errors use OpenAI's shape ``{"error": {message, type, param, code}}``: 400
    ``invalid_request_error`` for a bad request, 500 ``server_error`` (simulated), 429
    ``rate_limit_exceeded`` (simulated) with ``Retry-After`` (seconds) and ``retry-after-ms``,
    401 ``invalid_api_key`` (simulated, ``auth_error_rate``; the message quotes the request's
    auth headers, as careless providers do).

Simulation control (not part of OpenAI's protocol)
--------------------------------------------------
``GET /_sim/config``, ``POST /_sim/config`` (JSON of any ``SimConfig`` fields; returns the new
config; a ``seed`` in it re-seeds the random source), ``GET /_sim/stats``, ``POST /_sim/reset``
(zeroes the counters), ``GET /healthz`` (``ok``).

Configuration (``SimConfig``)
-----------------------------
Per request, in this order: with probability ``auth_error_rate`` answer 401 with the request's
``Authorization`` / ``x-api-key`` headers echoed in the message (a careless provider, for the
secret-redaction tests); with probability ``rate_limit_rate`` answer 429; with ``error_rate``
answer 500 (always for a model in ``fail_models``: an outage); with ``hang_rate`` sleep
``hang_s`` first (simulates a timeout); then sleep
``latency_ms_mean`` +/- uniform ``latency_ms_jitter`` ms and answer. Decisions draw from one
``random.Random(seed)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import bpe_openai
from aiohttp import web

__all__ = [
    "SimConfig",
    "SimServer",
    "build_arg_parser",
    "config_from_args",
    "count_tokens",
    "main",
    "make_app",
    "serve",
]

_ENCODING = bpe_openai.get_encoding("o200k_base")
_CACHE_SIZE = 65_536
_MAX_PROMPT_BYTES = 8 * 1024 * 1024
_T = TypeVar("_T")
_AUTH_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SimConfig:
    """Behaviour of the simulated provider; all rates are probabilities in [0, 1]."""

    latency_ms_mean: float = 0.0
    latency_ms_jitter: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: float = 1.0
    hang_rate: float = 0.0
    hang_s: float = 30.0
    seed: int = 0
    fail_models: tuple[str, ...] = ()  # every request for these models answers 500 (outage)
    auth_error_rate: float = 0.0  # 401 echoing the request's auth headers (a careless provider)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "fail_models":
                if isinstance(value, str) or not all(isinstance(m, str) for m in value):
                    raise ValueError("fail_models must be a list of model names")
                object.__setattr__(self, f.name, tuple(value))
                continue
            if f.name == "seed":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError("seed must be an integer")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{f.name} must be a finite, non-negative number")
            if f.name.endswith("_rate") and value > 1:
                raise ValueError(f"{f.name} must be between 0 and 1")
            object.__setattr__(self, f.name, float(value))

    def updated(self, changes: dict[str, Any]) -> SimConfig:
        """Return a copy with ``changes`` applied; unknown fields raise ValueError."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "fail_models": list(self.fail_models)}


# --------------------------------------------------------------------------- tokens and text

_CHUNK_CHARS = 50_000  # bpe_openai refuses >= 1M chars or > 200k tokens in one call
_COUNT_CACHE: dict[bytes, int] = {}


def _chunks(text: str) -> Iterator[str]:
    """Split long text before a single space between words (a pre-token boundary)."""
    start = 0
    while len(text) - start > _CHUNK_CHARS:
        end = start + _CHUNK_CHARS
        cut = text.rfind(" ", start + 1, end)
        while cut > start + 1 and (text[cut - 1].isspace() or text[cut + 1 : cut + 2].isspace()):
            cut = text.rfind(" ", start + 1, cut)
        cut = cut if cut > start + 1 else end
        yield text[start:cut]
        start = cut
    yield text[start:]


def _encode(text: str) -> list[int]:
    """o200k token ids; special-token text (e.g. ``<|endoftext|>``) is encoded as plain text."""
    if len(text) <= _CHUNK_CHARS:
        return _ENCODING.encode_ordinary(text)
    return [token for chunk in _chunks(text) for token in _ENCODING.encode_ordinary(chunk)]


def count_tokens(text: str) -> int:
    """o200k token count of ``text``, cached by a blake2b hash of the content."""
    if not text:
        return 0
    key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    count = _COUNT_CACHE.get(key)
    if count is None:
        if len(_COUNT_CACHE) >= _CACHE_SIZE:
            _COUNT_CACHE.clear()
        count = _COUNT_CACHE[key] = len(_encode(text))
    return count


@functools.cache  # bounded by the vocabulary size
def _token_bytes(token_id: int) -> bytes:
    return _ENCODING.decode_single_token_bytes(token_id)


def _decode(token_ids: Sequence[int]) -> str:
    return b"".join(map(_token_bytes, token_ids)).decode("utf-8", errors="replace")


# The answer text is assembled from pre-tokenized pieces that always meet at pre-token boundaries
# (" " + letter, or a word followed by "."), so its ids are the concatenation of the pieces' ids.
_Piece = tuple[tuple[int, ...], str]

_OPENERS = (
    "In short,",
    "Overall,",
    "Put simply,",
    "In practice,",
    "Generally,",
    "As a rule,",
    "For most cases,",
    "Here,",
    "Briefly,",
    "On balance,",
)
_SUBJECTS = (
    "the answer",
    "the best option",
    "this approach",
    "the result",
    "a simple model",
    "the first step",
    "the main risk",
    "the total cost",
    "a careful review",
    "the right choice",
    "the key idea",
    "a good plan",
    "the outcome",
)
_VERBS = (
    "depends on",
    "comes down to",
    "is driven by",
    "improves with",
    "should balance",
    "relies on",
    "is limited by",
    "benefits from",
    "starts with",
    "is shaped by",
)
_OBJECTS = (
    "the size of the input",
    "careful testing",
    "the available budget",
    "clear requirements",
    "the quality of the data",
    "a few key trade-offs",
    "how often it runs",
    "the context you give it",
    "small, steady steps",
    "what the user needs",
    "the details of the question",
    "reliable measurements",
)
_ENDINGS = (
    "",
    "",
    " in most settings",
    " over time",
    " for this kind of task",
    ", so start small",
    ", which keeps it predictable",
    " more than anything else",
)


def _pieces(texts: Sequence[str], prefix: str = "") -> tuple[_Piece, ...]:
    return tuple((tuple(_ENCODING.encode_ordinary(prefix + t)), prefix + t) for t in texts)


_CAPITALS = [s[0].upper() + s[1:] for s in _SUBJECTS]
_OPENER = (_pieces(_OPENERS), _pieces(_OPENERS, " "))  # [0]: starts the answer
_SUBJECT_CAP = (_pieces(_CAPITALS), _pieces(_CAPITALS, " "))
_SUBJECT = _pieces(_SUBJECTS, " ")
_VERB = _pieces(_VERBS, " ")
_OBJECT = _pieces(_OBJECTS, " ")
_ENDING = _pieces(_ENDINGS)
_PERIOD = _pieces(["."])[0]


def _sentence(rng: random.Random, first: bool) -> list[_Piece]:
    """One sentence; every choice is a mixed-radix digit of a single 64-bit draw."""
    bits = rng.getrandbits(64)
    lead = 0 if first else 1  # the answer's first piece has no leading space
    start = [_OPENER[lead], _SUBJECT] if bits & 1 else [_SUBJECT_CAP[lead]]
    bits >>= 1
    pieces = []
    for table in (*start, _VERB, _OBJECT, _ENDING):
        bits, index = divmod(bits, len(table))
        pieces.append(table[index])
    pieces.append(_PERIOD)
    return pieces


def _target_length(digest: bytes, prompt_tokens: int) -> int:
    """Deterministic answer length in tokens (the answer ends at the sentence reaching it)."""
    base = 8 + int.from_bytes(digest[:2], "big") % 96
    return min(base + prompt_tokens // 8, 180)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _answer(digest: bytes, prompt_tokens: int) -> _Piece:
    """Token ids and text of the full (untruncated) deterministic answer for one fingerprint."""
    rng = random.Random(digest)
    target = _target_length(digest, prompt_tokens)
    ids: list[int] = []
    texts: list[str] = []
    while len(ids) < target:
        for piece_ids, text in _sentence(rng, first=not texts):
            ids.extend(piece_ids)
            texts.append(text)
    return tuple(ids), "".join(texts)


def _logprobs(digest: bytes, token_ids: Sequence[int]) -> dict[str, Any]:
    rng = random.Random(digest[::-1])
    content = []
    for token_id in token_ids:
        raw = _token_bytes(token_id)
        token = raw.decode("utf-8", errors="replace")
        logprob = round(-0.01 - 1.99 * rng.random() ** 3, 6)
        content.append({"token": token, "logprob": logprob, "bytes": list(raw), "top_logprobs": []})
    return {"content": content, "refusal": None}


# --------------------------------------------------------------------------- request parsing


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None, code: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass(frozen=True)
class _ChatRequest:
    model: str
    contents: tuple[str, ...]
    digest: bytes
    max_tokens: int | None
    logprobs: bool


def _message_text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise _BadRequest(
        f"Invalid content in messages[{index}].", f"messages[{index}].content", "invalid_type"
    )


def _parse_messages(messages: Any) -> tuple[str, ...]:
    if messages is None:
        raise _BadRequest(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty array.", "messages", "invalid_type")
    contents = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _BadRequest(
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
            raise _BadRequest(f"'{name}' must be a positive integer.", name, "invalid_value")
        return value
    return None


def _fingerprint(model: str, messages: Any) -> bytes:
    canonical = json.dumps([model, messages], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=16).digest()


def _parse_chat(body: Any) -> _ChatRequest:
    if not isinstance(body, dict):
        raise _BadRequest("Request body must be a JSON object.", None, "invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest(
            "Missing required parameter: 'model'.", "model", "missing_required_parameter"
        )
    contents = _parse_messages(body.get("messages"))
    if body.get("stream"):
        raise _BadRequest(
            "The simulated provider does not support streaming.", "stream", "unsupported_parameter"
        )
    if body.get("n", 1) != 1:
        raise _BadRequest("The simulated provider only supports n=1.", "n", "unsupported_value")
    return _ChatRequest(
        model=model,
        contents=contents,
        digest=_fingerprint(model, body["messages"]),
        max_tokens=_parse_limit(body),
        logprobs=body.get("logprobs") is True,
    )


# --------------------------------------------------------------------------- state


@dataclass
class _Stats:
    requests: int = 0
    completions: int = 0
    errors: int = 0
    rate_limited: int = 0
    invalid: int = 0
    hangs: int = 0
    abandoned: int = 0
    duplicate_prompts: int = 0
    by_model: Counter[str] = field(default_factory=Counter)
    requests_by_model: Counter[str] = field(default_factory=Counter)
    seen: set[int] = field(default_factory=set)  # 64-bit fingerprint prefixes: compact

    def record_completion(self, model: str, digest: bytes) -> None:
        self.completions += 1
        self.by_model[model] += 1
        key = int.from_bytes(digest[:8], "big")
        if key in self.seen:
            self.duplicate_prompts += 1
        else:
            self.seen.add(key)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completions": self.completions,
            "errors": self.errors,
            "rate_limited": self.rate_limited,
            "invalid": self.invalid,
            "hangs": self.hangs,
            "abandoned": self.abandoned,
            "by_model": dict(self.by_model),
            "requests_by_model": dict(self.requests_by_model),
            "distinct_prompts": len(self.seen),
            "duplicate_prompts": self.duplicate_prompts,
        }


class _SimState:
    """Mutable per-app state; only touched from the server's event loop."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.stats = _Stats()
        self.ids = itertools.count(1)

    def configure(self, changes: dict[str, Any]) -> SimConfig:
        self.config = self.config.updated(changes)
        if "seed" in changes:
            self.rng.seed(self.config.seed)
        return self.config

    def roll(self, rate: float) -> bool:
        return rate >= 1.0 or (rate > 0.0 and self.rng.random() < rate)

    def delay_s(self) -> float:
        cfg = self.config
        jitter = self.rng.uniform(-1.0, 1.0) * cfg.latency_ms_jitter if cfg.latency_ms_jitter else 0
        return max(0.0, cfg.latency_ms_mean + jitter) / 1000.0


_STATE = web.AppKey("sim_state", _SimState)


# --------------------------------------------------------------------------- responses


def _error(
    status: int,
    message: str,
    kind: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _rate_limited(retry_after_s: float) -> web.Response:
    headers = {
        "Retry-After": f"{retry_after_s:g}",
        "retry-after-ms": str(round(retry_after_s * 1000)),
    }
    return _error(
        429,
        "Rate limit reached for requests (simulated).",
        "requests",
        "rate_limit_exceeded",
        headers=headers,
    )


def _completion_body(req: _ChatRequest, response_id: str) -> dict[str, Any]:
    prompt_tokens = sum(count_tokens(text) for text in req.contents)
    token_ids, content = _answer(req.digest, prompt_tokens)
    finish_reason = "stop"
    if req.max_tokens is not None and req.max_tokens < len(token_ids):
        token_ids, finish_reason = token_ids[: req.max_tokens], "length"
        content = _decode(token_ids)
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": content, "refusal": None},
        "logprobs": _logprobs(req.digest, token_ids) if req.logprobs else None,
        "finish_reason": finish_reason,
    }
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(token_ids),
        "total_tokens": prompt_tokens + len(token_ids),
    }
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": "fp_sim",
        "choices": [choice],
        "usage": usage,
    }


async def _read_chat(request: web.Request) -> _ChatRequest:
    if request.content_length and request.content_length > _MAX_PROMPT_BYTES:
        raise _BadRequest("Request body too large.", None, "request_too_large")
    try:
        body = await request.json()
    except ValueError as exc:
        raise _BadRequest("Request body is not valid JSON.", None, "invalid_json") from exc
    return _parse_chat(body)


def _unauthorized(headers: Mapping[str, str]) -> web.Response:
    """401 whose message echoes the request's credentials, as some providers' do."""
    echoed = "; ".join(f"{k}: {v}" for k, v in headers.items() if k.lower() in _AUTH_HEADERS)
    message = f"Invalid credentials (simulated). Request headers: {echoed or 'none'}"
    return _error(401, message, "invalid_request_error", "invalid_api_key")


async def _simulate(
    state: _SimState, model: str, headers: Mapping[str, str] | None = None
) -> web.Response | None:
    """Apply the configured faults and delays; a response here short-circuits the request."""
    cfg = state.config
    if state.roll(cfg.auth_error_rate):
        state.stats.errors += 1
        return _unauthorized(headers or {})
    if model in cfg.fail_models:
        state.stats.errors += 1
        return _error(500, f"{model} is down (simulated outage).", "server_error", "server_error")
    if state.roll(cfg.rate_limit_rate):
        state.stats.rate_limited += 1
        return _rate_limited(cfg.retry_after_s)
    if state.roll(cfg.error_rate):
        state.stats.errors += 1
        return _error(
            500,
            "The server had an error while processing your request (simulated).",
            "server_error",
            "server_error",
        )
    if state.roll(cfg.hang_rate):
        state.stats.hangs += 1
        await asyncio.sleep(cfg.hang_s)
    delay = state.delay_s()
    if delay:
        await asyncio.sleep(delay)
    return None


async def _chat_completions(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    state.stats.requests += 1
    try:
        chat = await _read_chat(request)
    except _BadRequest as exc:
        state.stats.invalid += 1
        return _error(400, str(exc), "invalid_request_error", exc.code, exc.param)
    state.stats.requests_by_model[chat.model] += 1
    faulted = await _simulate(state, chat.model, request.headers)
    if faulted is not None:
        return faulted
    body = _completion_body(chat, f"chatcmpl-sim{next(state.ids):010d}")
    if request.transport is None or request.transport.is_closing():
        state.stats.abandoned += 1  # the client gave up (timeout) before the answer
    else:
        state.stats.record_completion(chat.model, chat.digest)
    return web.json_response(body)


async def _get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE].config.as_dict())


async def _post_config(request: web.Request) -> web.Response:
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("config must be a JSON object")
        config = request.app[_STATE].configure(changes)
    except (ValueError, TypeError) as exc:
        return _error(400, str(exc), "invalid_request_error", "invalid_config")
    return web.json_response(config.as_dict())


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE].stats.as_dict())


async def _reset(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    state.stats = _Stats()
    return web.json_response(state.stats.as_dict())


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(config: SimConfig | None = None) -> web.Application:
    """Build the aiohttp application (one independent state per app)."""
    app = web.Application(client_max_size=_MAX_PROMPT_BYTES)
    app[_STATE] = _SimState(config or SimConfig())
    app.router.add_post("/v1/chat/completions", _chat_completions)
    from workers.sim_messages import messages  # Anthropic's protocol on the same state

    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/_sim/config", _get_config)
    app.router.add_post("/_sim/config", _post_config)
    app.router.add_get("/_sim/stats", _get_stats)
    app.router.add_post("/_sim/reset", _reset)
    app.router.add_get("/healthz", _healthz)
    return app


# --------------------------------------------------------------------------- running


async def _start_site(
    app: web.Application, host: str, port: int, shutdown_timeout: float
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


async def _serve_until_signal(host: str, port: int, config: SimConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not possible outside the main thread or on platforms without signal support.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    runner, bound = await _start_site(make_app(config), host, port, shutdown_timeout=5.0)
    print(f"sim-provider listening on http://{host}:{bound}/v1", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(host: str, port: int, config: SimConfig) -> None:
    """Serve on ``host:port`` until SIGINT/SIGTERM (blocking); port 0 picks a free port."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signal(host, port, config))


class SimServer:
    """The simulated provider on 127.0.0.1 in a background thread with its own event loop.

    >>> with SimServer(SimConfig(latency_ms_mean=5)) as sim:
    ...     client = openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
    """

    def __init__(
        self, config: SimConfig | None = None, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.config = config or SimConfig()
        self.host = host
        self.port = port
        self._app: web.Application | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, timeout: float = 10.0) -> SimServer:
        if self._thread is not None:
            raise RuntimeError("SimServer already started")
        self._thread = threading.Thread(target=self._run, name="sim-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("simulated provider did not start in time")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("simulated provider failed to start") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None

    def configure(self, **changes: Any) -> SimConfig:
        """Change the running server's config (same as ``POST /_sim/config``)."""
        return self._call(lambda state: state.configure(changes))

    def stats(self) -> dict[str, Any]:
        return self._call(lambda state: state.stats.as_dict())

    def reset(self) -> None:
        self._call(lambda state: setattr(state, "stats", _Stats()))

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, fn: Callable[[_SimState], _T]) -> _T:
        if self._loop is None or self._app is None or self._thread is None:
            raise RuntimeError("SimServer is not running")
        app = self._app

        async def run() -> _T:
            return fn(app[_STATE])

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start()
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._app = make_app(self.config)
        runner, self.port = await _start_site(self._app, self.host, self.port, shutdown_timeout=1.0)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()


# --------------------------------------------------------------------------- CLI


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the simulator flags to ``parser`` (or a new one); shared with ``batch-router``."""
    p = parser or argparse.ArgumentParser(
        prog="python -m workers.simprovider",
        description="Simulated OpenAI-compatible LLM provider.",
        epilog="example: python -m workers.simprovider --port 8000 --latency-ms 200 "
        "--rate-limit-rate 0.05",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="mean latency in ms")
    p.add_argument("--latency-jitter-ms", type=float, default=0.0, help="uniform +/- jitter, ms")
    p.add_argument("--error-rate", type=float, default=0.0, help="probability of HTTP 500")
    p.add_argument("--rate-limit-rate", type=float, default=0.0, help="probability of HTTP 429")
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on 429")
    p.add_argument("--hang-rate", type=float, default=0.0, help="probability of hanging")
    p.add_argument("--hang-s", type=float, default=30.0, help="seconds a hang lasts")
    p.add_argument("--seed", type=int, default=0, help="seed of the random decisions")
    p.add_argument(
        "--auth-error-rate", type=float, default=0.0, help="probability of a 401 echoing the key"
    )
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        latency_ms_mean=args.latency_ms,
        latency_ms_jitter=args.latency_jitter_ms,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        retry_after_s=args.retry_after,
        hang_rate=args.hang_rate,
        hang_s=args.hang_s,
        seed=args.seed,
        auth_error_rate=args.auth_error_rate,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    serve(args.host, args.port, config)


if __name__ == "__main__":
    main()
