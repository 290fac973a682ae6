"""The transport of batch mode (``workers.batchapi``) end to end against the simulated
provider over real HTTP, on the process's I/O loop as the engine runs it: encode, submit,
state, results, cancel and find for OpenAI and Anthropic; answers equal to realtime ones,
errored results classified as realtime failures are, provider errors raised classified."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from aiohttp import web

from routing.errors import ProviderPermanentError, ProviderRetryableError
from tests.workers.serving import scripted, unit_policy, unit_settings
from workers.aio import io_loop
from workers.batchapi import AnthropicBatchApi, BatchApi, BatchResult, OpenAIBatchApi, batch_api
from workers.provider import ChatRequest, call_once, client_for
from workers.sim.server import SimServer

T = TypeVar("T")
MODEL = "m-1"
KINDS = ["openai", "anthropic"]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return io_loop().run(coro)


def api_for(kind: str, url: str) -> BatchApi:
    policy = unit_policy(kind=kind, model=MODEL)
    return batch_api(policy, policy.tiers[0].models[0], unit_settings(url))


def sim_api(sim: SimServer, kind: str) -> BatchApi:
    return api_for(kind, sim.base_url if kind == "openai" else sim.url)


def requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest(f"Question {i}: why?", "Be brief." if i % 2 else None, 48) for i in range(n)
    ]


def submit(api: BatchApi, reqs: list[ChatRequest], tag: str = "job-1.c0.t") -> str:
    lines = [api.encode(f"c0-r{i}", MODEL, r) for i, r in enumerate(reqs)]
    return run(api.submit(lines, tag))


def by_id(results: list[BatchResult]) -> dict[str, BatchResult]:
    return {r.custom_id: r for r in results}


def expire(sim: SimServer, batch_id: str) -> None:
    req = urllib.request.Request(f"{sim.url}/_sim/batches/{batch_id}/expire", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def test_factory_picks_the_provider_protocol(sim: SimServer) -> None:
    assert isinstance(sim_api(sim, "openai"), OpenAIBatchApi)
    anthropic_api = sim_api(sim, "anthropic")
    assert isinstance(anthropic_api, AnthropicBatchApi) and anthropic_api.kind == "anthropic"


def test_encode_is_the_request_as_sent(sim: SimServer) -> None:
    req = ChatRequest("Grüße — what is 2+2?", "sys", 32, logprobs=True)
    line = sim_api(sim, "openai").encode("id-1", MODEL, req)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and "Grüße".encode() in line
    assert json.loads(line) == {
        "custom_id": "id-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": req.prompt},
            ],
            "max_tokens": 32,
            "logprobs": True,
        },
    }
    claude = sim_api(sim, "anthropic")
    line = claude.encode("id-1", MODEL, req)
    assert json.loads(line) == {
        "custom_id": "id-1",
        "params": {
            "model": MODEL,
            "max_tokens": 32,
            "messages": [{"role": "user", "content": req.prompt}],
            "system": "sys",
        },
    }
    assert (
        len(line)
        == len(json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":")).encode()) + 1
    )
    with pytest.raises(ValueError, match="custom_id"):
        claude.encode("job/1", MODEL, req)  # Anthropic's custom ids: [a-zA-Z0-9_-]{1,64}


def test_results_from_the_files_an_ended_state_names(sim: SimServer) -> None:
    """The files an ended batch's state names are read without retrieving it again."""
    api = sim_api(sim, "openai")
    batch_id = submit(api, requests(4))
    state = run(api.state(batch_id))
    assert state.ended and state.files and all(f.startswith("file-") for f in state.files)
    before = sim.stats()["openai_batches"]["http_requests"]
    known = by_id(run(api.results(batch_id, state.files)))
    direct = sim.stats()["openai_batches"]["http_requests"] - before
    looked_up = by_id(run(api.results(batch_id)))
    assert known == looked_up and len(known) == 4
    assert sim.stats()["openai_batches"]["http_requests"] - before - direct == direct + 1


@pytest.mark.parametrize("kind", KINDS)
def test_answers_equal_realtime_answers(sim: SimServer, kind: str) -> None:
    api, reqs = sim_api(sim, kind), requests(6)
    batch_id = submit(api, reqs)
    state = run(api.state(batch_id))
    assert state.batch_id == batch_id and state.ended and state.error is None
    assert state.status == ("completed" if kind == "openai" else "ended")
    assert abs(state.created_at - time.time()) < 5
    results = by_id(run(api.results(batch_id)))
    assert len(results) == 6
    policy = unit_policy(kind=kind, model=MODEL)
    url = sim.base_url if kind == "openai" else sim.url
    client = client_for(policy, policy.tiers[0].models[0], unit_settings(url))
    for i, req in enumerate(reqs):
        got = results[f"c0-r{i}"]
        live = run(call_once(client, MODEL, req))
        assert got.kind == "succeeded" and got.completion.ok
        assert (got.completion.attempts, got.completion.latency_ms) == (1, 0.0)
        assert (got.completion.text, got.completion.input_tokens, got.completion.output_tokens) == (
            live.text,
            live.input_tokens,
            live.output_tokens,
        )
        assert got.completion.finish_reason == live.finish_reason


def test_openai_logprobs_come_back(sim: SimServer) -> None:
    api = sim_api(sim, "openai")
    batch_id = submit(api, [ChatRequest("Tell me a story.", None, 5, logprobs=True)])
    (result,) = run(api.results(batch_id))
    assert result.completion.logprobs is not None and len(result.completion.logprobs) == 5
    assert result.completion.finish_reason == "length"


@pytest.mark.parametrize("kind", KINDS)
def test_errors_and_expiry_are_classified(sim: SimServer, kind: str) -> None:
    sim.configure(seed=3, batch_error_rate=0.3, batch_expire_rate=0.2)
    api = sim_api(sim, kind)
    batch_id = submit(api, requests(40))
    state = run(api.state(batch_id))
    assert state.ended and state.status == ("expired" if kind == "openai" else "ended")
    results = run(api.results(batch_id))
    kinds = [r.kind for r in results]
    assert len(results) == 40 and set(kinds) == {"succeeded", "errored", "expired"}
    for r in results:
        done = r.completion
        if r.kind == "errored":
            assert not done.ok and done.retryable and done.status == 500
            assert done.error and done.error.startswith("retryable provider error (status 500)")
        elif r.kind == "expired":
            assert not done.ok and not done.retryable and done.status is None
            assert done.error == f"request expired in batch {batch_id}"
    if kind == "openai":
        assert state.counts["total"] == 40 and state.counts["failed"] == kinds.count("errored")
    else:
        assert state.counts["expired"] == kinds.count("expired")


@pytest.mark.parametrize("kind", KINDS)
def test_cancel(sim: SimServer, kind: str) -> None:
    sim.configure(batch_processing_s=60)
    api = sim_api(sim, kind)
    batch_id = submit(api, requests(3))
    assert not run(api.state(batch_id)).ended
    run(api.cancel(batch_id))
    state = run(api.state(batch_id))
    assert state.ended and state.status == ("cancelled" if kind == "openai" else "ended")
    results = run(api.results(batch_id))
    assert [r.kind for r in results] == ["canceled"] * 3
    assert all(r.completion.error == f"request canceled in batch {batch_id}" for r in results)
    assert all(not r.completion.retryable for r in results)
    run(api.cancel(batch_id))  # already ended: nothing to do, no error


def test_openai_find_by_tag(sim: SimServer) -> None:
    api = sim_api(sim, "openai")
    since = time.time()
    first = submit(api, requests(1), tag="job-9.c1.fast")
    submit(api, requests(1), tag="job-9.c2.fast")
    assert run(api.find("job-9.c1.fast", since)) == first
    assert run(api.find("job-9.c3.fast", since)) is None
    assert run(api.find("job-9.c1.fast", since + 3600)) is None  # older than since: not looked at


def test_anthropic_cannot_find_by_tag(sim: SimServer) -> None:
    api = sim_api(sim, "anthropic")
    submit(api, requests(1), tag="job-9.c1.fast")
    assert run(api.find("job-9.c1.fast", 0.0)) is None


def test_openai_validation_failure_is_the_batch_error(sim: SimServer) -> None:
    api = sim_api(sim, "openai")
    good = api.encode("a", MODEL, requests(1)[0])
    batch_id = run(api.submit([good, good, b"{oops\n"], "bad"))
    state = run(api.state(batch_id))
    assert state.status == "failed" and state.ended and state.error
    assert (
        "line 2: duplicate_custom_id" in state.error and "line 3: invalid_json_line" in state.error
    )
    assert run(api.results(batch_id)) == []


def test_anthropic_invalid_params_are_permanent(sim: SimServer) -> None:
    api = sim_api(sim, "anthropic")
    bad = json.dumps({"custom_id": "x", "params": {"model": MODEL, "messages": []}}).encode()
    batch_id = run(api.submit([bad + b"\n"], "t"))
    (result,) = run(api.results(batch_id))
    assert result.kind == "errored" and not result.completion.retryable
    assert result.completion.status == 400 and "invalid_request_error" in (
        result.completion.error or ""
    )


@pytest.mark.parametrize("kind", KINDS)
def test_provider_errors_raise_classified(sim: SimServer, kind: str) -> None:
    api = sim_api(sim, kind)
    with pytest.raises(ProviderPermanentError) as missing:
        run(api.state("batch_nope"))
    assert missing.value.status == 404
    sim.configure(batch_processing_s=60)
    batch_id = submit(api, requests(1))
    with pytest.raises(ProviderPermanentError):  # not ended: no results yet
        run(api.results(batch_id))


def test_retryable_provider_errors(sim: SimServer) -> None:
    async def overloaded(request: web.Request) -> web.Response:
        body = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
        return web.json_response(body, status=529)

    async def limited(request: web.Request) -> web.Response:
        body = {
            "error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}
        }
        return web.json_response(body, status=429, headers={"retry-after": "7"})

    routes = {"/v1/messages/batches": overloaded, "/v1/files": limited}
    with scripted(routes) as url:
        with pytest.raises(ProviderRetryableError) as busy:
            run(api_for("anthropic", url).submit([b'{"custom_id":"a","params":{}}\n'], "t"))
        assert busy.value.status == 529
        with pytest.raises(ProviderRetryableError) as slow:
            run(api_for("openai", url + "/v1").submit([b"{}\n"], "t"))
        assert (slow.value.status, slow.value.retry_after) == (429, 7.0)
