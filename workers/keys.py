"""Every Redis key, built here and nowhere else: job state, job-wide dedupe and prompt ids,
the drop folder, nightly schedules, and the guards (workers/guards/: budget ledger,
breakers, rate limits, retry budget, response cache). Each guard's keys start with its own
``br:<mechanism>:`` prefix (the defaults below), which an instance may replace: the guard
passes its prefix to the builder.

All keys of a job share the ``{job_id}`` hash tag so a Redis Cluster keeps them in one
slot (Lua scripts touch several at once).
"""

from __future__ import annotations

PREFIX = "br"


def jobs_index() -> str:
    """Sorted set: job_id scored by creation time."""
    return f"{PREFIX}:jobs"


def job(job_id: str) -> str:
    """Hash: job metadata and state (state, total_chunks, rows_total, job_root, …)."""
    return f"{PREFIX}:job:{{{job_id}}}"


def job_parts(job_id: str) -> str:
    """Hash: part name → JSON row counts by status, cost, baseline (one entry per part)."""
    return f"{PREFIX}:job:{{{job_id}}}:parts"


def job_chunks_done(job_id: str) -> str:
    """Set: chunk numbers whose every part is written."""
    return f"{PREFIX}:job:{{{job_id}}}:chunks_done"


def chunk_expected(job_id: str, chunk: int) -> str:
    """Set: part names the chunk will write (registered by ingest before dispatching)."""
    return f"{PREFIX}:job:{{{job_id}}}:chunk:{chunk}:expected"


def chunk_done(job_id: str, chunk: int) -> str:
    """Set: part names of the chunk already written."""
    return f"{PREFIX}:job:{{{job_id}}}:chunk:{chunk}:done"


def job_dead_letters(job_id: str) -> str:
    """List: JSON entries of tasks that exhausted their attempts (newest last)."""
    return f"{PREFIX}:job:{{{job_id}}}:dead"


def job_batches(job_id: str) -> str:
    """Hash: provider batch id → JSON summary (chunk, tier, round, provider, model, status,
    request counts, submitted_at): what ``status`` and the metrics show of batch mode."""
    return f"{PREFIX}:job:{{{job_id}}}:batches"


def batch_poll(job_id: str, chunk: int, tier: str) -> str:
    """String: the id of the poll chain that owns a tier batch's polling (a chain that
    finds another id here stops: reconcile can start a new one without doubling polls)."""
    return f"{PREFIX}:job:{{{job_id}}}:poll:{chunk}:{tier}"


_GLOB_SPECIAL = frozenset("\\*?[]")


def glob_escape(text: str) -> str:
    """``text`` matched literally inside a Redis glob pattern (``\\ * ? [ ]`` escaped)."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def job_pattern(job_id: str) -> str:
    """SCAN pattern matching every key of one job (used to clear a finished job's state).
    The id is escaped: job ids are validated where they enter (routing.names), and a glob
    character that got past them still matches only itself, never another job's keys."""
    return f"{PREFIX}:job:{{{glob_escape(job_id)}}}*"


def job_dedupe_claim(job_id: str, fingerprint: str) -> str:
    """String: the claimant (``<chunk>:<prompt_id>``) of a fingerprint in the job."""
    return f"{job(job_id)}:dedupe:{fingerprint}"


def watch_file(ident: str, what: str) -> str:
    """A dropped file's ``lease``, ``job`` or ``done`` record (producer/watch/claims.py)."""
    return f"{PREFIX}:watch:{ident}:{what}"


def nightly_last(name: str) -> str:
    """String: epoch seconds of the schedule's latest claimed window."""
    return f"{PREFIX}:nightly:{name}:last"


def nightly_window(name: str, stamp: str) -> str:
    """String: the window's claim record (job id, or why it could not be submitted)."""
    return f"{PREFIX}:nightly:{name}:window:{stamp}"


def job_prompt_ids(job_id: str, bucket: int) -> str:
    """Hash: digest of a prompt_id → the claimant (``<chunk>:<input_row>``) that keeps the
    id in the job (workers/prompt_ids.py); one of the job's ``rows_total / 64`` buckets."""
    return f"{job(job_id)}:ids:{bucket}"


# ---------------------------------------------------------------- guards (workers/guards/)

LEDGER = f"{PREFIX}:ledger:"
BREAKER = f"{PREFIX}:breaker:"
RATELIMIT = f"{PREFIX}:ratelimit:"
RETRIES = f"{PREFIX}:retries:"
CACHE = f"{PREFIX}:cache:"


def ledger_record(key: str, prefix: str = LEDGER) -> str:
    """Hash: one ledger key's reservation or settlement (state, usd, tokens, exp, member,
    scopes and ttls as JSON lists)."""
    return f"{prefix}res:{key}"


def ledger_scope(scope_id: str, prefix: str = LEDGER) -> str:
    """Hash: a budget scope's settled / reserved / total USD (pico) and tokens."""
    return f"{prefix}scope:{scope_id}"


def ledger_pending(scope_id: str, prefix: str = LEDGER) -> str:
    """Sorted set: a scope's live reservations ("usd|tokens|key") by expiry (ms)."""
    return f"{prefix}pending:{scope_id}"


def breaker_state(target: str, prefix: str = BREAKER) -> str:
    """Hash: a breaker's state (``"provider/model"`` as the hash tag: one Cluster slot)."""
    return f"{prefix}{{{target}}}"


def breaker_probes(target: str, prefix: str = BREAKER) -> str:
    """Sorted set: a half-open breaker's probe leases (token → expiry ms)."""
    return f"{breaker_state(target, prefix)}:probes"


def breaker_states(prefix: str = BREAKER) -> str:
    """SCAN pattern matching every breaker's state hash (and its probe set)."""
    return f"{glob_escape(prefix)}*"


def breaker_target(key: str, prefix: str = BREAKER) -> str | None:
    """The target of a breaker state key (None: not one, e.g. a probe set)."""
    if not (key.startswith(prefix + "{") and key.endswith("}")):
        return None
    return key[len(prefix) + 1 : -1]


def ratelimit_buckets(target: str, prefix: str = RATELIMIT) -> str:
    """Hash: a target's request and token buckets."""
    return f"{prefix}{{{target}}}"


def retries(job_id: str, prefix: str = RETRIES) -> str:
    """Counter: retries taken in the job."""
    return f"{prefix}{job_id}"


def cache_entry(namespace: str, digest: str, prefix: str = CACHE) -> str:
    """String: a cached answer (JSON) under a tenant's (or the shared) namespace."""
    return f"{prefix}{namespace}:{digest}"
