"""Where a job's objects live under its root ``…/job_id=<id>/`` (deterministic keys)."""

from __future__ import annotations

from collections.abc import Sequence

from routing.names import HIVE_NULL, encoded, validate_job_id
from workers.storage import join


def job_root(output_root: str, job_id: str) -> str:
    """``<output_root>/job_id=<id>``; InputError unless the id is one safe path segment
    (no ``/``, no ``..``: routing.names), so no id can lead outside ``output_root``."""
    return join(output_root, f"job_id={validate_job_id(job_id)}")


def plan(root: str) -> str:
    return join(root, "_job", "plan.json")


def policy(root: str) -> str:
    return join(root, "_job", "policy.yaml")


def explored(root: str) -> str:
    """The (prompt, model) pairs already judged when the job was planned (policy explore):
    exploration does not pay for them again."""
    return join(root, "_job", "explored.parquet")


def classifier(root: str) -> str:
    return join(root, "_job", "classifier.zip")


def verifier(root: str, tier: str) -> str:
    """The job's copy of the verifier a tier's cascade names (``cascade.verifier``)."""
    return join(root, "_job", f"verifier-{tier}.zip")


def labels_part(root: str, day: str, tenant: str, chunk: int, part: str) -> str:
    """A tier batch's judged exploration labels, beside the jobs under the output root:
    ``<output_root>/_labels/day=<YYYY-MM-DD>/tenant=<t>/<job id>-c<chunk>-<part>.parquet``
    (``batch-router feedback`` collects them)."""
    output_root, _, job_dir = root.rstrip("/").rpartition("/")
    job_id = job_dir.removeprefix("job_id=")
    name = f"{job_id}-c{chunk:06d}-{encoded(part)}.parquet"
    return join(output_root, LABELS_DIR, f"day={day}", f"tenant={encoded(tenant)}", name)


LABELS_DIR = "_labels"


def chunk_parts(root: str, chunk: int) -> str:
    """The result parts a chunk will write, recorded by ingest before it dispatches: what
    ``reconcile`` checks when the job's Redis state is gone."""
    return join(root, "_job", "chunks", f"c{chunk:06d}.json")


def staging_dir(root: str) -> str:
    return join(root, "_staging")


def staged_batch(root: str, chunk: int, tier: str) -> str:
    return join(staging_dir(root), "routed", f"c{chunk:06d}-{tier}.parquet")


def batches_dir(root: str) -> str:
    """Provider batch mode's durable state (workers/batches/): one record per tier batch
    and the outcomes of its rounds."""
    return join(root, "_job", "batches")


def batch_record(root: str, chunk: int, tier: str) -> str:
    """The record of a tier batch in batch mode: its rounds and provider batch ids."""
    return join(batches_dir(root), f"c{chunk:06d}-{tier}.json")


def batch_outcomes(root: str, chunk: int, tier: str, name: str) -> str:
    """Outcomes of one step of a tier batch (a provider batch collected, cache hits, …)."""
    return join(batches_dir(root), f"c{chunk:06d}-{tier}", f"{name}.parquet")


def results_dir(root: str) -> str:
    return join(root, "results")


def result_part(root: str, chunk: int, part: str) -> str:
    return join(root, "results", f"part-c{chunk:06d}-{part}.parquet")


def audit_dir(root: str) -> str:
    return join(root, "_audit")


def audit_part(root: str, chunk: int, part: str) -> str:
    """The audit trail of ``result_part(root, chunk, part)``: one hash-chained JSON record
    per row (routing.audit)."""
    return join(root, "_audit", f"part-c{chunk:06d}-{part}.parquet")


def cost_summary(root: str) -> str:
    return join(root, "cost", "summary.parquet")


def manifest(root: str) -> str:
    return join(root, "manifest.json")


def success(root: str) -> str:
    return join(root, "_SUCCESS")


def hive_value(value: str | None) -> str:
    """A partition value as a path segment: percent-encoded (``/``, ``=``, spaces are safe;
    polars decodes them), ``None`` as Hive's default partition (:data:`HIVE_NULL`, a name
    no tenant may take: routing.names)."""
    return HIVE_NULL if value is None else encoded(value)


def cost_rollup_dir(root: str) -> str:
    return join(root, "cost")


def cost_rollup_part(root: str, day: str, tenant: str | None) -> str:
    """The job's cost rollup of one UTC day and tenant (workers.rollup)."""
    return join(root, "cost", f"day={day}", f"tenant={hive_value(tenant)}", "part-0.parquet")


def longest_keys(root: str, last_chunk: int, parts: Sequence[str], tenant: str | None) -> list[str]:
    """The longest object key of each kind the job will write (its tier names and other
    part names in ``parts``): what planning checks against the stores' key limits."""
    part = max(parts, key=lambda p: len(p.encode()))
    return [
        plan(root),
        policy(root),
        classifier(root),
        chunk_parts(root, last_chunk),
        join(root, "_job", "dedupe", f"c{last_chunk:06d}.parquet"),  # workers.dedupe
        staged_batch(root, last_chunk, part),
        result_part(root, last_chunk, part),
        audit_part(root, last_chunk, part),
        cost_rollup_part(root, "2000-01-01", tenant),
        cost_summary(root),
        manifest(root),
        join(root, "report.html"),
    ]
