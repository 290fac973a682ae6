"""Flower against the test broker: basic auth on the UI and the API, the running workers
with their queues, and the task names the workers' events carry (``ingest``,
``dispatch[<tier>]``, ``finalize``)."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from routing.policy import RESERVED_TIER_NAMES
from tests.ops import stack as ops

pytestmark = [pytest.mark.ops, pytest.mark.integration]


def _get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


AUTH = (ops.FLOWER_USER, ops.FLOWER_PASSWORD)


@pytest.mark.security
def test_flower_refuses_requests_without_the_configured_credentials(
    ops_stack: ops.OpsStack,
) -> None:
    base = ops_stack.flower_url
    for path in ("/", "/workers", "/tasks", "/api/workers", "/api/tasks"):
        assert _get(base + path)[0] == 401, path
        assert _get(base + path, (ops.FLOWER_USER, "wrong"))[0] == 401, path
        assert _get(base + path, ("someone", ops.FLOWER_PASSWORD))[0] == 401, path
    assert _get(base + "/", AUTH)[0] == 200


def test_flower_lists_the_running_workers_and_their_queues(
    ops_job: ops.OpsJob, ops_stack: ops.OpsStack, tier_queues: list[str]
) -> None:
    expected = {ops.INGEST_WORKER: {"ingest", "finalize"}, ops.TIER_WORKER: set(tier_queues)}
    workers: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = _get(f"{ops_stack.flower_url}/api/workers?refresh=1", AUTH)
        assert status == 200, body[:500]
        workers = json.loads(body)
        names = {w.split("@")[0] for w, info in workers.items() if info.get("active_queues")}
        if set(expected) <= names:
            break
        time.sleep(1)
    queues = {
        name.split("@")[0]: {q["name"] for q in info.get("active_queues") or []}
        for name, info in workers.items()
    }
    for worker, wanted in expected.items():
        assert queues.get(worker) == wanted, (worker, queues)

    status, page = _get(f"{ops_stack.flower_url}/workers", AUTH)
    assert status == 200
    for worker in expected:
        assert f"{worker}@".encode() in page, f"{worker} not on Flower's workers page"


def test_flower_shows_task_names_with_the_tier(
    ops_job: ops.OpsJob, ops_stack: ops.OpsStack
) -> None:
    status, body = _get(f"{ops_stack.flower_url}/api/tasks?limit=1000", AUTH)
    assert status == 200
    tasks = json.loads(body).values()
    names = [t.get("name") for t in tasks]
    tiers = {p.rsplit("-", 1)[1].removesuffix(".parquet") for p in ops_job.manifest["parts"]}
    tiers -= RESERVED_TIER_NAMES  # rejected rows and job-wide duplicates: no dispatch
    assert {"ingest", "finalize"} <= set(names)
    assert {n for n in names if n and n.startswith("dispatch")} == {f"dispatch[{t}]" for t in tiers}
    for task in tasks:
        if (task.get("name") or "").startswith("dispatch"):
            assert task.get("state") == "SUCCESS", task
            assert ops_job.job_id in (task.get("args") or ""), task.get("args")
            assert "inline" in task["args"] or "staged" in task["args"]
            assert len(task["args"]) < 200, "dispatch arguments shown in full (rows inline?)"
