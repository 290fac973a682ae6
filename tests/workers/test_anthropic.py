"""The Anthropic Messages protocol over real HTTP, as production calls it: the realtime
serving engine (``workers.calls.Caller``) with the official ``anthropic`` SDK against the
simulated provider's ``/v1/messages`` (and scripted servers for 529, stop reasons and a
malformed answer), then a whole ``batch-router run`` whose expert tier speaks it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
import pytest
from aiohttp import web

from routing.tokens import count_one
from tests import policies
from tests.cli import clean_env
from tests.workers.serving import Handler, row, scripted, serve_one, unit_policy, unit_settings
from workers.served import Outcome, Served
from workers.sim.server import SimServer

MODEL = "claude-x"


def call(url: str, one: Any, kind: str = "anthropic", transport: str = "aiohttp") -> Served:
    policy = unit_policy(kind=kind, model=MODEL)  # "simulated": the URL comes from settings
    return serve_one(policy, unit_settings(url, http_transport=transport), one)


def messages(handler: Handler) -> dict[str, Handler]:
    return {"/v1/messages": handler}


def message(stop_reason: str | None, text: str = "hi") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_messages_call_answers_with_usage_and_stop_reason(sim: SimServer, transport: str) -> None:
    one = row("What is the capital of France?", "Answer briefly.", max_output_tokens=512)
    served = call(sim.url, one, transport=transport)
    done = served.done
    assert served.outcome is Outcome.OK and served.calls == 1, done.error
    assert done.text and done.finish_reason == "stop"
    assert done.input_tokens == count_one(one.prompt) + count_one("Answer briefly.")
    assert 0 < done.output_tokens <= 512
    assert done.logprobs is None  # Anthropic has none; the cascade uses its other signals
    assert sim.stats()["requests_by_model"] == {MODEL: 1}


def test_same_prompt_costs_the_same_tokens_on_both_protocols(sim: SimServer) -> None:
    one = row("Summarise the plot of Hamlet in two sentences.", "Be terse.", 256)
    via_messages = call(sim.url, one)
    via_chat = call(sim.base_url, one, kind="openai")
    assert via_messages.outcome is Outcome.OK and via_chat.outcome is Outcome.OK
    assert via_messages.done.input_tokens == via_chat.done.input_tokens


def test_max_tokens_truncates_as_length(sim: SimServer) -> None:
    served = call(sim.url, row("Tell me a long story about a lighthouse keeper.", None, 2))
    done = served.done
    assert (
        served.outcome is Outcome.OK and done.output_tokens == 2 and done.finish_reason == "length"
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "stop"),
        ("something_new", "something_new"),  # an unknown reason is kept as it is
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason: str, finish_reason: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(message(stop_reason))

    with scripted(messages(handler)) as url:
        served = call(url, row("hi"))
    assert served.outcome is Outcome.OK and served.done.finish_reason == finish_reason


def test_rate_limits_and_outages_are_retried_then_fail_retryable(sim: SimServer) -> None:
    sim.configure(rate_limit_rate=1.0, retry_after_s=0.0)
    limited = call(sim.url, row("hi", max_output_tokens=16))
    assert limited.status == "failed" and limited.done.retryable and limited.done.status == 429
    assert limited.calls == 3
    sim.configure(rate_limit_rate=0.0, fail_models=[MODEL])
    down = call(sim.url, row("hi", max_output_tokens=16))
    assert down.status == "failed" and down.done.retryable and down.done.status == 500
    assert down.calls == 3


def test_529_overloaded_is_retried() -> None:
    calls = 0
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.json_response(overloaded, status=529)
        return web.json_response(message("end_turn", "recovered"))

    with scripted(messages(handler)) as url:
        served = call(url, row("hi"))
    assert (served.outcome, served.done.text, served.calls, calls) == (
        Outcome.OK,
        "recovered",
        2,
        2,
    )

    async def always(request: web.Request) -> web.Response:
        return web.json_response(overloaded, status=529)

    with scripted(messages(always)) as url:
        served = call(url, row("hi"))
    assert served.status == "failed" and served.calls == 3
    assert served.done.retryable and served.done.status == 529


def test_a_bad_request_fails_at_once(sim: SimServer) -> None:
    sim.configure(auth_error_rate=1.0)  # 401: the request's own fault, never retried
    served = call(sim.url, row("hi", max_output_tokens=16))
    done = served.done
    assert served.outcome is Outcome.FAILED and not done.retryable and done.status == 401
    assert served.calls == 1 and sim.stats()["requests"] == 1

    calls = 0
    invalid = {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens"}}

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response(invalid, status=400)

    with scripted(messages(handler)) as url:
        served = call(url, row("hi"))
    assert (
        served.outcome is Outcome.FAILED
        and served.done.status == 400
        and served.calls == calls == 1
    )
    assert "max_tokens" in (served.done.error or "")


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

    with scripted(messages(handler)) as url:
        served = call(url, row("hi", max_output_tokens=8))
    assert served.outcome is Outcome.FAILED and served.calls == 1 and not served.done.retryable
    assert "malformed messages response" in (served.done.error or "")


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
