"""The drop-folder watcher: every file dropped in the inbox becomes one job on the fleet.

For each file version ``(key, ETag, size)`` a watcher takes the file's lease in Redis
(``producer/watch/claims.py``), records or adopts its job id, plans and submits the job
exactly as ``batch-router submit`` does (tenant from the folder ``inbox/<tenant>/``),
renews the lease while the job is planned and while it runs, and once the job has ended
moves the file to ``processed/`` or, with an ``error.json``, to ``failed/``
(``producer/watch/store.py``). The input stays in the inbox, readable by the fleet, until
its job has ended. Should two watchers still both submit the file's job (a lease lost
during planning), registration is atomic: one registers it, the other waits for it.

Files are found by listing the inbox (:meth:`Watcher.poll`) or from S3 event
notifications on SQS (``producer/watch/sqs.py``). On ``stop`` (SIGTERM) a watcher takes
nothing new and hands back what is in flight: it gives up its leases, the jobs keep
running on the fleet, and the next watcher adopts them and moves their files.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from producer.watch.claims import Claims, DropFile
from producer.watch.store import DropFolder, Inbox, ReplacedError, s3_client
from routing.errors import InputError, JobConflictError
from routing.policy import Policy
from workers.jobs.plan import build_plan, new_job_id
from workers.jobstate import JobStatus
from workers.settings import Settings

log = logging.getLogger("batch_router.watch")

Outcome = Literal[
    "processed", "failed", "replaced", "skipped", "busy", "gone", "handed-back", "error"
]
FINAL = ("processed", "failed", "replaced", "skipped", "gone")  # nothing left to do for it
FINAL_STATES = ("succeeded", "failed")


@dataclass(frozen=True)
class Result:
    file: DropFile
    outcome: Outcome
    job_id: str | None = None
    detail: str = ""


class Watcher:
    """Turns dropped files into jobs; one instance per process, thread-safe."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        folder_uri: str,
        output: str,
        say: Callable[[str], None] | None = None,
    ) -> None:
        from workers.jobs.submit import tracker

        self.settings = settings
        self.policy = policy
        self.output = output
        self.folder = DropFolder.parse(folder_uri)
        self.inbox = Inbox(s3_client(settings), self.folder, settings.s3.sse_args())
        self.claims = Claims.for_settings(settings)
        self.jobs = tracker(settings)
        self.stop = threading.Event()
        self.results: deque[Result] = deque(maxlen=10_000)  # the latest, for --once
        self.counts: Counter[str] = Counter()
        self._say = say or log.info
        self._pool = ThreadPoolExecutor(settings.watch_max_jobs, thread_name_prefix="watch")
        self._inflight: dict[str, Future[Result]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sources

    def poll(self, once: bool) -> list[Result]:
        """List the inbox every ``watch_poll_s`` (once: one listing) and handle what is new;
        returns when stopped (or, once, when those files are handled)."""
        while not self.stop.is_set():
            try:
                for f in self.inbox.list():
                    if self.stop.is_set():
                        break
                    self.offer(f)
            except Exception as exc:  # store or Redis unreachable: a service keeps trying
                if once:
                    raise
                self._say(f"error listing {self.folder.uri}: {exc!r} (retrying)")
            if once:
                break
            self.stop.wait(self.settings.watch_poll_s)
        return self.drain()

    def offer(self, f: DropFile) -> Future[Result] | Literal["busy"]:
        """Handle ``f`` in the background unless another watcher has it."""
        with self._lock:
            running = self._inflight.get(f.ident)
            if running is not None:
                return running
            if self.claims.held(f):
                return "busy"
            future = self._pool.submit(self.handle, f)
            self._inflight[f.ident] = future
        future.add_done_callback(lambda fut: self._record(f, fut))
        return future

    def drain(self) -> list[Result]:
        """Wait for every file in hand (handed back at once if stopping); the latest
        results."""
        self._pool.shutdown(wait=True)
        return list(self.results)

    def _record(self, f: DropFile, future: Future[Result]) -> None:
        exc = future.exception()
        result = future.result() if exc is None else Result(f, "error", None, repr(exc))
        with self._lock:
            self._inflight.pop(f.ident, None)
            self.results.append(result)
            self.counts[result.outcome] += 1
        if result.outcome not in ("busy", "gone"):
            job = f" job {result.job_id}" if result.job_id else ""
            self._say(
                f"{result.outcome} {f.uri}{job}{': ' if result.detail else ''}{result.detail}"
            )

    # ------------------------------------------------------------------ one file

    def handle(self, f: DropFile) -> Result:
        """Claim ``f``, run its job (or adopt the one already started), then move it."""
        if self.stop.is_set():
            return Result(f, "handed-back")
        if not self.claims.acquire(f):
            return Result(f, "busy")
        try:
            if self.inbox.head(f.key) != f:
                return Result(f, "gone", None, "no longer in the inbox")
            done = self.claims.done(f)
            if done is not None:  # it was moved once, so it has been dropped again
                job = done.get("job_id")
                why = f"{f.uri}: already handled as job {job} (same key, ETag and size)"
                return self._fail(f, new_job_id(), "duplicate", why, record=False)
            return self._run(f)
        finally:
            self.claims.release(f)  # a no-op once finish() has released it

    def _run(self, f: DropFile) -> Result:
        tenant, name = self.folder.tenant_and_name(f.key)
        job_id, fresh = self.claims.job_for(f, new_job_id())
        if tenant is None:
            where = f"{self.folder.uri}<tenant>/{name}"
            return self._fail(f, job_id, "input", f"{f.uri}: not in a tenant folder ({where})")
        if not name.endswith(".parquet"):
            return self._fail(f, job_id, "input", f"{f.uri}: not a .parquet file")
        status = self.jobs.status(job_id)
        if status is None:
            try:
                submitted = self._submit(f, job_id, tenant)
            except InputError as exc:
                return self._fail(f, job_id, "plan", str(exc))
            if submitted is None:
                return Result(f, "handed-back", job_id, "lease lost while planning")
            self._say(f"{submitted} {f.uri} as job {job_id} (tenant {tenant})")
        elif not fresh:
            self._say(f"adopted job {job_id} of {f.uri} ({status.state})")
        final = self._wait(f, job_id)
        if final is None:
            return Result(f, "handed-back", job_id)
        if final.state != "succeeded":
            return self._fail(f, job_id, "job", self._job_error(job_id, final))
        try:
            moved = self.inbox.move(f, self.folder.destination("processed", f, job_id))
        except ReplacedError as exc:
            return self._replaced(f, job_id, exc)
        self.claims.finish(f, {"outcome": "processed", "job_id": job_id, "moved_to": moved})
        return Result(f, "processed", job_id, f"→ {moved}")

    def _replaced(
        self, f: DropFile, job_id: str, exc: ReplacedError, why: str = "", record: bool = True
    ) -> Result:
        """The file was replaced while its job ran: the job's input is recorded as replaced;
        the new version stays in the inbox and is handled as a new file."""
        detail = f"{exc} while job {job_id} ran{why}; its new version stays in the inbox"
        log.warning("replaced %s: %s", f.uri, detail)
        if record:
            self.claims.finish(f, {"outcome": "replaced", "job_id": job_id, "error": detail})
        return Result(f, "replaced", job_id, detail)

    def _submit(self, f: DropFile, job_id: str, tenant: str) -> str | None:
        """Plan and submit as ``batch-router submit`` does, the lease renewed meanwhile:
        "submitted", "adopted" (another watcher registered the job first), or None (the
        lease was lost while planning: the watcher holding it now submits)."""
        from workers.jobs.submit import submit  # looked up per call (tests count calls)
        from workers.storage import Storage

        with self.claims.renewing(f) as lease:
            storage = Storage(self.settings.s3)
            rows = self.settings.rows_per_chunk
            plan = build_plan(storage, self.policy, f.uri, self.output, rows, job_id, tenant)
            if lease.lost.is_set() or not self.claims.renew(f):
                return None
            try:
                submit(self.settings, plan)
            except JobConflictError:
                return "adopted"
        return "submitted"

    def _wait(self, f: DropFile, job_id: str) -> JobStatus | None:
        """Poll the job until it ends, renewing the lease; None when handing back (stop,
        or the lease was lost to another watcher, which adopts the job)."""
        while True:
            status = self.jobs.status(job_id) or self._failed_for_good(job_id)
            if status is None:
                raise RuntimeError(f"job {job_id} of {f.uri}: its state vanished from Redis")
            if status.state in FINAL_STATES:
                return status
            if self.stop.is_set() or not self.claims.renew(f):
                return None
            self.stop.wait(0.5)

    def _failed_for_good(self, job_id: str) -> JobStatus | None:
        """Redis forgot the job (restarted, or its state expired): the job's durable failure
        record (``_job/failed.json``), if it has one, still ends the wait."""
        from workers import layout
        from workers.finalize import failure_of
        from workers.storage import Storage

        root = layout.job_root(self.output, job_id)
        record = failure_of(Storage(self.settings.s3), root)
        if record is None:
            return None
        meta = {"error": str(record.get("error", "")), "job_root": root}
        return JobStatus(job_id, "failed", 0, 0, 0, {}, 0.0, meta)

    def _job_error(self, job_id: str, status: JobStatus) -> str:
        if status.meta.get("error"):
            return f"job {job_id} {status.state}: {status.meta['error']}"
        letters = [f"{d.get('task')}: {d.get('error')}" for d in self.jobs.dead_letters(job_id)]
        return f"job {job_id} {status.state}" + (": " + "; ".join(letters) if letters else "")

    def _fail(
        self, f: DropFile, job_id: str, stage: str, error: str, record: bool = True
    ) -> Result:
        """error.json first, then the file: a file in failed/ always has its reason."""
        tenant, _ = self.folder.tenant_and_name(f.key)
        detail: dict[str, Any] = {
            "file": f.uri,
            "etag": f.etag,
            "size": f.size,
            "tenant": tenant,
            "job_id": job_id,
            "stage": stage,
            "error": error,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        error_uri = self.inbox.write_error(f, job_id, detail)
        try:
            moved = self.inbox.move(f, self.folder.destination("failed", f, job_id))
        except ReplacedError as exc:
            return self._replaced(f, job_id, exc, f" ({error}; {error_uri})", record)
        if record:
            outcome = {"outcome": "failed", "job_id": job_id, "moved_to": moved, "error": error}
            self.claims.finish(f, outcome)
        return Result(f, "failed", job_id, f"{error} (→ {moved}, {error_uri})")
