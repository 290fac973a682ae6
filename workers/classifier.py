"""The scorer of a job: the built-in heuristic, or the learned router copied into the job.

The producer copies a learned router (``policy.classifier.path``, local or ``s3://``) to
``_job/classifier.zip`` when it plans the job and checks that it loads; workers load that
copy once per process. So a job is scored by one model from start to finish, even if the
file the policy names is replaced while the job runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from routing.classify import HeuristicScorer, Scorer
from routing.errors import ConfigError
from routing.plan import JobContext
from routing.policy import Policy
from workers.storage import Storage

HEURISTIC = HeuristicScorer()


def scorer_from_bytes(data: bytes, source: str) -> Scorer:
    """Load a trained router from the bytes of its artifact (``source`` names it in errors).

    ``routing.learned.artifact.load_scorer`` checks format, checksum, trusted types and feature
    version, and raises :class:`ConfigError`."""
    from routing.learned.artifact import load_scorer  # scikit-learn: only when a job needs it

    with tempfile.TemporaryDirectory(prefix="br-router-") as tmp:
        path = Path(tmp) / "router.zip"
        path.write_bytes(data)
        try:
            scorer: Scorer = load_scorer(path)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(path), source)) from exc
    return scorer


def read_classifier(storage: Storage, uri: str) -> tuple[bytes, Scorer]:
    """The artifact's bytes and the scorer they load into."""
    if not storage.exists(uri):
        raise ConfigError(f"classifier {uri}: no such file (write one with `batch-router train`)")
    data = storage.read_bytes(uri)
    return data, scorer_from_bytes(data, uri)


def job_scorer(storage: Storage, ctx: JobContext, policy: Policy) -> Scorer:
    """The scorer ``policy`` asks for, from the job's copy of the model."""
    if policy.classifier.kind == "heuristic":
        return HEURISTIC
    if ctx.classifier_uri is None:
        raise ConfigError(
            f"job {ctx.job_id}: the policy names a learned classifier but the job has no "
            "copy of it (plan the job with this version of batch-router)"
        )
    return read_classifier(storage, ctx.classifier_uri)[1]
