"""Celery's prefork pool forks worker children from a parent that imported the task
modules. polars is not fork-safe once its thread pool has run work: a child that then
uses polars deadlocks (seen here: every ingest child hung in ``compute_features``).
This guards the rule that importing the worker code runs no polars computation.

The guards' ``redis.asyncio`` clients are not fork-safe either (their connections belong to
the loop and process that opened them): a forked child gets its own I/O loop and its own
client, and the parent's keeps working."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import workers.worker, workers.tasks  # what `celery -A workers.worker worker` imports
    pid = os.fork()
    if pid == 0:
        signal.alarm(30)  # a deadlocked child dies here instead of hanging the test
        import polars as pl
        from routing.features import compute_features
        frame = compute_features(pl.Series("prompt", ["Prove that 2 + 2 = 4?"] * 2000))
        os._exit(0 if frame.height == 2000 else 3)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_a_forked_worker_child_can_use_polars() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, (
        f"forked child failed/deadlocked ({proc.returncode}): " + (proc.stderr[-2000:])
    )


GUARDS_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from workers.aio import LoopRedis, io_loop
    conn = LoopRedis(sys.argv[1])

    async def client():
        made = conn.client()
        assert await made.incr("fork-safety") > 0
        return made

    parent = io_loop().run(client())  # the parent's loop and client, connected
    pid = os.fork()
    if pid == 0:
        signal.alarm(30)
        child = io_loop().run(client())  # a new loop in the child, and a new client
        own = child is not parent and child.connection_pool is not parent.connection_pool
        os._exit(0 if own else 3)
    _, status = os.waitpid(pid, 0)
    assert io_loop().run(client()) is parent  # the parent's client is untouched
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.integration
def test_a_forked_child_opens_its_own_guard_connections(redis_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", GUARDS_CHILD, redis_url], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
