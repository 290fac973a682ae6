"""Job entry points behind the CLI: run locally or distributed, wait with a progress bar,
read the manifest. Planning and submission themselves live in ``workers.jobs`` (the drop
folder and beat's nightly tick use them too).

The execution stack (Celery tasks, provider SDKs, tokenizer tables) takes seconds to
import, so it is imported only once the job is planned: a rejected input fails fast.
"""

from __future__ import annotations

from typing import Any

from rich.progress import Progress

from routing.errors import JobFailedError
from routing.policy import Policy
from workers.jobs.plan import build_plan
from workers.jobs.submit import submit_job, wait
from workers.jobstate import JobStatus, MemoryJobTracker
from workers.settings import Settings
from workers.storage import Storage


def manifest_of(settings: Settings, job_root: str) -> dict[str, Any]:
    from producer.report.manifest import load_manifest

    return load_manifest(Storage(settings.s3), job_root)


def wait_with_progress(settings: Settings, job_id: str, progress: Progress) -> JobStatus:
    with progress:
        task = progress.add_task(f"job {job_id}", total=None)

        def show(status: JobStatus) -> None:
            progress.update(task, total=status.rows_total, completed=status.rows_done)

        return wait(settings, job_id, show)


def run(
    settings: Settings,
    policy: Policy,
    input_uri: str,
    output: str,
    job_id: str | None,
    tenant: str | None,
    threads: int,
    progress: Progress,
) -> dict[str, Any]:
    """A whole job, waited for: distributed when a broker is configured, else local."""
    if settings.distributed:
        plan = submit_job(settings, policy, input_uri, output, job_id, tenant)
        status = wait_with_progress(settings, plan.context.job_id, progress)
        if status.state != "succeeded":
            raise JobFailedError(status.describe())
        return manifest_of(settings, plan.context.job_root)
    storage = Storage(settings.s3)
    plan = build_plan(storage, policy, input_uri, output, settings.rows_per_chunk, job_id, tenant)
    from workers import local
    from workers.runtime import Runtime

    with local.simulated_providers(policy, settings) as effective, progress:
        rt = Runtime(settings=effective, storage=storage, tracker=MemoryJobTracker())
        task = progress.add_task(f"job {plan.context.job_id}", total=plan.rows_total)
        return local.run_job(rt, plan, threads, lambda n: progress.advance(task, n))
