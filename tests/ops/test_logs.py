"""Structured logs: every worker line is a JSON object; records of a task carry its
job_id, chunk and tier; prompt text never appears (a sentinel prompt is grepped for)."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ops import stack as ops
from workers import logs

pytestmark = [pytest.mark.ops]


# ---------------------------------------------------------------- on the fleet


@pytest.mark.security
@pytest.mark.integration
def test_worker_logs_are_json_with_job_chunk_tier_and_no_prompt_text(
    ops_job: ops.OpsJob, ops_stack: ops.OpsStack
) -> None:
    records: list[dict[str, Any]] = []
    for name, text in ops_stack.worker_logs().items():
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"{name}: not a JSON line: {line[:300]!r}")
    assert records
    for record in records:
        assert {"ts", "level", "logger", "message", "pid", "worker"} <= record.keys(), record

    chatty = [r for r in records if r["logger"].split(".")[0] in logs.QUIET_LOGGERS]
    assert not [r for r in chatty if r["level"] in ("DEBUG", "INFO")], chatty[:3]

    in_tasks = [r for r in records if r.get("task") in ("ingest", "dispatch", "finalize")]
    assert all(r.get("job_id") for r in in_tasks), in_tasks[:3]  # every task line names its job
    # the stack is shared by the ops tests: this job's lines are the ones to check in detail
    in_tasks = [r for r in in_tasks if r["job_id"] == ops_job.job_id]
    seen = {r["task"] for r in in_tasks}
    assert seen == {"ingest", "dispatch", "finalize"}, seen
    for record in in_tasks:
        assert record.get("task_id"), record
        if record["task"] in ("ingest", "dispatch"):
            assert isinstance(record.get("chunk"), int), record
        if record["task"] == "dispatch":
            assert record.get("tier"), record
    dispatch_done = [r for r in in_tasks if r["task"] == "dispatch" and "succeeded" in r["message"]]
    assert dispatch_done and all(f"dispatch[{r['tier']}]" in r["message"] for r in dispatch_done)

    # the sentinel prompts were served, yet no process of the stack ever wrote them
    prompts = ops_job.table.column("prompt").to_pylist()
    assert sum(1 for p in prompts if p and ops.SENTINEL in p) >= 3
    for name, text in ops_stack.all_logs().items():
        assert ops.SENTINEL not in text, f"prompt text in the {name} log"


# ---------------------------------------------------------------- in process


Captured = tuple[io.StringIO, logging.Logger]


@pytest.fixture
def captured() -> Iterator[Captured]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    logs.configure(logging.INFO, stream=stream, fmt="json")
    yield stream, logging.getLogger("tests.ops.unit")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_bound_fields_appear_on_records_of_the_task_only(captured: Captured) -> None:
    stream, log = captured
    ctx = {"job_id": "J1", "policy_version": "p"}
    batch = {"chunk": 4, "tier": "expert", "rows": 2, "inline": "QUFB"}
    fields = logs.task_fields("dispatch", [ctx, batch], {})
    assert fields == {"job_id": "J1", "chunk": 4, "tier": "expert"}
    with logs.bound(task="dispatch", task_id="t-1", **fields):
        log.info("serving %d prompts", 2)
        worker = threading.Thread(target=lambda: log.info("from the I/O loop thread"))
        worker.start()
        worker.join()
    log.info("after the task")
    inside, from_loop, after = _lines(stream)
    for record in (inside, from_loop):
        assert (record["job_id"], record["chunk"], record["tier"]) == ("J1", 4, "expert")
        assert record["task"] == "dispatch" and record["task_id"] == "t-1"
    assert inside["message"] == "serving 2 prompts" and inside["level"] == "INFO"
    assert not {"job_id", "chunk", "tier"} & after.keys()


def test_ingest_and_finalize_fields() -> None:
    ctx = {"job_id": "J2"}
    assert logs.task_fields("ingest", [ctx, {"chunk": 0, "uri": "s3://b/k"}, None], {}) == {
        "job_id": "J2",
        "chunk": 0,
    }
    assert logs.task_fields("finalize", [ctx], {}) == {"job_id": "J2"}
    assert logs.task_fields("reconcile", ["s3://b/out/job_id=J2"], {}) == {}


def test_structured_extras_and_task_arguments_are_never_written(captured: Captured) -> None:
    stream, log = captured
    secret = "ZQX what is my password"
    log.info(
        "Task %(name)s succeeded",
        {"name": "dispatch", "args": [secret], "kwargs": {}},
        extra={"data": {"args": secret}, "prompt": secret, "rows": 3, "batch": {"p": secret}},
    )
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = _lines(stream)
    assert first["message"] == "Task dispatch succeeded" and first["rows"] == 3
    assert secret not in stream.getvalue().split("\n")[0]
    assert "ValueError: boom" in second["exception"] and second["level"] == "ERROR"


SEES_BODIES = (
    "openai._base_client",
    "anthropic._base_client",
    "httpx",
    "httpx2",
    "httpcore.http11",
    "aiohttp.client",
    "aiohttp.access",
    "urllib3.connectionpool",
    "botocore.endpoint",
    "boto3.resources",
)


@pytest.mark.security
@pytest.mark.parametrize("name", SEES_BODIES)
def test_http_client_loggers_never_print_request_bodies(captured: Captured, name: str) -> None:
    """Held at WARNING whatever their level: ``OPENAI_LOG=debug`` / ``ANTHROPIC_LOG=debug``
    set the SDK's logger to DEBUG when it is imported (here: after the handler)."""
    stream, _ = captured
    logger = logging.getLogger(name)
    saved = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("Request options: {'json_data': {'messages': 'ZQX prompt'}}")
        logger.info("HTTP Request: POST http://sim/v1/chat/completions 'ZQX prompt'")
        assert stream.getvalue() == ""
        logger.warning("Retrying request to /chat/completions")
        assert [r["message"] for r in _lines(stream)] == ["Retrying request to /chat/completions"]
    finally:
        logger.setLevel(saved)


@pytest.mark.security
def test_sdk_debug_switches_do_not_log_prompts(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDKs' own switches, as a user sets them: their setup runs, the prompt stays out."""
    from anthropic._utils import _logs as anthropic_logs
    from openai._utils import _logs as openai_logs

    stream, _ = captured
    monkeypatch.setenv("OPENAI_LOG", "debug")
    monkeypatch.setenv("ANTHROPIC_LOG", "debug")
    saved = {n: logging.getLogger(n).level for n in ("openai", "anthropic", "httpx")}
    try:
        openai_logs.setup_logging()
        anthropic_logs.setup_logging()
        assert logging.getLogger("openai").level == logging.DEBUG  # what the switch does
        logging.getLogger("openai._base_client").debug("Request options: ZQX prompt")
        logging.getLogger("anthropic._base_client").debug("Request options: ZQX prompt")
        assert "ZQX" not in stream.getvalue()
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_text_format_for_a_terminal() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure(logging.INFO, stream=stream, fmt="text")
        logging.getLogger("x").warning("plain %s", "line")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    assert stream.getvalue().rstrip().endswith("plain line")
    assert not stream.getvalue().startswith("{")
