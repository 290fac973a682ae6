"""Provider calls over real HTTP: the simulated provider (in-thread ``SimServer``) with
error injection, and small scripted aiohttp servers for exact status sequences."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import openai
import pytest
import yaml
from aiohttp import web

from routing.errors import ConfigError
from routing.policy import Policy, ProviderSpec, RetrySpec, parse_policy
from tests import services
from workers import provider
from workers.provider import (
    ChatRequest,
    Completion,
    Endpoint,
    RealtimeExecutor,
    call_with_retry,
    make_client,
    resolve_endpoint,
)
from workers.settings import ProviderOverride, Settings
from workers.simprovider import SimServer

FAST_RETRY = RetrySpec(max_attempts=3, base_delay_s=0.0, max_delay_s=1.0)
OK_BODY = {
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def settings(**kwargs: Any) -> Settings:
    return Settings(_env_file=None, **kwargs)  # type: ignore[call-arg]


def make_policy(base_url: str = "simulated", max_attempts: int = 3, **fields: Any) -> Policy:
    data = {
        "providers": {"sim": {"base_url": base_url, **fields}},
        "tiers": [
            {
                "name": "only",
                "models": [
                    {
                        "name": "m-1",
                        "provider": "sim",
                        "input_per_mtok": "1",
                        "output_per_mtok": "2",
                    }
                ],
                "concurrency": 4,
            }
        ],
        "retry": {"max_attempts": max_attempts, "base_delay_s": 0.0, "max_delay_s": 1.0},
    }
    return parse_policy(yaml.safe_dump(data))


def requests(n: int, max_tokens: int = 64) -> list[ChatRequest]:
    return [
        ChatRequest(f"Question number {i}: what is {i} + {i}?", None, max_tokens) for i in range(n)
    ]


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 3  # the simulated provider's seed (tests/conftest.py)


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float | None, float]]:
    """Every backoff decision: (attempt, the provider's Retry-After hint, the delay slept)."""
    seen: list[tuple[int, float | None, float]] = []
    real = provider.backoff_delay

    def recording(
        attempt: int, spec: RetrySpec, retry_after: float | None, rng: random.Random
    ) -> float:
        delay = real(attempt, spec, retry_after, rng)
        seen.append((attempt, retry_after, delay))
        return delay

    monkeypatch.setattr(provider, "backoff_delay", recording)
    return seen


def call(
    base_url: str,
    request: ChatRequest,
    retry: RetrySpec = FAST_RETRY,
    timeout: float = 10.0,
    transport: str = "aiohttp",
) -> Completion:
    """One :func:`call_with_retry` through a fresh client (its own event loop)."""

    async def run() -> Completion:
        endpoint = Endpoint("sim", base_url, "key", timeout)
        async with make_client(endpoint, transport) as client:
            return await call_with_retry(client, "m-1", request, retry, random.Random(0))

    return asyncio.run(run())


@asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[str]:
    """A one-route aiohttp server in the running loop; yields its ``…/v1`` base URL."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


def run_scripted(
    handler: Handler, request: ChatRequest, retry: RetrySpec = FAST_RETRY
) -> Completion:
    async def run() -> Completion:
        async with (
            scripted(handler) as url,
            make_client(Endpoint("s", url, "key", 10.0), "aiohttp") as client,
        ):
            return await call_with_retry(client, "m-1", request, retry, random.Random(0))

    return asyncio.run(run())


# ---------------------------------------------------------------- successful calls


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_executor_answers_every_request_in_order(sim: SimServer, transport: str) -> None:
    policy = make_policy()
    cfg = settings(
        providers={"sim": ProviderOverride(base_url=sim.base_url)}, http_transport=transport
    )
    batch = requests(12)
    done = RealtimeExecutor(policy, cfg, concurrency=4).run(policy.tiers[0].primary, batch)

    assert len(done) == len(batch)
    assert all(c.ok and c.error is None and c.attempts == 1 for c in done)
    assert all(c.text and c.input_tokens > 0 and c.output_tokens > 0 for c in done)
    # the simulator's answer is a function of the prompt: each answer is its own request's
    singles = [call(sim.base_url, r) for r in batch[::5]]
    assert [c.text for c in singles] == [c.text for c in done[::5]]
    assert sim.stats()["completions"] == len(batch) + len(singles)


def test_system_prompt_and_max_tokens_reach_the_provider(sim: SimServer) -> None:
    plain = call(sim.base_url, ChatRequest("Describe the sea.", None, 512))
    with_system = call(sim.base_url, ChatRequest("Describe the sea.", "You are a poet.", 512))
    assert with_system.input_tokens > plain.input_tokens
    short = call(sim.base_url, ChatRequest("Describe the sea.", None, 2))
    assert (short.ok, short.finish_reason, short.output_tokens) == (True, "length", 2)
    assert plain.finish_reason == "stop"


# ---------------------------------------------------------------- retryable errors


def test_429_honours_retry_after_then_fails_after_max_attempts(
    sim: SimServer, delays: list[tuple[int, float | None, float]]
) -> None:
    sim.configure(rate_limit_rate=1.0, retry_after_s=0.05)
    done = call(sim.base_url, requests(1)[0])

    assert not done.ok and done.text is None
    assert done.attempts == FAST_RETRY.max_attempts
    assert done.error is not None and "retryable" in done.error and "status 429" in done.error
    assert sim.stats()["rate_limited"] == FAST_RETRY.max_attempts
    # one backoff between consecutive attempts, each at least the Retry-After hint
    assert [(a, hint) for a, hint, _ in delays] == [(1, 0.05), (2, 0.05)]
    assert all(delay >= 0.05 for _, _, delay in delays)


def test_retry_after_beyond_the_policy_cap_waits_the_cap(
    sim: SimServer, delays: list[tuple[int, float | None, float]]
) -> None:
    sim.configure(rate_limit_rate=1.0, retry_after_s=600)
    retry = RetrySpec(max_attempts=2, base_delay_s=0.0, max_delay_s=0.01)
    done = call(sim.base_url, requests(1)[0], retry)
    assert done.attempts == 2
    assert delays == [(1, 600.0, 0.01)]


def test_429_then_success(delays: list[tuple[int, float | None, float]]) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.json_response(
                {
                    "error": {
                        "message": "slow down",
                        "type": "requests",
                        "code": "rate_limit_exceeded",
                    }
                },
                status=429,
                headers={"Retry-After": "0.02"},
            )
        return web.json_response(OK_BODY)

    done = run_scripted(handler, requests(1)[0])
    assert (done.ok, done.text, done.attempts, calls) == (True, "hi", 2, 2)
    assert (done.input_tokens, done.output_tokens, done.finish_reason) == (3, 1, "stop")
    assert [(a, hint) for a, hint, _ in delays] == [(1, 0.02)]


def test_5xx_retried_up_to_max_attempts(sim: SimServer) -> None:
    sim.configure(error_rate=1.0)
    retry = RetrySpec(max_attempts=4, base_delay_s=0.001, max_delay_s=0.01)
    done = call(sim.base_url, requests(1)[0], retry)
    assert not done.ok
    assert done.attempts == 4
    assert done.error is not None
    assert done.error.startswith("retryable provider error (status 500)")
    assert "simulated" in done.error  # the provider's own message is kept
    assert sim.stats()["errors"] == 4


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_connection_refused_is_retryable(transport: str) -> None:
    port = services.free_port()
    done = call(f"http://127.0.0.1:{port}/v1", requests(1)[0], transport=transport)
    assert not done.ok
    assert done.attempts == FAST_RETRY.max_attempts
    assert done.error is not None and done.error.startswith("retryable")
    # the error says what happened (the aiohttp transport's SDK text is "Request timed out.")
    assert "Connect" in done.error and ("refused" in done.error or "failed" in done.error)


def test_timeout_is_retryable(sim: SimServer) -> None:
    sim.configure(hang_rate=1.0, hang_s=2.0)
    retry = RetrySpec(max_attempts=2, base_delay_s=0.0, max_delay_s=0.0)
    done = call(sim.base_url, requests(1)[0], retry, timeout=0.2)
    assert not done.ok
    assert done.attempts == 2
    assert done.error is not None and done.error.startswith("retryable")
    assert "Timeout" in done.error


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (408, True),
        (429, True),
        (500, True),
        (503, True),
        (400, False),
        (401, False),
        (404, False),
        (422, False),
    ],
)
def test_status_codes_split_into_retryable_and_permanent(status: int, retryable: bool) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"error": {"message": f"scripted {status}"}}, status=status)

    done = run_scripted(handler, requests(1)[0])
    expected = FAST_RETRY.max_attempts if retryable else 1
    assert (done.ok, done.attempts, calls) == (False, expected, expected)
    kind = "retryable" if retryable else "permanent"
    assert done.error is not None and done.error.startswith(
        f"{kind} provider error (status {status})"
    )


# ---------------------------------------------------------------- permanent errors


def test_400_is_permanent_one_attempt(sim: SimServer) -> None:
    done = call(sim.base_url, ChatRequest("hello", None, 0))  # max_tokens must be positive
    assert not done.ok
    assert done.attempts == 1
    assert done.error is not None and done.error.startswith("permanent provider error (status 400)")
    assert sim.stats()["invalid"] == 1 and sim.stats()["requests"] == 1


@pytest.mark.parametrize("body", [{"choices": []}, {"usage": {}}, ["not", "an", "object"]])
def test_malformed_response_is_a_permanent_failure(body: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)

    done = run_scripted(handler, requests(1)[0])
    assert (done.ok, done.attempts) == (False, 1)
    assert done.error is not None and "malformed chat-completions response" in done.error


# ---------------------------------------------------------------- bounded concurrency


@pytest.mark.parametrize("concurrency", [1, 3])
def test_never_more_than_concurrency_requests_in_flight(concurrency: int) -> None:
    """The server holds each request until ``concurrency`` are in flight together (or
    a generous deadline passes), so the bound is reached and any excess would show."""
    in_flight, peak, served = 0, 0, 0
    full = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, peak, served
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight >= concurrency:
            full.set()
        try:
            await asyncio.wait_for(full.wait(), 5)
            await asyncio.sleep(0.01)  # room for an excess request to arrive
        finally:
            in_flight -= 1
        served += 1
        return web.json_response(OK_BODY)

    async def run() -> list[Completion]:
        async with scripted(handler) as url:
            policy = make_policy()
            cfg = settings(providers={"sim": ProviderOverride(base_url=url)})
            executor = RealtimeExecutor(policy, cfg, concurrency=concurrency)
            return await asyncio.to_thread(executor.run, policy.tiers[0].primary, requests(20))

    done = asyncio.run(run())
    assert all(c.ok for c in done) and served == 20
    assert peak == concurrency


# ---------------------------------------------------------------- endpoints


def sim_spec(**kwargs: Any) -> ProviderSpec:
    return ProviderSpec(**{"base_url": "simulated", "api_key_env": "SIM_API_KEY", **kwargs})


def test_simulated_provider_without_url_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="BATCH_ROUTER_PROVIDERS__SIM__BASE_URL"):
        resolve_endpoint("sim", sim_spec(), settings())


def test_executor_refuses_a_simulated_provider_without_url() -> None:
    policy = make_policy()
    with pytest.raises(ConfigError, match="BATCH_ROUTER_PROVIDERS__SIM__BASE_URL"):
        RealtimeExecutor(policy, settings(), 4).run(policy.tiers[0].primary, requests(1))


def test_settings_override_the_policy_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIM_API_KEY", raising=False)
    cfg = settings(providers={"sim": ProviderOverride(base_url="http://127.0.0.1:9/v1")})
    endpoint = resolve_endpoint("sim", sim_spec(), cfg)
    assert (endpoint.name, endpoint.base_url, endpoint.api_key) == (
        "sim",
        "http://127.0.0.1:9/v1",
        "simulated",
    )

    real = ProviderSpec(base_url="https://api.example.com/v1", api_key_env="EXAMPLE_API_KEY")
    monkeypatch.setenv("EXAMPLE_API_KEY", "from-env")
    cfg = settings(providers={"example": ProviderOverride(base_url="http://proxy.local/v1")})
    endpoint = resolve_endpoint("example", real, cfg)
    assert (endpoint.base_url, endpoint.api_key) == ("http://proxy.local/v1", "from-env")


def test_keys_come_from_settings_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ProviderSpec(base_url="https://api.example.com/v1", api_key_env="EXAMPLE_API_KEY")
    monkeypatch.setenv("EXAMPLE_API_KEY", "from-env")
    assert resolve_endpoint("example", real, settings()).api_key == "from-env"
    cfg = settings(providers={"example": ProviderOverride(api_key="from-settings")})
    endpoint = resolve_endpoint("example", real, cfg)
    assert (endpoint.base_url, endpoint.api_key) == ("https://api.example.com/v1", "from-settings")
    assert "from-settings" not in repr(cfg)  # a secret, never printed


def test_real_provider_without_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXAMPLE_API_KEY", raising=False)
    real = ProviderSpec(base_url="https://api.example.com/v1", api_key_env="EXAMPLE_API_KEY")
    with pytest.raises(ConfigError, match="EXAMPLE_API_KEY") as info:
        resolve_endpoint("example", real, settings())
    assert "BATCH_ROUTER_PROVIDERS__EXAMPLE__API_KEY" in str(info.value)
    # a provider with no key variable in the policy names the setting, not "None"
    keyless = ProviderSpec(base_url="https://api.example.com/v1")
    with pytest.raises(ConfigError, match="no API key") as info:
        resolve_endpoint("example", keyless, settings())
    assert "None" not in str(info.value)
    assert "BATCH_ROUTER_PROVIDERS__EXAMPLE__API_KEY" in str(info.value)


def test_timeout_is_the_shorter_of_policy_and_settings() -> None:
    cfg = settings(
        providers={"sim": ProviderOverride(base_url="http://h/v1")}, request_timeout_s=30
    )
    assert resolve_endpoint("sim", sim_spec(timeout_s=5), cfg).timeout_s == 5
    assert resolve_endpoint("sim", sim_spec(timeout_s=90), cfg).timeout_s == 30


def test_client_has_sdk_retries_off() -> None:
    async def build() -> openai.AsyncOpenAI:
        client = make_client(Endpoint("x", "http://h/v1", "k", 7.0), "httpx")
        await client.close()
        return client

    client = asyncio.run(build())
    assert client.max_retries == 0
    assert client.timeout == 7.0
