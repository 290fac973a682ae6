"""The routing memos of this process: the text memo (routing.memo) and the decision memo
(routing.decision_memo), handed to ``route_batch`` by the ingest stage (workers/stages.py).

Routing keeps no memo of its own: whoever routes owns them. A worker process (and a local
run) shares one :class:`RoutingMemos`, built on first use — nothing at import time. Both
memos are bounded, keyed by policy and scorer version, and fork-safe by themselves: a
forked child (Celery's prefork pool) finds them empty, with new locks
(routing.memo.clear_after_fork, the one place they are reset).

The process's :class:`~workers.runtime.Runtime` holds them (its ``memos`` field, built by
:func:`process_memos`, so local runs in one process share them); the stages read
``rt.memos``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from routing.decision_memo import DecisionMemo
from routing.memo import TextMemo


@dataclass(frozen=True)
class RoutingMemos:
    """The memos one process routes with."""

    text: TextMemo = field(default_factory=TextMemo)
    decisions: DecisionMemo = field(default_factory=DecisionMemo)


_process: list[RoutingMemos] = []  # this process's, first (no lock: one a fork could keep)


def process_memos() -> RoutingMemos:
    """This process's routing memos (built on first use, then the same every time: two
    threads racing to build them both get the first one appended)."""
    if not _process:
        _process.append(RoutingMemos())
    return _process[0]
