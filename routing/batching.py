"""Provider batch mode, the pure part: a tier's ``batch:`` policy section, the providers'
file limits, the ``custom_id`` that maps a provider's answer back to its row, and how a
tier batch is split into provider batches.

A tier with ``mode: batch`` sends its prompts through the provider's batch API (OpenAI
Files + Batches, Anthropic Message Batches) at the model's batch price — half the realtime
price for the default models — and gets the answers back within the completion window
(24 h). Execution lives in ``workers/batches/``; this module has no I/O.

**custom_id.** ``j<job hash>-c<chunk>-r<input row>-n<round>-a<attempt>``: ASCII letters,
digits and ``-`` only, at most 64 characters (Anthropic's rule; OpenAI takes any string),
unique per request ever sent for a job: a row's retry in a later provider batch, or its
round-2 escalation, gets another id, so the simulator (and a provider's console) can
count a request submitted twice. The job hash guards against a provider batch of another
job being read as this one's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from routing.frozen import Frozen

MB = 1000 * 1000  # providers state their limits in decimal megabytes: the safe reading


@dataclass(frozen=True)
class FileLimits:
    """What one provider batch may hold."""

    requests: int
    bytes: int


# The providers' documented limits per batch (OpenAI: per input file; Anthropic: per batch).
PROVIDER_LIMITS: dict[str, FileLimits] = {
    "openai": FileLimits(requests=50_000, bytes=200 * MB),
    "anthropic": FileLimits(requests=100_000, bytes=256 * MB),
}
COMPLETION_WINDOW = "24h"  # OpenAI's only completion window


class BatchSpec(Frozen):
    """A batch tier's settings (``tiers[].batch``); the provider's limits are the defaults."""

    max_requests_per_file: int | None = Field(
        None, gt=0, description="requests per provider batch (default: the provider's limit)"
    )
    max_bytes_per_file: int | None = Field(
        None, gt=0, description="bytes per provider batch (default: the provider's limit)"
    )
    poll_s: float = Field(60.0, gt=0, le=86_400, description="how often a batch is looked at")
    deadline_s: float = Field(
        86_400.0, gt=0, description="a batch not ended this long after submission is cancelled"
    )
    on_expired: Literal["realtime", "fail", "resubmit"] = Field(
        "realtime",
        description="requests a batch did not answer (expired, cancelled): serve them now "
        "in realtime mode, fail them, or send them in a new batch",
    )

    def limits(self, provider_kind: str) -> FileLimits:
        """The effective limits for a provider of ``provider_kind`` (``openai``/``anthropic``)."""
        default = PROVIDER_LIMITS[provider_kind]
        return FileLimits(
            requests=min(self.max_requests_per_file or default.requests, default.requests),
            bytes=min(self.max_bytes_per_file or default.bytes, default.bytes),
        )


# ---------------------------------------------------------------- custom ids

# ASCII digits without leading zeros (``\d`` would take any script's digits, and ``07``
# would name the same request as ``7``): one request, one spelling.
_NUMBER = r"(0|[1-9][0-9]*)"
_CUSTOM_ID = re.compile(rf"j([0-9a-f]{{10}})-c{_NUMBER}-r{_NUMBER}-n{_NUMBER}-a{_NUMBER}")
_REF = re.compile(rf"c{_NUMBER}/r{_NUMBER}")
MAX_CUSTOM_ID_CHARS = 64  # Anthropic's limit (and its alphabet: [A-Za-z0-9_-])


@dataclass(frozen=True)
class RequestId:
    """What a ``custom_id`` says: the job (by hash), the row, the round and the attempt."""

    job_hash: str
    chunk: int
    row: int
    round: int
    attempt: int

    @property
    def ref(self) -> str:
        """The row's name in the job (``c<chunk>/r<input row>``: ledger key, cache owner)."""
        return f"c{self.chunk}/r{self.row}"

    def __str__(self) -> str:
        return f"j{self.job_hash}-c{self.chunk}-r{self.row}-n{self.round}-a{self.attempt}"


def job_hash(job_id: str) -> str:
    return hashlib.blake2b(job_id.encode(), digest_size=5).hexdigest()


def request_id(job_id: str, ref: str, round_: int, attempt: int) -> RequestId:
    """The custom id of row ``ref`` (``c<chunk>/r<row>``) in round ``round_``, attempt
    ``attempt`` of job ``job_id``."""
    m = _REF.fullmatch(ref)
    if m is None or round_ < 0 or attempt < 0:
        raise ValueError(f"no custom id for row {ref!r}, round {round_}, attempt {attempt}")
    rid = RequestId(job_hash(job_id), int(m[1]), int(m[2]), round_, attempt)
    if len(str(rid)) > MAX_CUSTOM_ID_CHARS:
        raise ValueError(f"custom id {rid} is longer than {MAX_CUSTOM_ID_CHARS} characters")
    return rid


def parse_request_id(custom_id: str, job_id: str | None = None) -> RequestId | None:
    """The custom id's parts; None for an id :func:`request_id` never made (of job
    ``job_id``, when given)."""
    m = _CUSTOM_ID.fullmatch(custom_id)
    if m is None or (job_id is not None and m[1] != job_hash(job_id)):
        return None
    return RequestId(m[1], int(m[2]), int(m[3]), int(m[4]), int(m[5]))


# ---------------------------------------------------------------- splitting


def split(sizes: Sequence[int], limits: FileLimits) -> list[range]:
    """Consecutive index ranges of requests (``sizes``: each request's encoded bytes, with
    its line end) such that every range holds at most ``limits.requests`` requests and
    ``limits.bytes`` bytes. A request larger than the byte limit on its own is a range of
    its own (the provider will refuse it; its row fails, the others go on)."""
    out: list[range] = []
    start, used = 0, 0
    for i, size in enumerate(sizes):
        full = i - start >= limits.requests or (used + size > limits.bytes and i > start)
        if full:
            out.append(range(start, i))
            start, used = i, 0
        used += size
    if start < len(sizes):
        out.append(range(start, len(sizes)))
    return out
