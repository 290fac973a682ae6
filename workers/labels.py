"""The judged labels under an output root (``_labels/day=…/tenant=…/``, written by
``workers/explore.py``): collected for ``batch-router feedback`` and ``retrain``, and by
the planner for an experiment's bandit (``routing/experiments.py``)."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, date, datetime, timedelta

import polars as pl

from routing.arms import with_weights
from routing.errors import InputError
from routing.experiments import rewards, thompson_weights
from routing.names import encoded, validate_tenant
from routing.policy import Policy
from workers import layout
from workers.layout import LABELS_DIR
from workers.storage import Storage, join

log = logging.getLogger("batch_router.experiments")

_PARTITION = re.compile(r"/day=(\d{4}-\d{2}-\d{2})/tenant=([^/]+)/[^/]+\.parquet$")


def collect_labels(
    storage: Storage,
    root: str,
    *,
    tenants: list[str] | None = None,
    since: date | None = None,
    newest: bool = True,
) -> tuple[pl.DataFrame, int, int]:
    """The labels under ``root``, the files read and the rows read; InputError when there
    are none. ``newest``: one label per (prompt, model), the latest — what training wants;
    else every judged outcome (each job's, for the report and the bandit)."""
    wanted = {encoded(validate_tenant(t)) for t in tenants or []}
    folder = join(root, LABELS_DIR)
    files = []
    for uri in storage.list_files(folder, ".parquet"):
        m = _PARTITION.search(uri)
        if m is None:
            continue
        day, tenant = m.group(1), m.group(2)
        if since is not None and day < since.isoformat():
            continue
        if wanted and tenant not in wanted:
            continue
        files.append(uri)
    if not files:
        raise InputError(
            f"no labels under {folder}"
            + (" for these --tenant / --since" if wanted or since else "")
            + " (a policy with explore: {rate: …} writes them)"
        )
    frames = [pl.DataFrame(pl.from_arrow(storage.read_parquet_file(uri))) for uri in files]
    frame = pl.concat(frames, how="diagonal_relaxed")  # files of older / newer writers
    rows = frame.height
    if newest:
        frame = frame.sort("labelled_at").unique(["prompt_id", "model"], keep="last")
    return frame.sort("prompt_id", "model"), len(files), rows


def tenant_labels(storage: Storage, policy: Policy, output_root: str, tenant: str) -> pl.DataFrame:
    """Every judged outcome of ``tenant`` under ``output_root``, read once when a job is
    planned and only when its policy learns from them (an experiment's bandit, exploration);
    empty when there are none, or when they cannot be read (a warning: they never stop a
    job)."""
    spec = policy.experiment
    if not (policy.explore.enabled or (spec is not None and spec.bandit.enabled)):
        return pl.DataFrame()
    try:
        return collect_labels(storage, output_root, tenants=[tenant], newest=False)[0]
    except InputError:  # none yet
        return pl.DataFrame()
    except Exception as exc:  # an unreadable file or store
        log.warning("judged labels under %s unreadable (%s): not used", output_root, exc)
        return pl.DataFrame()


def with_bandit_weights(policy: Policy, labels: pl.DataFrame, job_id: str) -> Policy:
    """``policy`` with its experiment's arm weights set by the bandit from the judged
    ``labels`` (:func:`tenant_labels`) of the last ``window_days``
    (``routing/experiments.py``); the policy unchanged when there is no bandit. Seeded by
    the job id: a re-plan of the same job draws the same weights. No labels: every arm on
    its prior."""
    spec = policy.experiment
    if spec is None or not spec.bandit.enabled:
        return policy
    since = datetime.now(UTC).date() - timedelta(days=spec.bandit.window_days - 1)
    if labels.height:
        labels = labels.filter(pl.col("labelled_at").str.slice(0, 10) >= since.isoformat())
    seed = int.from_bytes(hashlib.blake2b(job_id.encode(), digest_size=4).digest(), "big")
    weights = thompson_weights(
        rewards(labels, spec), spec.bandit.floor, spec.bandit.draws, seed=seed
    )
    log.info("experiment %s: bandit weights %s for job %s", spec.name, weights, job_id)
    return with_weights(policy, weights)


def write_explored(storage: Storage, policy: Policy, labels: pl.DataFrame, root: str) -> None:
    """For a job that explores: the (prompt_id, model) pairs the judged ``labels`` already
    hold, written to ``_job/explored.parquet`` — exploration skips a prompt whose pair of
    models is judged already (``workers/explore.py``). None: nothing written."""
    if not policy.explore.enabled or labels.height == 0:
        return
    known = labels.select("prompt_id", "model").unique().sort("prompt_id", "model")
    storage.write_parquet(layout.explored(root), known.to_arrow())
