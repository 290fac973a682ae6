"""The Anthropic Messages protocol over real HTTP: the official ``anthropic`` SDK against the
simulated provider's ``/v1/messages`` (and a scripted server for a malformed answer), then
a whole ``batch-router run`` whose expert tier speaks it."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path

import aiohttp
import polars as pl
import pytest
from aiohttp import web

from routing.policy import RetrySpec
from tests import policies
from tests.cli import clean_env
from workers.provider import (
    ChatRequest,
    Completion,
    Endpoint,
    call_with_retry,
    make_client,
)
from workers.simprovider import SimServer, count_tokens

FAST_RETRY = RetrySpec(max_attempts=3, base_delay_s=0.0, max_delay_s=1.0)


def call(
    url: str,
    request: ChatRequest,
    kind: str = "anthropic",
    transport: str = "aiohttp",
    retry: RetrySpec = FAST_RETRY,
) -> Completion:
    async def run() -> Completion:
        endpoint = Endpoint("claude", url, "sk-ant-test", 10.0, kind)
        async with make_client(endpoint, transport) as client:
            return await call_with_retry(client, "claude-x", request, retry, random.Random(0))

    return asyncio.run(run())


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_messages_call_answers_with_usage_and_stop_reason(sim: SimServer, transport: str) -> None:
    request = ChatRequest("What is the capital of France?", "Answer briefly.", 512)
    done = call(sim.url, request, transport=transport)
    assert done.ok, done.error
    assert done.text and done.finish_reason == "stop"
    assert done.input_tokens == count_tokens(request.prompt) + count_tokens("Answer briefly.")
    assert 0 < done.output_tokens <= 512
    assert done.logprobs is None  # Anthropic has none; the cascade uses its other signals
    assert sim.stats()["requests_by_model"] == {"claude-x": 1}


def test_same_prompt_costs_the_same_tokens_on_both_protocols(sim: SimServer) -> None:
    request = ChatRequest("Summarise the plot of Hamlet in two sentences.", "Be terse.", 256)
    via_messages = call(sim.url, request)
    via_chat = call(sim.base_url, request, kind="openai")
    assert via_messages.ok and via_chat.ok
    assert via_messages.input_tokens == via_chat.input_tokens


def test_max_tokens_truncates_as_length(sim: SimServer) -> None:
    done = call(sim.url, ChatRequest("Tell me a long story about a lighthouse keeper.", None, 2))
    assert done.ok and done.output_tokens == 2 and done.finish_reason == "length"


def test_rate_limits_and_outages_are_retried_then_fail_retryable(sim: SimServer) -> None:
    sim.configure(rate_limit_rate=1.0, retry_after_s=0.0)
    limited = call(sim.url, ChatRequest("hi", None, 16))
    assert not limited.ok and limited.retryable and limited.status == 429
    assert limited.attempts == FAST_RETRY.max_attempts
    sim.configure(rate_limit_rate=0.0, fail_models=["claude-x"])
    down = call(sim.url, ChatRequest("hi", None, 16))
    assert not down.ok and down.retryable and down.status == 500
    assert down.attempts == FAST_RETRY.max_attempts


def test_a_bad_request_fails_at_once(sim: SimServer) -> None:
    done = call(sim.url, ChatRequest("hi", None, 0))  # max_tokens must be positive
    assert not done.ok and not done.retryable and done.status == 400 and done.attempts == 1
    assert "max_tokens" in (done.error or "")


def test_the_simulator_checks_anthropic_headers_and_error_shape(sim: SimServer) -> None:
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}

    async def post(headers: dict[str, str], payload: object) -> tuple[int, dict[str, object]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{sim.url}/v1/messages", json=payload, headers=headers) as resp,
        ):
            return resp.status, await resp.json()

    both = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    assert asyncio.run(post({"anthropic-version": "2023-06-01"}, body))[0] == 401
    status, answer = asyncio.run(post({"x-api-key": "k"}, body))
    assert status == 400 and answer["type"] == "error"
    status, answer = asyncio.run(post(both, {**body, "messages": [{"role": "system"}]}))
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    status, answer = asyncio.run(post(both, {**body, "system": [{"type": "text", "text": "x"}]}))
    assert status == 200 and answer["type"] == "message" and answer["content"]


def test_a_malformed_answer_is_a_permanent_failure() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"type": "message", "usage": {"input_tokens": 1}})

    async def run() -> Completion:
        app = web.Application()
        app.router.add_post("/v1/messages", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            endpoint = Endpoint("claude", url, "k", 5.0, "anthropic")
            async with make_client(endpoint, "aiohttp") as client:
                return await call_with_retry(
                    client, "m", ChatRequest("hi", None, 8), FAST_RETRY, random.Random(0)
                )
        finally:
            await runner.cleanup()

    done = asyncio.run(run())
    assert (
        not done.ok and not done.retryable and "malformed messages response" in (done.error or "")
    )


@pytest.mark.e2e
def test_a_job_whose_expert_tier_speaks_anthropic(tmp_path: Path) -> None:
    """``batch-router run`` with the expert tier on an ``anthropic`` provider (the built-in
    simulator answers both protocols): every row ok, the expert rows served through it."""
    default = policies.default_data()
    claude = {"kind": "anthropic", "base_url": "simulated", "api_key_env": "CLAUDE_KEY"}
    expert = next(t for t in default["tiers"] if t["name"] == "expert")
    (gpt41,) = expert["models"]  # gpt-4.1 on sim, served by claude-sim instead
    model = {**gpt41, "name": "claude-sim", "provider": "claude"}
    policies.write(
        tmp_path / "policy.yaml",
        providers={**default["providers"], "claude": claude},
        tiers={"expert": {"models": [model]}},
    )
    args = ["run", "--sample", "300", "--output", "out", "--policy", "policy.yaml", "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "producer", *args],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    root = tmp_path / "out" / f"job_id={manifest['job_id']}"
    rows = pl.read_parquet(root / "results" / "*.parquet")
    assert rows.height == 300
    expert = rows.filter(pl.col("tier") == "expert")
    assert expert.height > 0
    assert expert["provider"].unique().to_list() == ["claude"]
    assert expert["model"].unique().to_list() == ["claude-sim"]
    assert expert["status"].unique().to_list() == ["ok"]
    answered = expert.filter(pl.col("dedupe_of").is_null())  # a duplicate costs 0
    assert (answered["output_tokens"] > 0).all() and (answered["cost_usd"] > 0).all()
    assert set(rows["status"].unique()) <= {"ok", "rejected"}
