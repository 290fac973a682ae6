"""Prometheus metrics: scraped from the exporter (``python -m workers.exporter``) while a
job runs on real workers — queue depth per tier queue, prompts routed, cost per tier and
tenant, provider latency and errors, breaker state — and the Grafana dashboard's queries.

Assertions marked WIRING need the ``observe_*`` calls of ``workers/calls.py`` (cost,
tokens, provider latency); the others come from the exporter and the task signals."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from routing.policy import RESERVED_TIER_NAMES
from tests.ops import stack as ops
from tests.ops.stack import by_label, total
from workers import exporter, metrics

pytestmark = [pytest.mark.ops]

DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "batch-router.json"


# ---------------------------------------------------------------- on the fleet


def _tier_parts(job: ops.OpsJob) -> list[str]:
    """Parts written by a dispatch (not rejected rows, not job-wide duplicates)."""
    other = tuple(f"-{name}.parquet" for name in RESERVED_TIER_NAMES)
    return [p for p in job.manifest["parts"] if not p.endswith(other)]


@pytest.mark.integration
def test_scrape_mid_job_shows_the_tier_backlog(ops_job: ops.OpsJob, tier_queues: list[str]) -> None:
    """Mid-job, every chunk ingested and no tier worker yet: the routed batches wait in
    their tier queues, and the rows routed per tier are counted."""
    backlog = ops_job.backlog
    assert backlog.job_state == "running"
    depth = by_label(backlog.samples, "batch_router_queue_depth", "queue")
    assert set(tier_queues) | {"ingest", "finalize"} <= depth.keys()
    assert sum(depth[q] for q in tier_queues) == len(_tier_parts(ops_job)) > 0
    assert depth["ingest"] == 0
    routed = by_label(backlog.samples, "batch_router_prompts_routed_total", "tier")
    rejected = ops_job.manifest["rows_by_status"]["rejected"]
    # rows another chunk already sent (job-wide dedupe) are held, not sent to a tier queue
    held = sum(
        entry["records"]
        for name, entry in ops_job.manifest["audit"]["objects"].items()
        if name.endswith("-dedupe")
    )
    assert sum(routed.values()) == ops_job.manifest["rows_in"] - rejected - held
    assert {f"tier.{t}" for t in routed} <= set(tier_queues)
    assert total(backlog.samples, "batch_router_redis_up") == 1
    # after the job every queue is empty again
    assert all(
        v == 0 for v in by_label(ops_job.final, "batch_router_queue_depth", "queue").values()
    )


@pytest.mark.integration
def test_scrape_mid_job_shows_cost_then_adds_up_to_the_manifest(ops_job: ops.OpsJob) -> None:
    """WIRING: needs observe_cost / observe_call in workers/calls.py."""
    running = [s for s in ops_job.during if s.job_state == "running"]
    assert running, "the job finished before a single scrape"
    cost_mid = [total(s.samples, "batch_router_cost_usd_total") for s in running]
    assert max(cost_mid) > 0, "no cost scraped mid-job (observe_cost wired in workers/calls.py?)"

    final = ops_job.final
    by_tenant = by_label(final, "batch_router_cost_usd_total", "tenant")
    assert set(by_tenant) == {ops.TENANT}
    cost = Decimal(ops_job.manifest["totals"]["cost_usd"])
    assert cost > 0
    assert sum(by_tenant.values()) == pytest.approx(float(cost), rel=1e-9)
    by_tier = by_label(final, "batch_router_cost_usd_total", "tier")
    for tier, entry in ops_job.manifest["by_tier"].items():
        if Decimal(entry["cost_usd"]) > 0:
            assert by_tier.get(tier) == pytest.approx(float(entry["cost_usd"]), rel=1e-9), tier
    assert total(final, "batch_router_tokens_total", kind="output") > 0

    # one latency observation per provider attempt; the simulated provider made no errors
    calls = total(final, "batch_router_provider_latency_seconds_count")
    assert calls >= len({p for p in ops_job.table.column("prompt").to_pylist() if p})
    assert total(final, "batch_router_provider_latency_seconds_count", outcome="ok") == calls
    assert total(final, "batch_router_provider_errors_total") == 0


@pytest.mark.integration
def test_task_durations_and_breaker_states(ops_job: ops.OpsJob) -> None:
    """From the task signals and from Redis: no wiring needed."""
    final = ops_job.final
    dispatched = by_label(final, "batch_router_task_duration_seconds_count", "tier")
    assert sum(v for t, v in dispatched.items() if t) == len(_tier_parts(ops_job))
    chunks = {p.split("-")[1] for p in ops_job.manifest["parts"]}
    assert total(final, "batch_router_task_duration_seconds_count", task="ingest") == len(chunks)
    assert total(final, "batch_router_task_duration_seconds_count", task="finalize") == 1
    assert total(final, "batch_router_task_duration_seconds_count", outcome="success") == (
        total(final, "batch_router_task_duration_seconds_count")
    )
    breakers = by_label(final, "batch_router_breaker_state", "target")
    assert breakers and set(breakers.values()) == {0.0}  # every target called, all closed


# ---------------------------------------------------------------- without services


def test_error_classes() -> None:
    cases = {
        (429, True, "retryable provider error (status 429): slow down"): "rate_limited",
        (503, True, "retryable provider error (status 503)"): "server_error",
        (401, False, "permanent provider error (status 401)"): "auth",
        (400, False, "permanent provider error (status 400): content_filter"): "content_filter",
        (400, False, "permanent provider error (status 400): bad"): "bad_request",
        (None, True, "APITimeoutError: Request timed out."): "timeout",
        (None, True, "APIConnectionError: Connection error."): "connection",
        (None, False, "malformed chat-completions response"): "invalid_response",
    }
    for (status, retryable, error), expected in cases.items():
        assert metrics.error_class(status, retryable, error) == expected, error


def test_observe_functions_count_in_process() -> None:
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("batch_router_cost_usd_total", tier="t-unit", tenant="x")
    metrics.observe_cost("t-unit", "x", Decimal("0.000123"), input_tokens=7, output_tokens=3)
    metrics.observe_call("sim/m", "t-unit", 0.2, "retryable", "server_error")
    metrics.observe_call("sim/m", "t-unit", 0.1, "ok")
    metrics.set_budget_remaining("tenant:x:day:2026-11-28", Decimal("4.5"))
    assert value("batch_router_cost_usd_total", tier="t-unit", tenant="x") - before == (
        pytest.approx(0.000123)
    )
    assert value("batch_router_tokens_total", tier="t-unit", tenant="x", kind="input") >= 7
    assert value(
        "batch_router_provider_errors_total",
        target="sim/m",
        tier="t-unit",
        error_class="server_error",
    )
    assert value("batch_router_budget_remaining_usd", scope="tenant:x:day") == 4.5
    with pytest.raises(ValueError):
        metrics.observe_call("sim/m", "t-unit", 0.1, "weird")


def test_observe_budgets_reads_capped_scopes_at_most_every_refresh() -> None:
    from routing.resilience import Scope
    from workers.guards.ledger import MemoryLedger

    ledger = MemoryLedger()
    capped = Scope("job:unit-b", Decimal("10"), None, 3600)
    uncapped = Scope("job:unit-b:tier:fast", None, None, 3600)
    assert asyncio.run(ledger.reserve("k1", [capped, uncapped], Decimal("1.5"), 10))
    reads: list[str] = []

    class Spy:
        def usage(self, scope_id: str) -> Any:
            reads.append(scope_id)
            return ledger.usage(scope_id)

    metrics.observe_budgets(Spy(), [capped, uncapped], now=1000.0)
    metrics.observe_budgets(Spy(), [capped, uncapped], now=1001.0)  # throttled
    assert reads == ["job:unit-b"]
    from prometheus_client import REGISTRY

    left = REGISTRY.get_sample_value("batch_router_budget_remaining_usd", {"scope": "job:unit-b"})
    assert left == 8.5


def test_exporter_binds_loopback_by_default() -> None:
    import inspect

    source = inspect.getsource(exporter.main)
    assert '"--host", default="127.0.0.1"' in source


def test_queue_keys_cover_kombu_priority_lists() -> None:
    assert exporter.queue_keys("tier.fast") == [
        "tier.fast",
        "tier.fast\x06\x163",
        "tier.fast\x06\x166",
        "tier.fast\x06\x169",
    ]


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _exprs(dashboard)
    assert exprs, "no queries in the dashboard"
    exported = {
        "batch_router_queue_depth",
        "batch_router_queue_unacked",
        "batch_router_breaker_state",
        "batch_router_redis_up",
    }
    for metric in (
        metrics.PROMPTS_ROUTED,
        metrics.COST,
        metrics.TOKENS,
        metrics.PROVIDER_LATENCY,
        metrics.PROVIDER_ERRORS,
        metrics.PROVIDER_SKIPPED,
        metrics.BUDGET_REMAINING,
        metrics.TASK_DURATION,
    ):
        for family in metric.collect():
            exported |= {family.name, *(s.name for s in family.samples)}
            suffixes = ("_total", "_bucket", "_count", "_sum")
            exported |= {family.name + s for s in suffixes}
    used = {m for e in exprs for m in re.findall(r"\bbatch_router_[a-z_]+", e)}
    assert used <= exported, f"dashboard queries unknown metrics: {used - exported}"
    # every metric of the issue has a panel
    for name in (
        "batch_router_queue_depth",
        "batch_router_prompts_routed_total",
        "batch_router_cost_usd_total",
        "batch_router_provider_latency_seconds_bucket",
        "batch_router_provider_errors_total",
        "batch_router_breaker_state",
        "batch_router_budget_remaining_usd",
    ):
        assert name in used, f"no panel queries {name}"
    uids = [p.get("datasource", {}).get("uid") for p in dashboard["panels"] if "targets" in p]
    assert set(uids) == {"${datasource}"}, uids
