"""Who handles a dropped file: leases, job records and done markers in Redis.

A dropped file is identified by ``(bucket, key, ETag, size)``. Three keys per file:

- ``br:watch:<id>:lease`` — the watcher handling it (``SET NX PX``); renewed while its job
  is planned (from a background thread, :meth:`Claims.renewing`) and while it runs, so a
  watcher that dies lets the lease expire and another watcher takes over;
- ``br:watch:<id>:job`` — the job id chosen for it (``SET NX``): a watcher taking over
  adopts that job instead of submitting a second one;
- ``br:watch:<id>:done`` — the outcome once the file is moved (kept ``ttl_s``): late or
  duplicate notifications of the file are ignored.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from workers import connections, keys, luasource
from workers.settings import Settings

# The scripts: workers/scripts/watch_{renew,release}.lua.


@dataclass(frozen=True)
class DropFile:
    """One object version in the inbox."""

    bucket: str
    key: str
    etag: str
    size: int

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def ident(self) -> str:
        """Short, stable id of ``(bucket, key, ETag, size)`` for Redis keys."""
        raw = f"{self.bucket}\0{self.key}\0{self.etag}\0{self.size}".encode()
        return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True)
class Lease:
    """Set once a renewal found the lease gone (another watcher may hold it now)."""

    lost: threading.Event = field(default_factory=threading.Event)


def lease_key(f: DropFile) -> str:
    return keys.watch_file(f.ident, "lease")


def job_key(f: DropFile) -> str:
    return keys.watch_file(f.ident, "job")


def done_key(f: DropFile) -> str:
    return keys.watch_file(f.ident, "done")


class Claims:
    """Leases, job records and done markers of dropped files, shared by every watcher."""

    def __init__(self, client: redis.Redis, lease_s: int, ttl_s: int) -> None:
        self._r = client
        self._lease_ms = lease_s * 1000
        self._ttl = ttl_s
        self.owner = secrets.token_hex(8)
        self._renew = client.register_script(luasource.load("watch_renew"))
        self._release = client.register_script(luasource.load("watch_release"))

    @classmethod
    def for_settings(cls, settings: Settings) -> Claims:
        """On the job-state Redis of ``settings`` (workers.connections), with its lease and
        record lifetimes."""
        client = connections.state_client(settings)
        return cls(client, settings.watch_lease_s, settings.job_ttl_s)

    def done(self, f: DropFile) -> dict[str, Any] | None:
        raw = self._r.get(done_key(f))
        return None if raw is None else dict(json.loads(raw))

    def held(self, f: DropFile) -> bool:
        """Some watcher (maybe this one) holds the file's lease."""
        return bool(self._r.exists(lease_key(f)))

    def acquire(self, f: DropFile) -> bool:
        return bool(self._r.set(lease_key(f), self.owner, nx=True, px=self._lease_ms))

    def renew(self, f: DropFile) -> bool:
        """Extend our lease; False if it expired and may belong to another watcher now."""
        return bool(self._renew(keys=[lease_key(f)], args=[self.owner, self._lease_ms]))

    @contextmanager
    def renewing(self, f: DropFile) -> Iterator[Lease]:
        """Renew the lease every third of its term from a background thread while the
        block runs (planning may outlast a lease); ``lost`` tells if it was lost anyway."""
        lease = Lease()
        stop = threading.Event()

        def keep() -> None:
            while not stop.wait(self._lease_ms / 3000):
                try:
                    ours = self.renew(f)
                except redis.RedisError:  # a hiccup: try again next period
                    continue
                if not ours:
                    lease.lost.set()
                    return

        thread = threading.Thread(target=keep, name=f"lease-{f.ident[:8]}", daemon=True)
        thread.start()
        try:
            yield lease
        finally:
            stop.set()
            thread.join()

    def release(self, f: DropFile) -> None:
        self._release(keys=[lease_key(f)], args=[self.owner])

    def job_for(self, f: DropFile, proposed: str) -> tuple[str, bool]:
        """The file's job id: ``proposed`` if none was recorded (True), else the recorded
        one (False) — a watcher taking over adopts the job its predecessor started."""
        if self._r.set(job_key(f), proposed, nx=True, ex=self._ttl):
            return proposed, True
        existing = self._r.get(job_key(f))
        return (str(existing), False) if existing is not None else self.job_for(f, proposed)

    def finish(self, f: DropFile, outcome: dict[str, Any]) -> None:
        """Record the outcome (the file has been moved), then give up the lease."""
        self._r.set(done_key(f), json.dumps(outcome), ex=self._ttl)
        self.release(f)
