"""Celery's prefork pool forks worker children from a parent that imported the task
modules. polars is not fork-safe once its thread pool has run work: a child that then
uses polars deadlocks (seen here: every ingest child hung in ``compute_features``).
This guards the rule that importing the worker code runs no polars computation."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import workers.app, workers.tasks  # what `celery -A workers.app worker` imports
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
