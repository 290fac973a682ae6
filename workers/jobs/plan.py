"""Plan a job from Parquet footers only, and store the plan and policy with the job."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

from pyarrow import fs

from routing import carried, names
from routing.errors import InputError
from routing.plan import ChunkRef, FileInfo, JobContext, JobPlan, plan_chunks
from routing.policy import LimitsSpec, Policy
from routing.schema import DEFAULT_TENANT
from routing.validate import check_schema
from workers import layout
from workers.classifier import read_classifier
from workers.labels import tenant_labels, with_bandit_weights, write_explored
from workers.storage import Storage
from workers.verifier import copy_verifiers


def new_job_id() -> str:
    """Sortable and unique: UTC timestamp plus 8 random hex digits (2,000 jobs planned in
    one second collide with odds ~1 in 2,000; 6 digits made that ~1 in 8)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def read_footers(
    storage: Storage,
    input_uri: str,
    limits: LimitsSpec | None = None,
    schemas: list[carried.FileSchema] | None = None,
) -> list[FileInfo]:
    """List the Parquet files under ``input_uri`` and read their footers (no row data).

    Every file's schema is checked, the files' carried columns against each other
    (routing.carried), and with ``limits`` its size (``max_file_bytes``) and the job's row
    count (``max_rows_per_job``); all problems are reported together. The accepted files'
    schemas are appended to ``schemas`` when given.
    """
    uris = storage.list_files(input_uri, ".parquet")
    if not uris:
        filesystem, path = storage.resolve(input_uri)
        if filesystem.get_file_info(path).type == fs.FileType.NotFound:
            bucket = storage.missing_bucket(input_uri)
            if bucket is not None:
                raise InputError(f"{input_uri}: the bucket {bucket!r} does not exist")
            raise InputError(f"{input_uri}: no such file or folder")
        raise InputError(f"{input_uri}: no .parquet files found")
    files, problems, seen = [], [], []
    for uri in uris:
        try:
            if limits is not None:
                _check_size(storage, uri, limits)
            parquet = storage.parquet_file(uri)
            check_schema(parquet.schema_arrow, uri)
        except InputError as exc:
            problems.append(str(exc))
            continue
        except Exception as exc:  # a corrupt footer is a rejected file, not a crash
            problems.append(f"{uri}: not a readable Parquet file ({exc})")
            continue
        meta = parquet.metadata
        groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        files.append(FileInfo(uri=uri, rows=meta.num_rows, row_groups=groups))
        seen.append((uri, parquet.schema_arrow))
    problems.extend(carried.unify(seen)[1])
    rows = sum(f.rows for f in files)
    if limits is not None and rows > limits.max_rows_per_job:
        problems.append(
            f"{input_uri}: {rows} rows in {len(files)} file(s), over the policy limit "
            f"limits.max_rows_per_job = {limits.max_rows_per_job}; split the input into jobs"
        )
    if problems:
        raise InputError("input rejected:\n  " + "\n  ".join(problems))
    if schemas is not None:
        schemas.extend(seen)
    return files


def _check_size(storage: Storage, uri: str, limits: LimitsSpec) -> None:
    size = storage.size(uri)
    if size > limits.max_file_bytes:
        raise InputError(
            f"{uri}: {size} bytes, over the policy limit limits.max_file_bytes = "
            f"{limits.max_file_bytes}; split the file"
        )


def build_plan(
    storage: Storage,
    policy: Policy,
    input_uri: str,
    output_root: str,
    rows_per_chunk: int,
    job_id: str | None = None,
    tenant: str | None = None,
) -> JobPlan:
    """Plan the job and write ``_job/plan.json``, ``_job/policy.yaml`` and, for a learned
    classifier, ``_job/classifier.zip`` under its root (and each cascade verifier the
    policy names, ``_job/verifier-<tier>.zip``).

    The job id and the tenant are checked first (routing.names), then the input's
    footers, then that every object key the job will write fits the store: whatever
    submitted the job (CLI, drop folder, schedule), a refusal comes before any spend."""
    job_id = names.validate_job_id(job_id or new_job_id())
    if tenant is not None:
        names.validate_tenant(tenant)
    root = layout.job_root(output_root, job_id)
    schemas: list[carried.FileSchema] = []
    files = read_footers(storage, input_uri, policy.limits, schemas)
    chunks = plan_chunks(files, rows_per_chunk)
    _check_keys(root, chunks, policy, tenant)
    model = None
    if policy.classifier.kind == "learned":
        assert policy.classifier.path is not None  # the policy validator guarantees it
        model, _ = read_classifier(storage, policy.classifier.path)  # fails fast if unusable
    verifiers = copy_verifiers(storage, policy, root)  # each checked before any spend
    # from the tenant's judged labels (read once): this job's arm shares, the pairs judged
    labels = tenant_labels(storage, policy, output_root, tenant or DEFAULT_TENANT)
    policy = with_bandit_weights(policy, labels, job_id)
    write_explored(storage, policy, labels, root)
    ctx = JobContext(
        job_id=job_id,
        job_root=root,
        tenant=tenant,
        policy_uri=layout.policy(root),
        policy_version=policy.version,
        total_chunks=len(chunks),
        classifier_uri=layout.classifier(root) if model is not None else None,
        rows_total=sum(f.rows for f in files),
        carried_columns=carried.job_columns(schemas),
    )
    plan = JobPlan(
        context=ctx,
        input_uri=input_uri,
        files=tuple(files),
        chunks=tuple(chunks),
        rows_total=ctx.rows_total,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if model is not None:
        storage.write_bytes(layout.classifier(root), model)
    for uri, data in verifiers:
        storage.write_bytes(uri, data)
    storage.write_bytes(layout.policy(root), policy.to_yaml().encode())
    storage.write_bytes(layout.plan(root), json.dumps(plan.model_dump(mode="json")).encode())
    return plan


def _check_keys(root: str, chunks: list[ChunkRef], policy: Policy, tenant: str | None) -> None:
    """InputError when an object key of the job would be over the store's limits (a long
    output prefix, tenant or tier name): found now, not at finalize after the spend."""
    last = max((c.chunk for c in chunks), default=0)
    parts = [*policy.tier_names, "rejected", "dedupe"]  # the other parts: workers.stages, dedupe
    problems = names.key_problems(layout.longest_keys(root, last, parts, tenant))
    if problems:
        raise InputError(
            "output keys too long (shorten --output or the names): " + "; ".join(problems)
        )
