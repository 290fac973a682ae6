"""Find finished jobs and scan their cost rollups (workers.rollup) with polars.

The rollup files form a hive-partitioned dataset, ``…/job_id=<id>/cost/day=<YYYY-MM-DD>/
tenant=<t>/part-0.parquet``; polars reads ``job_id``, ``day`` and ``tenant`` from the path
and prunes files on them (predicate pushdown), so a tenant's or a week's report opens only
the files of that tenant or week. Local paths and ``s3://`` URIs alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl
import pyarrow.fs as pafs

from producer.report.data import with_modes
from routing.errors import StorageError
from routing.schema import COST_ROLLUP_SCHEMA
from workers import layout
from workers.settings import S3Settings
from workers.storage import Storage, is_s3

HIVE_SCHEMA = {"job_id": pl.String, "day": pl.Date, "tenant": pl.String}
ROLLUP_SCHEMA = pl.DataFrame(COST_ROLLUP_SCHEMA.empty_table()).schema


class NoJobsError(FileNotFoundError):
    """A PATH holds no finished job with a cost rollup."""


@dataclass(frozen=True)
class Filters:
    """Which rollup rows a report covers; ``since`` and ``until`` are inclusive days."""

    tenant: str | None = None
    since: date | None = None
    until: date | None = None

    def expr(self) -> pl.Expr:
        out = pl.lit(True)
        if self.tenant is not None:
            out &= pl.col("tenant") == self.tenant
        if self.since is not None:
            out &= pl.col("day") >= self.since
        if self.until is not None:
            out &= pl.col("day") <= self.until
        return out


@dataclass(frozen=True)
class Jobs:
    """Finished jobs found under the PATHs: their rollup files, and the finished jobs
    that have none (finalized before rollups existed)."""

    files: tuple[str, ...]
    job_roots: tuple[str, ...]
    without_rollup: tuple[str, ...]


def _children(storage: Storage, uri: str) -> list[str]:
    """The ``job_id=*`` folders directly under ``uri``."""
    filesystem, path = storage.resolve(uri)
    selector = pafs.FileSelector(path, recursive=False, allow_not_found=True)
    try:
        infos = filesystem.get_file_info(selector)
    except OSError as exc:
        raise NoJobsError(f"{uri}: cannot list: {exc}") from exc
    base = uri.rstrip("/")
    return sorted(
        f"{base}/{i.base_name}"
        for i in infos
        if i.type == pafs.FileType.Directory and i.base_name.startswith("job_id=")
    )


def _job_roots(storage: Storage, path: str) -> list[str]:
    base = path.rstrip("/") or path
    if base.rsplit("/", 1)[-1].startswith("job_id="):
        candidates = [base]
    else:
        candidates = _children(storage, base)
    roots = [r for r in candidates if storage.exists(layout.success(r))]
    if not roots:
        where = "_SUCCESS" if candidates == [base] else "job_id=*/_SUCCESS under it"
        raise NoJobsError(f"{path}: no finished job (no {where})")
    return roots


def find_jobs(storage: Storage, paths: Sequence[str]) -> Jobs:
    """Every finished job under ``paths`` (job folders or output roots of ``job_id=*``)."""
    files: list[str] = []
    roots: list[str] = []
    bare: list[str] = []
    for path in paths:
        for root in _job_roots(storage, path):
            if root in roots:
                continue
            roots.append(root)
            parts = [
                f
                for f in storage.list_files(layout.cost_rollup_dir(root), ".parquet")
                if "/day=" in f and "/tenant=" in f
            ]
            if parts:
                files.extend(parts)
            else:
                bare.append(root)
    if not files:
        raise NoJobsError(
            f"{', '.join(paths)}: no finished job with a cost rollup (cost/day=*/tenant=*/)"
        )
    return Jobs(files=tuple(files), job_roots=tuple(roots), without_rollup=tuple(bare))


def storage_options(s3: S3Settings) -> dict[str, str]:
    """polars' object-store options for the configured S3 (unset keys: the AWS defaults)."""
    options = {"aws_region": s3.resolved_region()}
    if s3.endpoint_url:
        options["aws_endpoint_url"] = s3.endpoint_url
        if s3.endpoint_url.startswith("http://"):
            options["aws_allow_http"] = "true"
    if s3.access_key_id and s3.secret_access_key:
        options["aws_access_key_id"] = s3.access_key_id.get_secret_value()
        options["aws_secret_access_key"] = s3.secret_access_key.get_secret_value()
    return options


def scan(files: Sequence[str], s3: S3Settings) -> pl.LazyFrame:
    """A lazy scan of rollup files, with ``job_id``, ``day`` and ``tenant`` from the path
    (files with fewer or more columns than ``COST_ROLLUP_SCHEMA`` read as that schema)."""
    remote = any(is_s3(f) for f in files)
    return pl.scan_parquet(
        list(files),
        schema=ROLLUP_SCHEMA,
        hive_partitioning=True,
        hive_schema=HIVE_SCHEMA,
        missing_columns="insert",  # a rollup written before a column was added: nulls
        extra_columns="ignore",
        storage_options=storage_options(s3) if remote else None,
    )


def load(storage: Storage, paths: Sequence[str], filters: Filters) -> tuple[Jobs, pl.DataFrame]:
    """The rollup rows of every finished job under ``paths`` that match ``filters`` (the
    ``mode`` of rows of rollups from before batch mode: ``(not recorded)``)."""
    jobs = find_jobs(storage, paths)
    try:
        frame = scan(jobs.files, storage.s3).filter(filters.expr()).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise StorageError(f"cannot read the cost rollups: {exc}") from exc
    return jobs, with_modes(frame)
