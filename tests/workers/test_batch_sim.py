"""The simulated provider's batch APIs over real HTTP, driven with the official SDKs: OpenAI
Files + Batches and Anthropic Message Batches — shapes, lifecycles (processing time,
validation failure, per-request errors, partial expiry, cancellation, the expire control),
results in any order, and the counters (``duplicate_requests`` included)."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.workers.sdk import anthropic_client, openai_client
from workers.sim import openai_batch_lines
from workers.sim.server import SimServer

HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


@pytest.fixture
def oai(sim: SimServer) -> Iterator[openai.OpenAI]:
    with openai_client(sim) as client:
        yield client


@pytest.fixture
def claude(sim: SimServer) -> Iterator[anthropic.Anthropic]:
    with anthropic_client(sim) as client:
        yield client


def http(sim: SimServer, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    """(status, JSON body) of a request without a body."""
    req = urllib.request.Request(sim.url + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def chat_line(custom_id: str, prompt: str, **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}]
    body = {"model": "m-1", "messages": messages, "max_tokens": 64, **body}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def jsonl(lines: list[Any]) -> bytes:
    return b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)


def openai_batch(client: openai.OpenAI, lines: list[Any], **metadata: str) -> Any:
    upload = client.files.create(file=("in.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    return client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata=metadata or None,
    )


def file_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).content.splitlines()]


def section(sim: SimServer, name: str) -> dict[str, int]:
    counters: dict[str, int] = sim.stats().get(name, {})
    return counters


def message_request(custom_id: str, prompt: str, **params: Any) -> Any:
    messages = [{"role": "user", "content": prompt}]
    return {
        "custom_id": custom_id,
        "params": {"model": "claude-x", "max_tokens": 64, "messages": messages, **params},
    }


# ---------------------------------------------------------------- OpenAI


def test_openai_batch_lifecycle_and_shapes(sim: SimServer, oai: openai.OpenAI) -> None:
    sim.configure(batch_processing_s=2.0)  # finalizing from 1.6 s, completed from 2.0 s
    lines = [chat_line(f"r{i}", f"Question {i}?") for i in range(5)]
    lines.append(chat_line("lp", "With logprobs", logprobs=True, max_completion_tokens=3))
    start = time.time()
    batch = openai_batch(oai, lines, batch_router="tag-1")
    assert (batch.status, batch.object, batch.endpoint, batch.completion_window) == (
        "validating",
        "batch",
        "/v1/chat/completions",
        "24h",
    )
    assert batch.id.startswith("batch_") and batch.metadata == {"batch_router": "tag-1"}
    assert batch.expires_at == batch.created_at + 24 * 3600
    running = oai.batches.retrieve(batch.id)
    assert running.status == "in_progress" and running.output_file_id is None
    assert running.request_counts is not None and running.request_counts.total == 6
    time.sleep(max(0.0, start + 1.75 - time.time()))
    assert oai.batches.retrieve(batch.id).status == "finalizing"
    time.sleep(max(0.0, start + 2.3 - time.time()))
    done = oai.batches.retrieve(batch.id)
    assert done.status == "completed" and done.error_file_id is None
    assert done.completed_at and done.finalizing_at and done.in_progress_at
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (6, 0)
    output = file_lines(oai, done.output_file_id)
    assert [x["custom_id"] for x in output] == [x["custom_id"] for x in lines]  # input order
    first = output[0]
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200 and first["response"]["request_id"]
    realtime = oai.chat.completions.create(**lines[0]["body"])
    body = first["response"]["body"]
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == realtime.choices[0].message.content
    assert body["usage"] == realtime.usage.model_dump(  # type: ignore[union-attr]
        include={
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "completion_tokens_details",
            "prompt_tokens_details",
        },
        exclude_none=True,
    )
    last = output[-1]["response"]["body"]["choices"][0]
    assert last["finish_reason"] == "length" and len(last["logprobs"]["content"]) == 3
    meta = oai.files.retrieve(done.output_file_id or "")
    assert meta.purpose == "batch_output" and meta.bytes == len(
        oai.files.content(done.output_file_id or "").content
    )
    assert oai.files.content(batch.input_file_id).content == jsonl(lines)
    counters = section(sim, "openai_batches")
    assert counters["files_uploaded"] == counters["batches_created"] == 1
    assert (counters["requests_submitted"], counters["succeeded"], counters["retrieves"]) == (
        6,
        6,
        3,
    )
    assert counters["results_downloads"] == 2 and counters["duplicate_requests"] == 0
    stats = sim.stats()
    assert stats["completions"] == 7 and stats["by_model"] == {"m-1": 7}  # 6 batch + 1 realtime


def test_openai_malformed_file_fails_validation(sim: SimServer, oai: openai.OpenAI) -> None:
    good = chat_line("a", "fine")
    lines: list[Any] = [
        good,
        b"{not json",
        {**chat_line("x", "y"), "custom_id": None},
        chat_line("a", "duplicate id"),
        {**chat_line("u", "y"), "url": "/v1/embeddings"},
        {**chat_line("m", "y"), "method": "GET"},
        {**chat_line("b", "y"), "body": {"model": "m-1"}},
    ]
    batch = openai_batch(oai, lines)
    assert batch.status == "validating"
    failed = oai.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.failed_at and failed.errors is not None
    found = [(e.line, e.code) for e in failed.errors.data or []]
    assert found == [
        (2, "invalid_json_line"),
        (3, "missing_custom_id"),
        (4, "duplicate_custom_id"),
        (5, "invalid_url"),
        (6, "invalid_method"),
        (7, "missing_required_parameter"),
    ]
    assert failed.output_file_id is None and failed.error_file_id is None
    counters = section(sim, "openai_batches")
    assert counters["batches_failed_validation"] == 1
    assert counters.get("requests_submitted", 0) == 0
    empty = oai.batches.retrieve(openai_batch(oai, [b"   "]).id)
    assert empty.errors is not None and (empty.errors.data or [])[0].code == "empty_file"


def test_openai_request_limit(
    sim: SimServer, oai: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_batch_lines, "MAX_REQUESTS", 3)
    batch = oai.batches.retrieve(openai_batch(oai, [chat_line(f"r{i}", "q") for i in range(4)]).id)
    assert batch.status == "failed" and batch.errors is not None
    assert (batch.errors.data or [])[0].code == "too_many_requests"


def outcomes(sim: SimServer, oai: openai.OpenAI, n: int) -> dict[str, str]:
    sim.configure(seed=11, batch_error_rate=0.3, batch_expire_rate=0.2)
    batch = oai.batches.retrieve(
        openai_batch(oai, [chat_line(f"r{i}", f"q{i}") for i in range(n)]).id
    )
    assert batch.status == "expired" and batch.expired_at and batch.request_counts is not None
    kinds = {x["custom_id"]: "ok" for x in file_lines(oai, batch.output_file_id)}
    for x in file_lines(oai, batch.error_file_id):
        if x["response"] is not None:
            assert x["error"] is None and x["response"]["status_code"] == 500
            assert x["response"]["body"]["error"]["type"] == "server_error"
            kinds[x["custom_id"]] = "500"
        else:
            assert x["error"]["code"] == "batch_expired" and x["error"]["message"]
            kinds[x["custom_id"]] = "expired"
    counts = batch.request_counts
    assert counts.total == n and counts.completed == list(kinds.values()).count("ok")
    assert counts.failed == list(kinds.values()).count("500")
    return kinds


def test_openai_per_request_errors_and_partial_expiry(sim: SimServer, oai: openai.OpenAI) -> None:
    kinds = outcomes(sim, oai, 40)
    assert len(kinds) == 40 and set(kinds.values()) == {"ok", "500", "expired"}
    counters = section(sim, "openai_batches")
    assert counters["succeeded"] + counters["errored"] + counters["expired"] == 40
    assert outcomes(sim, oai, 40) == kinds  # the same seed decides the same way


def test_openai_cancel(sim: SimServer, oai: openai.OpenAI) -> None:
    sim.configure(batch_processing_s=60)
    batch = openai_batch(oai, [chat_line(f"r{i}", "q") for i in range(3)])
    cancelling = oai.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    cancelled = oai.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at
    assert cancelled.output_file_id is None
    errors = file_lines(oai, cancelled.error_file_id)
    assert [(x["custom_id"], x["response"], x["error"]["code"]) for x in errors] == [
        (f"r{i}", None, "batch_cancelled") for i in range(3)
    ]
    with pytest.raises(openai.ConflictError):
        oai.batches.cancel(batch.id)
    counters = section(sim, "openai_batches")
    assert (counters["cancels"], counters["canceled"], counters.get("succeeded", 0)) == (1, 3, 0)
    assert sim.stats()["completions"] == 0


def test_openai_list_newest_first_with_cursor(sim: SimServer, oai: openai.OpenAI) -> None:
    ids = [openai_batch(oai, [chat_line("r", f"q{i}")]).id for i in range(3)]
    page = oai.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    rest = oai.batches.list(limit=2, after=ids[1])
    assert rest.data[0].id == ids[0]  # then older batches of earlier tests, if any
    assert [b.id for b in oai.batches.list(limit=2)][:3] == ids[::-1]  # auto-paging


def test_expire_control_endpoint(sim: SimServer, oai: openai.OpenAI) -> None:
    sim.configure(batch_processing_s=60)
    batch = openai_batch(oai, [chat_line(f"r{i}", "q") for i in range(2)])
    assert http(sim, "POST", f"/_sim/batches/{batch.id}/expire") == (
        200,
        {"id": batch.id, "expired": 2},
    )
    expired = oai.batches.retrieve(batch.id)
    assert expired.status == "expired" and expired.output_file_id is None
    codes = [x["error"]["code"] for x in file_lines(oai, expired.error_file_id)]
    assert codes == ["batch_expired"] * 2
    assert http(sim, "POST", f"/_sim/batches/{batch.id}/expire")[0] == 409
    assert http(sim, "POST", "/_sim/batches/batch_nope/expire")[0] == 404


def test_resubmitted_custom_ids_are_counted_and_reset(sim: SimServer, oai: openai.OpenAI) -> None:
    lines = [chat_line(f"r{i}", "q") for i in range(4)]
    openai_batch(oai, lines)
    openai_batch(oai, [*lines[:3], chat_line("new", "q")])
    assert section(sim, "openai_batches")["duplicate_requests"] == 3
    sim.reset()
    assert "openai_batches" not in sim.stats()
    openai_batch(oai, lines)
    assert section(sim, "openai_batches")["duplicate_requests"] == 0


# ---------------------------------------------------------------- Anthropic


def test_anthropic_batch_lifecycle_any_order(sim: SimServer, claude: anthropic.Anthropic) -> None:
    sim.configure(batch_processing_s=0.5)
    requests = [message_request(f"r-{i}", f"Question {i}?") for i in range(30)]
    requests[0]["params"]["system"] = "Be brief."
    batch = claude.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 30 and batch.archived_at is None
    time.sleep(0.55)
    ended = claude.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at and ended.results_url
    assert ended.request_counts.succeeded == 30 and ended.request_counts.processing == 0
    results = list(claude.messages.batches.results(batch.id))
    ids = [r.custom_id for r in results]
    assert sorted(ids) == sorted(r["custom_id"] for r in requests)
    assert ids != [r["custom_id"] for r in requests]  # shuffled
    first = next(r.result for r in results if r.custom_id == "r-0")
    assert first.type == "succeeded"
    realtime = claude.messages.create(**requests[0]["params"])
    assert first.message.content == realtime.content and first.message.usage == realtime.usage
    counters = section(sim, "anthropic_batches")
    assert (counters["batches_created"], counters["requests_submitted"]) == (1, 30)
    assert counters["succeeded"] == 30 and counters["results_downloads"] == 1
    assert sim.stats()["by_model"] == {"claude-x": 31}


def test_anthropic_refuses_bad_custom_ids(sim: SimServer, claude: anthropic.Anthropic) -> None:
    for bad in ("has space", "x" * 65, ""):
        with pytest.raises(anthropic.BadRequestError, match="custom_id"):
            claude.messages.batches.create(requests=[message_request(bad, "q")])
    with pytest.raises(anthropic.BadRequestError, match="not unique"):
        claude.messages.batches.create(requests=[message_request("a", "q")] * 2)
    assert "batches_created" not in section(sim, "anthropic_batches")


def test_anthropic_errors_expiry_and_invalid_params(
    sim: SimServer, claude: anthropic.Anthropic
) -> None:
    sim.configure(seed=5, batch_error_rate=0.3, batch_expire_rate=0.2)
    requests = [message_request(f"r{i}", f"q{i}") for i in range(40)]
    requests[0]["params"].pop("max_tokens")  # refused when run, not at creation
    batch = claude.messages.batches.create(requests=requests)
    ended = claude.messages.batches.retrieve(batch.id)
    results = {r.custom_id: r.result for r in claude.messages.batches.results(batch.id)}
    types = [r.type for r in results.values()]
    assert set(types) == {"succeeded", "errored", "expired"}
    counts = ended.request_counts
    assert (counts.succeeded, counts.errored, counts.expired) == (
        types.count("succeeded"),
        types.count("errored"),
        types.count("expired"),
    )
    invalid = results["r0"]
    assert invalid.type == "errored" and invalid.error.error.type == "invalid_request_error"
    failed = [r for k, r in results.items() if r.type == "errored" and k != "r0"]
    assert failed and all(r.error.error.type == "api_error" for r in failed)  # type: ignore[union-attr]


def test_anthropic_cancel(sim: SimServer, claude: anthropic.Anthropic) -> None:
    sim.configure(batch_processing_s=60)
    batch = claude.messages.batches.create(requests=[message_request("a", "q")])
    canceling = claude.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at
    ended = claude.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 1
    assert [r.result.type for r in claude.messages.batches.results(batch.id)] == ["canceled"]
    with pytest.raises(anthropic.ConflictError):
        claude.messages.batches.cancel(batch.id)
    assert section(sim, "anthropic_batches")["cancels"] == 1


def test_anthropic_list_headers_and_results_too_early(
    sim: SimServer, claude: anthropic.Anthropic
) -> None:
    sim.configure(batch_processing_s=60)
    ids = [
        claude.messages.batches.create(requests=[message_request("a", f"{i}")]).id for i in range(3)
    ]
    page = claude.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    assert page.first_id == ids[2] and page.last_id == ids[1]
    rest = claude.messages.batches.list(limit=2, after_id=ids[1])
    assert rest.data[0].id == ids[0]  # then older batches of earlier tests, if any
    back = claude.messages.batches.list(limit=2, before_id=ids[0])
    assert [b.id for b in back.data] == ids[::-1][:2]
    path = f"/v1/messages/batches/{ids[0]}"
    assert http(sim, "GET", path, HEADERS)[0] == 200
    assert http(sim, "GET", path + "/results", HEADERS)[0] == 400  # not ended yet
    assert http(sim, "GET", path, {"x-api-key": "k"})[0] == 400  # no anthropic-version
    status, body = http(sim, "GET", path, {"anthropic-version": "2023-06-01"})
    assert status == 401 and body["error"]["type"] == "authentication_error"
    assert http(sim, "GET", "/v1/messages/batches/msgbatch_nope", HEADERS)[0] == 404
    assert http(sim, "POST", f"/_sim/batches/{ids[0]}/expire")[0] == 200
    assert [r.result.type for r in claude.messages.batches.results(ids[0])] == ["expired"]
    assert section(sim, "anthropic_batches")["duplicate_requests"] == 2  # "a" three times
