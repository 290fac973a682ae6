"""Prometheus metrics: what the workers count (the exporter that serves them with what only
Redis knows is ``workers/exporter.py``).

Celery workers are prefork: a pool of processes, on several machines. Each process counts
into its own files under ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess
mode); one exporter process, ``python -m workers.exporter``, adds them up on every scrape
and reads what only Redis knows — queue depths and breaker states — at that moment::

    PROMETHEUS_MULTIPROC_DIR=/var/lib/batch-router/metrics celery -A workers.worker worker …
    PROMETHEUS_MULTIPROC_DIR=/var/lib/batch-router/metrics python -m workers.exporter --port 9808

Every worker process of a fleet and the exporter must see the same directory (one shared
volume in docker-compose.yml). Without ``PROMETHEUS_MULTIPROC_DIR`` the counters stay in
the process (the local executor, tests) and the exporter serves the Redis metrics only.
Empty the directory when the whole fleet is restarted (counters then restart at zero,
which Prometheus' ``rate`` / ``increase`` handle); files of exited processes are kept, so
totals do not drop when one worker restarts.

Metrics (all ``batch_router_*``; labels in braces):

=====================================================  =====================================
``queue_depth{queue}`` (gauge, exporter)                messages waiting in ``ingest``,
                                                        ``finalize``, each ``tier.<name>``
``queue_unacked`` (gauge, exporter)                     messages delivered, not yet acked
``breaker_state{target}`` (gauge, exporter)             0 closed, 1 half-open, 2 open
``redis_up`` (gauge, exporter)                          1 when the last scrape read Redis
``prompts_routed_total{tier}``                          rows sent to a tier queue by ingest
``cost_usd_total{tier,tenant}``                         provider cost settled (exact → float)
``tokens_total{tier,tenant,kind}``                      input / output tokens of those calls
``provider_latency_seconds{target,tier,outcome}``       one provider attempt (histogram)
``provider_errors_total{target,tier,error_class}``      failed attempts by :func:`error_class`
``provider_skipped_total{target,tier,reason}``          no call: ``breaker_open``, ``rate_limit``
``budget_remaining_usd{scope}``                         cap − settled − reserved, USD-capped
                                                        scopes (tenant scopes without the date)
``task_duration_seconds{task,tier,outcome}``            Celery task run time (histogram)
=====================================================  =====================================
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterable
from decimal import Decimal

from routing.resilience import Scope
from workers.guards.ledger import Ledger

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_PORT = 9808
NAMESPACE = "batch_router"

log = logging.getLogger(__name__)


def _multiproc_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def _prepare_multiprocess() -> None:
    """Create the directory, and name each process's files ``<host>-<pid>``: processes of
    several containers share the directory and may have the same pid."""
    path = _multiproc_dir()
    if path is None:
        return
    os.makedirs(path, exist_ok=True)
    from prometheus_client import values

    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"
    values.ValueClass = values.MultiProcessValue(lambda: f"{host}-{os.getpid()}")  # type: ignore[no-untyped-call]  # untyped upstream


_prepare_multiprocess()

from prometheus_client import (  # noqa: E402  (after the value class is chosen)
    Counter,
    Gauge,
    Histogram,
)

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

PROMPTS_ROUTED = Counter(
    "prompts_routed", "Rows sent to a tier queue by ingest", ["tier"], namespace=NAMESPACE
)
COST = Counter("cost_usd", "Provider cost settled, USD", ["tier", "tenant"], namespace=NAMESPACE)
TOKENS = Counter(
    "tokens", "Tokens of settled provider calls", ["tier", "tenant", "kind"], namespace=NAMESPACE
)
PROVIDER_LATENCY = Histogram(
    "provider_latency_seconds",
    "One provider call attempt, seconds",
    ["target", "tier", "outcome"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "provider_errors",
    "Failed provider call attempts by error class",
    ["target", "tier", "error_class"],
    namespace=NAMESPACE,
)
PROVIDER_SKIPPED = Counter(
    "provider_skipped",
    "Provider calls not made (breaker open, rate-limit wait too long)",
    ["target", "tier", "reason"],
    namespace=NAMESPACE,
)
BUDGET_REMAINING = Gauge(
    "budget_remaining_usd",
    "USD left under a budget cap (cap - settled - reserved)",
    ["scope"],
    namespace=NAMESPACE,
    multiprocess_mode="mostrecent",
)
TASK_DURATION = Histogram(
    "task_duration_seconds",
    "Celery task run time, seconds",
    ["task", "tier", "outcome"],
    namespace=NAMESPACE,
    buckets=TASK_BUCKETS,
)

OUTCOMES = ("ok", "retryable", "permanent")


# ---------------------------------------------------------------- what workers call


def observe_routed(tier: str, n: int) -> None:
    """``n`` rows of a routed batch were sent to ``tier``'s queue."""
    if n > 0:
        PROMPTS_ROUTED.labels(tier).inc(n)


def observe_cost(
    tier: str, tenant: str, usd: Decimal, input_tokens: int = 0, output_tokens: int = 0
) -> None:
    """A provider call's settled cost (and tokens), charged to ``tier`` and ``tenant``."""
    if usd > 0:
        COST.labels(tier, tenant).inc(float(usd))
    if input_tokens > 0:
        TOKENS.labels(tier, tenant, "input").inc(input_tokens)
    if output_tokens > 0:
        TOKENS.labels(tier, tenant, "output").inc(output_tokens)


def observe_call(
    target: str, tier: str, seconds: float, outcome: str, error_class: str | None = None
) -> None:
    """One provider attempt to ``target`` (``provider/model``) for ``tier``: its latency,
    and when it failed (``outcome`` ``retryable`` or ``permanent``) its error class."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    PROVIDER_LATENCY.labels(target, tier, outcome).observe(max(seconds, 0.0))
    if outcome != "ok":
        PROVIDER_ERRORS.labels(target, tier, error_class or outcome).inc()


def observe_skipped(target: str, tier: str, reason: str) -> None:
    """A call to ``target`` not made: ``breaker_open`` or ``rate_limit``."""
    PROVIDER_SKIPPED.labels(target, tier, reason).inc()


def error_class(status: int | None, retryable: bool, error: str | None) -> str:
    """The class of a failed attempt (``workers.provider.Completion``'s ``status``,
    ``retryable``, ``error``): rate_limited, server_error, timeout, connection, auth,
    not_found, content_filter, bad_request, invalid_response or other."""
    text = (error or "").lower()
    if status == 429:
        return "rate_limited"
    if status == 408:
        return "timeout"
    if status is not None and status >= 500:
        return "server_error"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if "content_filter" in text or "content filter" in text:
        return "content_filter"
    if status is not None and 400 <= status < 500:
        return "bad_request"
    if retryable and ("timeout" in text or "timed out" in text):
        return "timeout"
    if retryable:
        return "connection"
    if "malformed" in text:
        return "invalid_response"
    return "other"


_TENANT_PERIOD = re.compile(r"^(tenant:.+:(?:day|month)):[0-9-]+$")


def scope_label(scope_id: str) -> str:
    """``tenant:acme:day:2026-11-28`` → ``tenant:acme:day`` (one series per tenant
    period, not per date); job scopes keep their job id."""
    match = _TENANT_PERIOD.match(scope_id)
    return match.group(1) if match else scope_id


def set_budget_remaining(scope: str, usd: Decimal | float) -> None:
    """USD left under ``scope``'s cap (a scope id of ``routing.resilience.budget_scopes``)."""
    BUDGET_REMAINING.labels(scope_label(scope)).set(float(usd))


BUDGET_REFRESH_S = 5.0
_budget_seen: dict[str, float] = {}
_budget_lock = threading.Lock()


def observe_budgets(ledger: Ledger, scopes: Iterable[Scope], now: float | None = None) -> None:
    """:func:`set_budget_remaining` for each USD-capped ``routing.resilience.Scope``, reading
    its usage from ``ledger`` at most every ``BUDGET_REFRESH_S`` per scope and process
    (one ``usage`` call each; uncapped scopes cost nothing). Never raises."""
    now = time.monotonic() if now is None else now
    for scope in scopes:
        cap = scope.usd
        if cap is None:
            continue
        with _budget_lock:
            if now - _budget_seen.get(scope.id, float("-inf")) < BUDGET_REFRESH_S:
                continue
            _budget_seen[scope.id] = now
        try:
            usage = ledger.usage(scope.id)
            set_budget_remaining(scope.id, cap - usage.settled_usd - usage.reserved_usd)
        except Exception:  # metrics never fail a provider call
            log.debug("budget metric for %s not updated", scope.id, exc_info=True)


def observe_task(task: str, tier: str | None, seconds: float, outcome: str) -> None:
    """A Celery task finished (``success``, ``retry``, ``failure``): from task signals."""
    TASK_DURATION.labels(task, tier or "", outcome).observe(max(seconds, 0.0))
