"""The routing memos of this process: the text memo (routing.memo) and the decision memo
(routing.decision_memo), handed to ``route_batch`` by the ingest stage (workers/stages.py).

Routing keeps no memo of its own: whoever routes owns them. A worker process (and a local
run) shares one :class:`RoutingMemos`, kept with the process's resources
(workers/process.py) and built on first use — nothing at import time. Both memos are
bounded, keyed by policy and scorer version, and fork-safe by themselves: a forked child
(Celery's prefork pool) finds them empty, with new locks (routing/forks.py, the process's
one after-fork hook).

The :class:`~workers.runtime.Runtime` hands them down (``rt.memos``: its process's, so
local runs in one process share them); the stages read ``rt.memos``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from routing.decision_memo import DecisionMemo
from routing.memo import TextMemo
from workers.process import ProcessResources, this_process


@dataclass(frozen=True)
class RoutingMemos:
    """The memos one process routes with."""

    text: TextMemo = field(default_factory=TextMemo)
    decisions: DecisionMemo = field(default_factory=DecisionMemo)


def process_memos(process: ProcessResources | None = None) -> RoutingMemos:
    """The routing memos of ``process`` (this one's by default): built on first use, then
    the same every time."""
    return (process or this_process()).shared(RoutingMemos, RoutingMemos)
