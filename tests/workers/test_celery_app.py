"""The Celery application: routing of tasks to queues, the delivery settings that make
redelivery safe (DESIGN.md, "Decisions and why"), and where the app is built — only by
the worker entry point (workers/worker.py), never as a side effect of an import. No broker
is needed to check these; the real-worker run is tests/e2e/test_distributed.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from celery import Celery

from routing.plan import JobContext
from workers import tasks
from workers.app import make_app
from workers.celery_config import celery_config, make_sender
from workers.queues import FINALIZE_QUEUE, INGEST_QUEUE, route_task, tier_queue
from workers.settings import Settings

CTX = {
    "job_id": "j",
    "job_root": "/out/job_id=j",
    "tenant": None,
    "policy_uri": "/p",
    "policy_version": "p-1",
    "total_chunks": 1,
    "classifier_uri": None,
    "rows_total": 0,
}


@pytest.fixture
def celery_app() -> Celery:
    settings = Settings(
        _env_file=None, broker_url="redis://127.0.0.1:1/0", visibility_timeout_s=4321
    )  # type: ignore[call-arg]
    return make_app(settings)


# ---------------------------------------------------------------- routing


@pytest.mark.parametrize("tier", ["fast", "balanced", "expert", "my-tier_2"])
def test_dispatch_goes_to_its_tier_queue(tier: str) -> None:
    batch = {"chunk": 0, "tier": tier, "rows": 3, "inline": "..."}
    assert route_task("dispatch", [CTX, batch], {}, {}) == {"queue": f"tier.{tier}"}
    assert route_task("dispatch", [], {"ctx": CTX, "batch": batch}, {}) == {"queue": f"tier.{tier}"}
    assert tier_queue(tier) == f"tier.{tier}"


def test_ingest_and_finalize_go_to_their_queues() -> None:
    assert route_task("ingest", [CTX, {}], {}, {}) == {"queue": INGEST_QUEUE} == {"queue": "ingest"}
    assert (
        route_task("finalize", [CTX], {}, {}) == {"queue": FINALIZE_QUEUE} == {"queue": "finalize"}
    )
    assert route_task("celery.ping", [], {}, {}) is None


def test_the_router_is_what_celery_uses(celery_app: Celery) -> None:
    router = celery_app.amqp.router
    batch = {"chunk": 2, "tier": "expert", "rows": 1}
    assert router.route({}, "dispatch", args=[CTX, batch], kwargs={})["queue"].name == "tier.expert"
    assert router.route({}, "ingest", args=[CTX, {}], kwargs={})["queue"].name == "ingest"
    assert router.route({}, "finalize", args=[CTX], kwargs={})["queue"].name == "finalize"
    # anything else lands on the default queue
    assert router.route({}, "unknown", args=[], kwargs={})["queue"].name == "ingest"


# ---------------------------------------------------------------- configuration


def test_delivery_settings(celery_app: Celery) -> None:
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.task_ignore_result is True
    assert conf.result_backend is None
    assert conf.broker_transport_options["visibility_timeout"] == 4321
    assert conf.result_backend_transport_options["visibility_timeout"] == 4321
    assert conf.broker_transport_options == conf.result_backend_transport_options
    assert conf.task_default_queue == INGEST_QUEUE
    assert conf.broker_url == "redis://127.0.0.1:1/0"


def test_visibility_timeout_default_outlasts_the_task_retry_backoff() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    app = make_app(settings)
    assert app.conf.broker_transport_options["visibility_timeout"] == settings.visibility_timeout_s
    assert settings.visibility_timeout_s > tasks._RETRY["retry_backoff_max"]


def test_tasks_are_registered_late_acked_and_retry_only_infrastructure_errors(
    celery_app: Celery,
) -> None:
    registered = celery_app.tasks  # workers.tasks: shared tasks, on the app a worker runs
    for name in ("ingest", "dispatch", "finalize"):
        task = registered[name]
        assert task.acks_late is True
        assert set(task.autoretry_for) == set(tasks._INFRA)
        assert task.app is celery_app
    assert {"reconcile", "reconcile_stalled", "nightly_tick"} <= set(registered)
    assert celery_app.conf.include == ["workers.tasks"]  # what `celery worker` imports


def test_the_sender_is_configured_as_the_worker_app(celery_app: Celery) -> None:
    """The CLI, the watcher and beat's tick send with ``make_sender``: the same messages."""
    settings = celery_app.conf.batch_router_settings
    sender = make_sender(settings)
    for key in (
        "task_serializer",
        "accept_content",
        "task_routes",
        "task_default_queue",
        "task_send_sent_event",
        "broker_transport_options",
        "broker_url",
    ):
        assert sender.conf[key] == celery_app.conf[key], key
    assert not sender.conf.include and not sender.conf.beat_schedule


IMPORTS_BUILD_NO_APP = textwrap.dedent(
    """
    import celery._state
    import workers.settings

    def refuse(*args, **kwargs):
        raise AssertionError("Settings() built at import time")

    workers.settings.Settings.__init__ = refuse
    import producer.cli, producer.jobs, producer.watch.watcher
    import workers.app, workers.jobs.submit, workers.nightly, workers.queues, workers.tasks
    apps = list(celery._state._apps)
    assert not apps, apps
    """
)

WORKER_ENTRY_POINT = textwrap.dedent(
    """
    import celery
    import workers.worker as entry
    entry.app.loader.import_default_modules()  # as `celery -A workers.worker worker` does
    assert celery.current_app._get_current_object() is entry.app
    assert {"ingest", "dispatch", "finalize", "reconcile"} <= set(entry.app.tasks)
    assert entry.app.tasks["dispatch"].app is entry.app
    """
)


@pytest.mark.parametrize("code", [IMPORTS_BUILD_NO_APP, WORKER_ENTRY_POINT])
def test_only_the_worker_entry_point_builds_the_app(code: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}  # no BATCH_ROUTER_* settings
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_celery_sink_sends_each_message_to_its_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, list[Any], str]] = []

    def recorder(name: str) -> Any:
        def apply_async(args: list[Any], queue: str, **_: Any) -> None:
            sent.append((name, args, queue))

        return apply_async

    monkeypatch.setattr(tasks.dispatch, "apply_async", recorder("dispatch"))
    monkeypatch.setattr(tasks.finalize, "apply_async", recorder("finalize"))
    ctx = JobContext(**CTX)
    batch = {"chunk": 0, "tier": "balanced", "rows": 1, "inline": "AAAA"}
    tasks.CelerySink().dispatch(ctx, batch)
    tasks.CelerySink().finalize(ctx)
    assert sent == [
        ("dispatch", [CTX, batch], "tier.balanced"),
        ("finalize", [CTX], "finalize"),
    ]


def test_task_time_limits_reach_celery_and_are_checked() -> None:
    """Unset by default; set, they are Celery's task_time_limit / task_soft_time_limit, and a
    limit past the visibility timeout (a running task handed to a second worker) or a soft
    limit not below the hard one is refused with the names of both settings."""
    plain = celery_config(Settings(_env_file=None))  # type: ignore[call-arg]
    assert plain["task_time_limit"] is None and plain["task_soft_time_limit"] is None
    limited = Settings(  # type: ignore[call-arg]
        _env_file=None, task_time_limit_s=900, task_soft_time_limit_s=840
    )
    conf = celery_config(limited)
    assert (conf["task_time_limit"], conf["task_soft_time_limit"]) == (900, 840)
    with pytest.raises(ValueError, match=r"task_soft_time_limit_s .* below task_time_limit_s"):
        Settings(_env_file=None, task_time_limit_s=60, task_soft_time_limit_s=60)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"task_time_limit_s .* below visibility_timeout_s"):
        Settings(_env_file=None, task_time_limit_s=3600)  # type: ignore[call-arg]
