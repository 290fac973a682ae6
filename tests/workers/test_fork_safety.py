"""Celery's prefork pool forks worker children from a parent that imported the task
modules. polars is not fork-safe once its thread pool has run work: a child that then
uses polars deadlocks (seen here: every ingest child hung in ``compute_features``).
This guards the rule that importing the worker code runs no polars computation.

The guards' ``redis.asyncio`` clients are not fork-safe either (their connections belong to
the loop and process that opened them): a forked child gets its own I/O loop and its own
client, and the parent's keeps working. All of it is the process's resources
(workers/process.py), reset by the one after-fork hook (routing/forks.py): a child finds a
new loop, new clients and empty memos, even when another thread held their locks."""

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


RESOURCES_CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys, threading, time
    import numpy as np
    from workers import connections
    from workers.aio import LoopRedis, io_loop
    from workers.memos import process_memos
    from workers.process import this_process
    from workers.runtime import Runtime
    from workers.settings import S3Settings, Settings
    from workers.storage import Storage
    from workers.jobstate import MemoryJobTracker

    rt = Runtime(settings=Settings(_env_file=None), storage=Storage(S3Settings()),
                 tracker=MemoryJobTracker())
    assert rt.process is this_process() and rt.memos is process_memos()
    url = "redis://127.0.0.1:1/5"  # never connected: clients connect lazily
    conn = LoopRedis(url)

    async def aio_client():
        return conn.client()

    loop, sync = io_loop(), connections.client(url)
    aio = loop.run(aio_client())
    memos = rt.memos
    memos.text.values(["Prove it."])  # token counts only: no polars before the fork
    memos.decisions.store(("p", "s"), rt, np.array([1]), np.array([2]), [("x",)])
    held = threading.Event()
    def hold():  # another thread holds every lock of the resources when the process forks
        with this_process()._lock, this_process().loop_objects._lock:
            with memos.text._lock, memos.decisions._lock:
                held.set()
                time.sleep(2)
    threading.Thread(target=hold, daemon=True).start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)  # a child stuck on an inherited lock dies here
        fresh_loop = io_loop()
        checks = {
            "same resources, reset in place": rt.process is this_process(),
            "new loop": fresh_loop is not loop and fresh_loop.loop is not loop.loop,
            "loop runs": fresh_loop.run(asyncio.sleep(0, "ok")) == "ok",
            "new sync client": connections.client(url) is not sync,
            "one per url": connections.client(url) is connections.client(url),
            "new async client": fresh_loop.run(aio_client()) is not aio,
            "parent's memos emptied": len(memos.text) == 0 and len(memos.decisions) == 0,
            "memos of the child": len(rt.memos.text) == 0 and len(rt.memos.decisions) == 0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        print(failed, file=sys.stderr)
        sys.stderr.flush()
        os._exit(3 if failed else 0)
    _, status = os.waitpid(pid, 0)
    assert io_loop() is loop and connections.client(url) is sync  # the parent's: untouched
    assert loop.run(aio_client()) is aio and len(memos.text) == 1 and len(memos.decisions) == 1
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_a_forked_child_gets_fresh_resources_and_empty_memos() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", RESOURCES_CHILD], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


EXITING_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from workers.aio import io_loop
    io_loop()  # the parent's loop, closed at exit (atexit) by the parent only
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        sys.exit(0)  # runs atexit: the parent's loop is not this child's to close
    _, status = os.waitpid(pid, 0)
    slow = time.monotonic() - start > 3  # closing it would wait 5 s for a loop with no thread
    sys.exit(os.waitstatus_to_exitcode(status) or (4 if slow else 0))
    """
)


def test_a_forked_child_exits_without_waiting_on_its_parents_loop() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", EXITING_CHILD], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
