"""The simulated provider over real HTTP on 127.0.0.1, driven by the official openai SDK."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpe_openai
import openai
import pytest

from workers.sim.config import SimConfig
from workers.sim.server import SimServer
from workers.sim.stats import Stats

ENC = bpe_openai.get_encoding("o200k_base")
ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Which model tier should answer a simple arithmetic question?"},
]


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 7  # the seed of ``sim`` (tests/conftest.py)


@pytest.fixture
def client(sim: SimServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0, timeout=5) as c:
        yield c


def http(sim: SimServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(sim.url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def ask(client: openai.OpenAI, model: str = "sim-small", **kwargs: Any) -> Any:
    kwargs.setdefault("messages", MESSAGES)
    return client.chat.completions.create(model=model, **kwargs)


def test_response_shape(client: openai.OpenAI) -> None:
    resp = ask(client)
    assert resp.id.startswith("chatcmpl-")
    assert resp.object == "chat.completion"
    assert resp.model == "sim-small"
    assert abs(resp.created - time.time()) < 60
    [choice] = resp.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.endswith(".")
    assert choice.finish_reason == "stop"
    assert choice.logprobs is None
    assert 8 <= resp.usage.completion_tokens <= 220


def test_deterministic_per_model_and_messages(client: openai.OpenAI) -> None:
    first = ask(client).choices[0].message.content
    assert ask(client).choices[0].message.content == first
    assert ask(client, model="sim-large").choices[0].message.content != first
    other = [{"role": "user", "content": "Something else entirely."}]
    assert ask(client, messages=other).choices[0].message.content != first


def test_usage_counts_are_o200k(client: openai.OpenAI) -> None:
    resp = ask(client)
    prompt_tokens = sum(len(ENC.encode_ordinary(m["content"])) for m in MESSAGES)
    completion_tokens = len(ENC.encode_ordinary(resp.choices[0].message.content))
    assert resp.usage.prompt_tokens == prompt_tokens
    assert resp.usage.completion_tokens == completion_tokens
    assert resp.usage.total_tokens == prompt_tokens + completion_tokens


def test_completion_tokens_match_content_for_many_prompts(client: openai.OpenAI) -> None:
    for i in range(40):
        messages = [{"role": "user", "content": f"Prompt {i}: " + "context " * (i * 7)}]
        resp = ask(client, messages=messages)
        content = resp.choices[0].message.content
        assert resp.usage.completion_tokens == len(ENC.encode_ordinary(content))
        assert 8 <= resp.usage.completion_tokens <= 220


def test_special_tokens_and_huge_prompts_count_as_text(client: openai.OpenAI) -> None:
    special = "Explain <|endoftext|> and <|endofprompt|> please."
    resp = ask(client, messages=[{"role": "user", "content": special}])
    assert resp.usage.prompt_tokens == len(ENC.encode_ordinary(special))
    huge = "many words here " * 80_000  # 1.28M chars: above bpe_openai's per-call limit
    resp = ask(client, messages=[{"role": "user", "content": huge}])
    assert resp.usage.prompt_tokens == 3 * 80_000 + 1


def test_content_parts_are_counted(client: openai.OpenAI) -> None:
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there, world"}]
    resp = ask(client, messages=[{"role": "user", "content": parts}])
    assert resp.usage.prompt_tokens == len(ENC.encode_ordinary("Hello there, world"))


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_token_limit_truncates(client: openai.OpenAI, param: str) -> None:
    full = ask(client)
    resp = ask(client, **{param: 3})
    content = resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 3 == len(ENC.encode_ordinary(content))
    assert full.choices[0].message.content.startswith(content)
    roomy = ask(client, **{param: full.usage.completion_tokens})
    assert roomy.choices[0].finish_reason == "stop"
    assert roomy.choices[0].message.content == full.choices[0].message.content


def test_logprobs_when_asked(client: openai.OpenAI) -> None:
    resp = ask(client, logprobs=True)
    items = resp.choices[0].logprobs.content
    assert len(items) == resp.usage.completion_tokens
    assert "".join(i.token for i in items) == resp.choices[0].message.content
    assert all(-2.0 <= i.logprob <= -0.01 and i.top_logprobs == [] for i in items)
    assert bytes(items[0].bytes) == items[0].token.encode()
    again = ask(client, logprobs=True).choices[0].logprobs.content
    assert [i.logprob for i in again] == [i.logprob for i in items]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": MESSAGES, "stream": True}, "stream"),
    ],
)
def test_bad_request_is_400(sim: SimServer, body: dict[str, Any], param: str) -> None:
    status, data = http(sim, "POST", "/v1/chat/completions", body)
    assert status == 400
    assert data["error"]["type"] == "invalid_request_error"
    assert data["error"]["param"] == param
    assert data["error"]["message"] and data["error"]["code"]


def test_bad_request_raises_in_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, model="")
    assert info.value.code == "missing_required_parameter"


def test_error_rate_gives_internal_server_error(sim: SimServer, client: openai.OpenAI) -> None:
    sim.configure(error_rate=1.0)
    with pytest.raises(openai.InternalServerError):
        ask(client)
    stats = sim.stats()
    assert (stats["errors"], stats["completions"], stats["requests"]) == (1, 0, 1)


def test_rate_limit_gives_429_with_retry_after(sim: SimServer, client: openai.OpenAI) -> None:
    sim.configure(rate_limit_rate=1.0, retry_after_s=2)
    with pytest.raises(openai.RateLimitError) as info:
        ask(client)
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.code == "rate_limit_exceeded"
    assert sim.stats()["rate_limited"] == 1


def test_partial_error_rate_is_seeded(sim: SimServer, client: openai.OpenAI) -> None:
    def outcomes() -> list[bool]:
        sim.configure(error_rate=0.5, seed=3)
        result = []
        for _ in range(20):
            try:
                ask(client)
                result.append(True)
            except openai.InternalServerError:
                result.append(False)
        return result

    first = outcomes()
    assert 0 < sum(first) < 20
    assert outcomes() == first


def test_hang_times_out_client(sim: SimServer) -> None:
    sim.configure(hang_rate=1.0, hang_s=0.4)
    short = openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0, timeout=0.1)
    with short, pytest.raises(openai.APITimeoutError):
        ask(short)
    deadline = time.monotonic() + 3
    while sim.stats()["abandoned"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = sim.stats()
    assert (stats["hangs"], stats["abandoned"], stats["completions"]) == (1, 1, 0)


def test_latency_is_applied(sim: SimServer, client: openai.OpenAI) -> None:
    sim.configure(latency_ms_mean=60)
    start = time.monotonic()
    ask(client)
    assert time.monotonic() - start >= 0.05


def test_stats_and_reset(sim: SimServer, client: openai.OpenAI) -> None:
    ask(client)
    ask(client)
    ask(client, model="sim-large")
    status, stats = http(sim, "GET", "/_sim/stats")
    assert status == 200
    assert stats["requests"] == stats["completions"] == 3
    assert stats["by_model"] == {"sim-small": 2, "sim-large": 1}
    assert (stats["distinct_prompts"], stats["duplicate_prompts"]) == (2, 1)
    assert (stats["errors"], stats["rate_limited"]) == (0, 0)
    status, _ = http(sim, "POST", "/_sim/reset")
    assert status == 200
    _, stats = http(sim, "GET", "/_sim/stats")
    assert stats["requests"] == stats["completions"] == stats["distinct_prompts"] == 0
    assert stats["by_model"] == {}


def test_runtime_config_over_http(sim: SimServer, client: openai.OpenAI) -> None:
    status, cfg = http(sim, "POST", "/_sim/config", {"error_rate": 1})
    assert status == 200
    assert cfg["error_rate"] == 1.0 and cfg["seed"] == 7
    assert http(sim, "GET", "/_sim/config")[1] == cfg
    with pytest.raises(openai.InternalServerError):
        ask(client)
    http(sim, "POST", "/_sim/config", {"error_rate": 0})
    assert ask(client).choices[0].finish_reason == "stop"


@pytest.mark.parametrize("body", [{"error_rate": 2}, {"nope": 1}, {"seed": "x"}, [1]])
def test_invalid_runtime_config_is_400(sim: SimServer, body: Any) -> None:
    status, data = http(sim, "POST", "/_sim/config", body)
    assert status == 400
    assert data["error"]["type"] == "invalid_request_error"
    assert http(sim, "GET", "/_sim/config")[1] == SimConfig(seed=7).as_dict()


def test_healthz(sim: SimServer) -> None:
    assert http(sim, "GET", "/healthz") == (200, "ok")


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SimConfig(rate_limit_rate=1.5)
    with pytest.raises(ValueError):
        SimConfig(latency_ms_mean=-1)
    assert SimConfig(hang_s=2).hang_s == 2.0


def test_cli_serves_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "workers.sim", "--port", "0", "--error-rate", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        base_url = line.split()[-1]
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=5)
        with client, pytest.raises(openai.InternalServerError):
            ask(client)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_outage_of_one_model(sim: SimServer, client: openai.OpenAI) -> None:
    sim.configure(fail_models=["down-model"])
    try:
        with pytest.raises(openai.InternalServerError, match="simulated outage"):
            client.chat.completions.create(
                model="down-model", messages=[{"role": "user", "content": "hi"}]
            )
        assert ask(client).choices[0].finish_reason == "stop"  # other models still answer
        assert sim.stats()["requests_by_model"]["down-model"] >= 1
    finally:
        sim.configure(fail_models=[])


def test_a_section_of_counters_shows_in_stats() -> None:
    # An endpoint module of its own (the batch APIs, issue 15) counts in a section.
    stats = Stats()
    assert "batches" not in stats.as_dict()
    stats.section("batches")["submitted"] += 2
    assert stats.as_dict()["batches"] == {"submitted": 2}
