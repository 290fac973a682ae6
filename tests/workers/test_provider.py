"""Provider calls as production makes them: the realtime serving engine
(``workers.calls.Caller``, what ``dispatch`` runs) over real HTTP — the simulated provider
(in-thread ``SimServer``) with error injection, and small scripted aiohttp servers for exact
status sequences — plus the transport's endpoint and client set-up (``workers.provider``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest
from aiohttp import web

from routing.errors import ConfigError
from routing.policy import ProviderSpec
from tests import services
from tests.workers.serving import (
    MODEL,
    Delays,
    Handler,
    questions,
    record_delays,
    row,
    scripted,
    serve,
    serve_one,
    unit_policy,
    unit_settings,
)
from workers.provider import (
    ChatRequest,
    Endpoint,
    chat_body,
    make_client,
    resolve_endpoint,
    retry_after_s,
)
from workers.served import Outcome
from workers.settings import ProviderOverride, Settings
from workers.sim.server import SimServer

OK_BODY = {
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def settings(**kwargs: Any) -> Settings:
    return Settings(_env_file=None, **kwargs)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 3  # the simulated provider's seed (tests/conftest.py)


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> Delays:
    return record_delays(monkeypatch)


def chat(handler: Handler) -> dict[str, Handler]:
    return {"/v1/chat/completions": handler}


# ---------------------------------------------------------------- successful calls


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_every_row_is_answered_in_order(sim: SimServer, transport: str) -> None:
    policy = unit_policy()
    cfg = unit_settings(sim.base_url, http_transport=transport)
    batch = questions(12)
    served = serve(policy, cfg, batch)

    assert len(served) == len(batch)
    assert all(s.outcome is Outcome.OK and s.done.error is None and s.calls == 1 for s in served)
    assert all(s.done.text and s.done.input_tokens and s.done.output_tokens for s in served)
    assert all(s.cost > 0 and s.model.name == MODEL for s in served)
    # the simulator's answer is a function of the prompt: each answer is its own row's
    singles = [serve_one(policy, cfg, r) for r in batch[::5]]
    assert [s.done.text for s in singles] == [s.done.text for s in served[::5]]
    assert sim.stats()["completions"] == len(batch) + len(singles)


def test_system_prompt_and_max_tokens_reach_the_provider(sim: SimServer) -> None:
    policy, cfg = unit_policy(), unit_settings(sim.base_url)
    plain = serve_one(policy, cfg, row("Describe the sea.", max_output_tokens=512)).done
    poet = row("Describe the sea.", "You are a poet.", max_output_tokens=512)
    with_system = serve_one(policy, cfg, poet).done
    assert with_system.input_tokens > plain.input_tokens
    short = serve_one(policy, cfg, row("Describe the sea.", max_output_tokens=2)).done
    assert (short.ok, short.finish_reason, short.output_tokens) == (True, "length", 2)
    assert plain.finish_reason == "stop"


# ---------------------------------------------------------------- retryable errors


def test_429_honours_retry_after_then_fails_after_max_attempts(
    sim: SimServer, delays: Delays
) -> None:
    sim.configure(rate_limit_rate=1.0, retry_after_s=0.05)
    served = serve_one(unit_policy(), unit_settings(sim.base_url), questions(1)[0])

    assert served.status == "failed" and served.done.text is None
    assert served.calls == served.done.attempts == 3
    error = served.done.error or ""
    assert "retryable" in error and "status 429" in error
    assert sim.stats()["rate_limited"] == 3
    # one backoff between consecutive attempts, each at least the Retry-After hint
    assert [(a, hint) for a, hint, _ in delays] == [(1, 0.05), (2, 0.05)]
    assert all(delay >= 0.05 for _, _, delay in delays)


def test_retry_after_beyond_the_policy_cap_waits_the_cap(sim: SimServer, delays: Delays) -> None:
    sim.configure(rate_limit_rate=1.0, retry_after_s=600)
    policy = unit_policy(max_attempts=2, max_delay_s=0.01)
    served = serve_one(policy, unit_settings(sim.base_url), questions(1)[0])
    assert served.calls == 2
    assert delays == [(1, 600.0, 0.01)]


def test_a_reasoning_model_takes_max_completion_tokens_and_reports_its_thinking(
    sim: SimServer,
) -> None:
    """The simulator rejects max_tokens for a reasoning model as OpenAI does; the policy's
    ``reasoning: true`` sends max_completion_tokens, and the thinking is recorded."""
    one, at_sim = questions(1)[0], unit_settings(sim.base_url)
    served = serve_one(unit_policy(model="o3-mini", reasoning=True), at_sim, one)
    done = served.done
    assert served.outcome is Outcome.OK and done.text
    assert done.reasoning_tokens is not None and 32 <= done.reasoning_tokens < 288
    assert done.output_tokens > done.reasoning_tokens  # counted in the output tokens, billed

    wrong = unit_policy(model="o3-mini", reasoning=False, max_attempts=1)
    refused = serve_one(wrong, at_sim, one)
    assert refused.outcome is Outcome.FAILED and refused.done.status == 400
    assert "max_completion_tokens" in (refused.done.error or "")

    plain = serve_one(unit_policy(), at_sim, one)
    assert plain.outcome is Outcome.OK and plain.done.reasoning_tokens == 0


def test_prompt_cache_hits_are_recorded_and_billed_at_the_cache_price(sim: SimServer) -> None:
    """A long shared system prompt sent twice: the second call reads it from the provider's
    prompt cache (the simulator does as OpenAI: the first message, 1,024+ tokens, in steps
    of 128), and its cost takes the model's cache price for those tokens."""
    from decimal import Decimal

    from routing.cost import call_cost
    from routing.tokens import count_one

    system = " ".join(f"rule {i}: answer briefly and cite the policy section." for i in range(160))
    assert count_one(system) >= 1024
    policy = unit_policy(cache_read="0.25")  # input $1/M in unit_policy
    at_sim, model = unit_settings(sim.base_url), unit_policy(cache_read="0.25").tiers[0].primary
    first = serve_one(policy, at_sim, row("What is 2 + 2?", system)).done
    served = serve_one(policy, at_sim, row("What is 3 + 3?", system))
    second = served.done
    assert first.cached_input_tokens == 0
    cached = second.cached_input_tokens
    assert cached and cached % 128 == 0 and cached <= count_one(system) < cached + 128
    assert second.cost(model) == call_cost(
        model, second.input_tokens, second.output_tokens, cached=cached
    )
    assert served.cost == second.cost(model)  # what the engine settled and the row shows
    assert second.cost(model) < call_cost(model, second.input_tokens, second.output_tokens)
    full = second.input_tokens - cached
    assert (
        second.cost(model)
        == (Decimal(full) + Decimal(cached) * Decimal("0.25") + 2 * Decimal(second.output_tokens))
        / 10**6
    )


def test_a_reasoning_model_body() -> None:
    request = ChatRequest("hi", "be brief", 64, logprobs=True)
    assert chat_body("gpt-4o", request) == {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "max_tokens": 64,
        "logprobs": True,
    }
    reasoning = chat_body("o3", request, reasoning=True)
    assert reasoning["max_completion_tokens"] == 64
    assert "max_tokens" not in reasoning and "logprobs" not in reasoning


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),  # milliseconds win, as in the SDKs
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "Sun, 06 Dec 2026 20:00:30 GMT"}, 30.0),  # an HTTP date
        ({"retry-after": "Sun, 06 Dec 2026 19:59:00 GMT"}, None),  # in the past
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_as_the_sdks_read_it(
    headers: dict[str, str], expected: float | None
) -> None:
    now = 1796587200.0  # Sun, 06 Dec 2026 20:00:00 GMT
    assert retry_after_s(headers, now=now) == expected


def rate_limited_once(retry_after: Callable[[], str]) -> tuple[Any, dict[str, int]]:
    """A chat handler that answers 429 (``Retry-After: retry_after()``) once, then OK."""
    calls = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            error = {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}
            headers = {"Retry-After": retry_after()}
            return web.json_response({"error": error}, status=429, headers=headers)
        return web.json_response(OK_BODY)

    return handler, calls


def test_an_http_date_retry_after_is_honoured(delays: Delays) -> None:
    from email.utils import formatdate

    handler, calls = rate_limited_once(lambda: formatdate(time.time() + 30, usegmt=True))
    with scripted(chat(handler)) as url:
        served = serve_one(unit_policy(), unit_settings(f"{url}/v1"), questions(1)[0])
    assert (served.status, calls["n"]) == ("ok", 2)
    ((attempt, hint, _),) = delays
    assert attempt == 1 and hint is not None and 28 <= hint <= 30


def test_429_then_success(delays: Delays) -> None:
    handler, counted = rate_limited_once(lambda: "0.02")
    with scripted(chat(handler)) as url:
        served = serve_one(unit_policy(), unit_settings(f"{url}/v1"), questions(1)[0])
    done = served.done
    assert (served.status, done.text, served.calls, counted["n"]) == ("ok", "hi", 2, 2)
    assert (done.input_tokens, done.output_tokens, done.finish_reason) == (3, 1, "stop")
    assert [(a, hint) for a, hint, _ in delays] == [(1, 0.02)]


def test_5xx_retried_up_to_max_attempts(sim: SimServer) -> None:
    sim.configure(error_rate=1.0)
    policy = unit_policy(max_attempts=4, max_delay_s=0.01)
    served = serve_one(policy, unit_settings(sim.base_url), questions(1)[0])
    assert served.status == "failed"
    assert served.calls == served.done.attempts == 4
    error = served.done.error or ""
    assert error.startswith("retryable provider error (status 500)")
    assert "simulated" in error  # the provider's own message is kept
    assert sim.stats()["errors"] == 4


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_connection_refused_is_retryable(transport: str) -> None:
    url = f"http://127.0.0.1:{services.free_port()}/v1"
    served = serve_one(unit_policy(), unit_settings(url, http_transport=transport), questions(1)[0])
    assert served.status == "failed" and served.done.retryable
    assert served.calls == 3
    error = served.done.error or ""
    assert error.startswith("retryable")
    # the error says what happened (the aiohttp transport's SDK text is "Request timed out.")
    assert "Connect" in error and ("refused" in error or "failed" in error)


def test_timeout_is_retryable(sim: SimServer) -> None:
    sim.configure(hang_rate=1.0, hang_s=2.0)
    policy = unit_policy(max_attempts=2, max_delay_s=0.0, timeout_s=0.2)
    served = serve_one(policy, unit_settings(sim.base_url), questions(1)[0])
    assert served.status == "failed" and served.done.retryable
    assert served.calls == 2
    error = served.done.error or ""
    assert error.startswith("retryable") and "Timeout" in error


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

    with scripted(chat(handler)) as url:
        served = serve_one(unit_policy(), unit_settings(f"{url}/v1"), questions(1)[0])
    expected = 3 if retryable else 1
    assert (served.status, served.calls, calls) == ("failed", expected, expected)
    assert served.outcome is (Outcome.UNAVAILABLE if retryable else Outcome.FAILED)
    kind = "retryable" if retryable else "permanent"
    error = served.done.error or ""
    assert error.startswith(f"{kind} provider error (status {status})")


# ---------------------------------------------------------------- permanent errors


def test_a_permanent_4xx_is_not_retried(sim: SimServer) -> None:
    sim.configure(auth_error_rate=1.0)  # 401: the request's own fault, not the model's
    served = serve_one(unit_policy(), unit_settings(sim.base_url), questions(1)[0])
    assert served.outcome is Outcome.FAILED and served.calls == 1
    error = served.done.error or ""
    assert error.startswith("permanent provider error (status 401)")
    assert sim.stats()["requests"] == 1


@pytest.mark.parametrize("body", [{"choices": []}, {"usage": {}}, ["not", "an", "object"]])
def test_malformed_response_is_a_permanent_failure(body: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)

    with scripted(chat(handler)) as url:
        served = serve_one(unit_policy(), unit_settings(f"{url}/v1"), questions(1)[0])
    assert (served.outcome, served.calls) == (Outcome.FAILED, 1)
    assert "malformed chat-completions response" in (served.done.error or "")


# ---------------------------------------------------------------- bounded concurrency


@pytest.mark.parametrize("concurrency", [1, 3])
def test_never_more_than_the_tiers_concurrency_in_flight(concurrency: int) -> None:
    """The server holds each request until ``concurrency`` are in flight together (or
    a generous deadline passes), so the bound is reached and any excess would show."""
    in_flight, peak, served_n = 0, 0, 0
    full = asyncio.Event()  # set and awaited on the scripted server's loop

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, peak, served_n
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight >= concurrency:
            full.set()
        try:
            await asyncio.wait_for(full.wait(), 5)
            await asyncio.sleep(0.01)  # room for an excess request to arrive
        finally:
            in_flight -= 1
        served_n += 1
        return web.json_response(OK_BODY)

    policy = unit_policy(concurrency=concurrency)
    with scripted(chat(handler)) as url:
        served = serve(policy, unit_settings(f"{url}/v1"), questions(20))
    assert all(s.outcome is Outcome.OK for s in served) and served_n == 20
    assert peak == concurrency


# ---------------------------------------------------------------- endpoints


def sim_spec(**kwargs: Any) -> ProviderSpec:
    return ProviderSpec(**{"base_url": "simulated", "api_key_env": "SIM_API_KEY", **kwargs})


def test_simulated_provider_without_url_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="BATCH_ROUTER_PROVIDERS__SIM__BASE_URL"):
        resolve_endpoint("sim", sim_spec(), settings())


def test_a_tier_whose_provider_has_no_url_fails_its_rows_naming_the_setting() -> None:
    policy = unit_policy(breaker={"cooldown_s": 0.01})
    served = serve_one(policy, settings(), questions(1)[0])
    assert served.status == "failed" and served.calls == 0
    assert "BATCH_ROUTER_PROVIDERS__SIM__BASE_URL" in (served.done.error or "")


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


def test_anthropic_cache_tokens_are_part_of_the_input_and_kept_apart() -> None:
    from workers.provider import parse_messages

    body = {
        "type": "message",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 100,
            "cache_read_input_tokens": 500,
            "cache_creation_input_tokens": 1000,
            "output_tokens": 7,
        },
    }
    done = parse_messages(body, 1, None)
    assert (done.input_tokens, done.cached_input_tokens, done.cache_write_tokens) == (
        1600,
        500,
        1000,
    )
    assert done.output_tokens == 7 and done.latency_ms == 0.0
