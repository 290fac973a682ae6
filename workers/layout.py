"""Where a job's objects live under its root ``…/job_id=<id>/`` (deterministic keys)."""

from __future__ import annotations

from urllib.parse import quote

from workers.storage import join


def job_root(output_root: str, job_id: str) -> str:
    return join(output_root, f"job_id={job_id}")


def plan(root: str) -> str:
    return join(root, "_job", "plan.json")


def policy(root: str) -> str:
    return join(root, "_job", "policy.yaml")


def classifier(root: str) -> str:
    return join(root, "_job", "classifier.zip")


def chunk_parts(root: str, chunk: int) -> str:
    """The result parts a chunk will write, recorded by ingest before it dispatches: what
    ``reconcile`` checks when the job's Redis state is gone."""
    return join(root, "_job", "chunks", f"c{chunk:06d}.json")


def staging_dir(root: str) -> str:
    return join(root, "_staging")


def staged_batch(root: str, chunk: int, tier: str) -> str:
    return join(staging_dir(root), "routed", f"c{chunk:06d}-{tier}.parquet")


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


HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # Hive's (and polars') name for a null partition value


def hive_value(value: str | None) -> str:
    """A partition value as a path segment: percent-encoded (``/``, ``=``, spaces are safe;
    polars decodes them), ``None`` as Hive's default partition."""
    return HIVE_NULL if value is None else quote(value, safe="")


def cost_rollup_dir(root: str) -> str:
    return join(root, "cost")


def cost_rollup_part(root: str, day: str, tenant: str | None) -> str:
    """The job's cost rollup of one UTC day and tenant (workers.rollup)."""
    return join(root, "cost", f"day={day}", f"tenant={hive_value(tenant)}", "part-0.parquet")
