"""Who polls a tier batch: one chain of poll tasks at a time.

A poll task reschedules itself (a countdown) until its tier batch is done; ``dispatch``
starts a chain, and so does a redelivered ``dispatch`` or ``reconcile`` after a worker
died. Each chain has an id; the tier batch's key (``keys.batch_poll``) names the chain
that owns it, and a task of any other chain stops — so restarting a chain never doubles
the polling. A key lost with Redis is taken by the first chain that looks.
"""

from __future__ import annotations

import uuid

import redis

from workers import keys


def new_chain() -> str:
    return uuid.uuid4().hex


def take(client: redis.Redis, job_id: str, chunk: int, tier: str, chain: str, ttl_s: int) -> None:
    """Make ``chain`` the owner (a new chain supersedes the running one)."""
    client.set(keys.batch_poll(job_id, chunk, tier), chain, ex=ttl_s)


def owns(client: redis.Redis, job_id: str, chunk: int, tier: str, chain: str, ttl_s: int) -> bool:
    """Whether ``chain`` may go on polling (it owns the key, or the key was lost and it
    took it now)."""
    key = keys.batch_poll(job_id, chunk, tier)
    if client.set(key, chain, nx=True, ex=ttl_s):
        return True
    owner = client.get(key)
    return owner is not None and (owner.decode() if isinstance(owner, bytes) else owner) == chain
