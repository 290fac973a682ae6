"""The local (embedded) executor: the same stages in-process, no broker.

Chunks run on a small thread pool (provider calls are async inside each dispatch); a
routed batch is dispatched in the thread that routed it. When the policy's providers are
the simulated one and no URL is configured, a simulated provider is started in-process
for the duration of the job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from routing.plan import JobContext, JobPlan
from routing.policy import Policy
from workers import stages
from workers.finalize import finalize
from workers.settings import ProviderOverride, Settings
from workers.simprovider import SimConfig, SimServer


class _InlineSink:
    def __init__(self, rt: stages.Runtime) -> None:
        self._rt = rt
        self.finalize_due = False

    def dispatch(self, ctx: JobContext, batch: dict[str, Any]) -> None:
        stages.dispatch(self._rt, ctx, batch, self)

    def finalize(self, ctx: JobContext) -> None:
        self.finalize_due = True


@contextlib.contextmanager
def simulated_providers(policy: Policy, settings: Settings) -> Iterator[Settings]:
    """Start one in-process simulated provider for every policy provider that is
    ``simulated`` and has no URL configured; yield settings pointing at it."""
    missing = [
        name
        for name, spec in policy.providers.items()
        if spec.simulated
        and not (settings.providers.get(name) and settings.providers[name].base_url)
    ]
    if not missing:
        yield settings
        return
    with SimServer(SimConfig()) as sim:
        providers = dict(settings.providers)
        for name in missing:
            # Each SDK's base-URL convention: OpenAI's ends in /v1, Anthropic's is the root.
            url = sim.url if policy.providers[name].kind == "anthropic" else sim.base_url
            providers[name] = ProviderOverride(base_url=url)
        yield settings.model_copy(update={"providers": providers})


def run_job(
    rt: stages.Runtime,
    plan: JobPlan,
    threads: int = 2,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run every chunk of ``plan``, then finalize; return the manifest."""
    ctx = plan.context
    rt.tracker.register(
        ctx.job_id,
        {"total_chunks": ctx.total_chunks, "rows_total": plan.rows_total, "job_root": ctx.job_root},
    )
    sink = _InlineSink(rt)

    def one(chunk_index: int) -> int:
        chunk = plan.chunks[chunk_index]
        stages.ingest(rt, ctx, chunk, sink)
        return chunk.take

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chunk") as pool:
        for rows in pool.map(one, range(len(plan.chunks))):
            if on_chunk:
                on_chunk(rows)
    return finalize(rt, ctx)
