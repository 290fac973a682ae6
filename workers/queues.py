"""Queue and task names, and which queue a message goes to: the contract between whatever
sends messages (the CLI, the drop-folder watcher, beat, the workers themselves) and the
workers that consume them. Plain values, no Celery: importing this module does nothing.

Queues: ``ingest``, one ``tier.<name>`` per policy tier, ``finalize``. Workers are started
per queue (``celery -A workers.worker worker -Q tier.expert``), so each tier scales on its
own. Tasks are sent by name (``workers.tasks`` registers them in the worker).
"""

from __future__ import annotations

from typing import Any

INGEST_QUEUE = "ingest"
FINALIZE_QUEUE = "finalize"
TIER_QUEUE_PREFIX = "tier."

# Task names, as they travel in messages and show in Flower (``dispatch`` shows as
# ``dispatch[<tier>]``: workers/tasks.py).
INGEST_TASK = "ingest"
DISPATCH_TASK = "dispatch"
COLLECT_TASK = "collect"  # a poll of a tier batch in batch mode, on its tier's queue
FINALIZE_TASK = "finalize"
RECONCILE_TASK = "reconcile"
RECONCILE_STALLED_TASK = "reconcile_stalled"
NIGHTLY_TICK_TASK = "nightly_tick"
RETRAIN_TICK_TASK = "retrain_tick"  # beat: nightly champion / challenger rounds

_QUEUE_OF = {INGEST_TASK: INGEST_QUEUE, FINALIZE_TASK: FINALIZE_QUEUE}


def tier_queue(tier: str) -> str:
    return f"{TIER_QUEUE_PREFIX}{tier}"


def route_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict[str, str] | None:
    """``task_routes`` router: dispatch and collect go to their batch's tier queue."""
    if name in (DISPATCH_TASK, COLLECT_TASK):
        batch = kwargs.get("batch") if kwargs else args[1]
        return {"queue": tier_queue(batch["tier"])}
    queue = _QUEUE_OF.get(name)
    return None if queue is None else {"queue": queue}
