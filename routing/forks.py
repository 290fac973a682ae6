"""The process's one after-fork hook: where fork safety lives.

A forked child (Celery's prefork pool) inherits its parent's memory but only the thread
that forked: a lock another thread held stays held for ever, and event loops, their
threads and connections are the parent's. Whatever holds such state registers here
(:func:`register`, held weakly); in a forked child, before anything else runs, each one's
``reset_after_fork()`` gives it new locks and has it forget what was the parent's. This is
the only ``os.register_at_fork`` of the code (tests/test_architecture.py checks it), in the
bottom layer so that every layer may register: the routing memos (routing/memo.py,
routing/decision_memo.py) register themselves, the workers' per-process resources
(workers/process.py: I/O loop, Redis clients) theirs.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def reset_after_fork(self) -> None:
        """In a forked child: new locks, and nothing of the parent's (no I/O: the parent's
        connections and threads are not this process's to close)."""


_OWNERS: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(owner: ForkAware) -> None:
    """Have ``owner.reset_after_fork()`` called in every forked child while ``owner`` lives."""
    _OWNERS.add(owner)


def _after_fork() -> None:
    for owner in list(_OWNERS):  # another thread may have held a lock, or been halfway through
        owner.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork)
