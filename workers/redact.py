"""This process's redactor: the secrets it knows, applied wherever provider or exception
text becomes stored data (``Completion.error``, dead letters) or a log line.

The secrets are registered where they enter the process: the Celery app's Settings when
its logging is installed (``workers.logs.install``), the Settings and the provider keys
of a policy when a provider client is built (``workers.provider.client_for``). A secret
once registered stays: the redactor only grows. Token-shaped strings are redacted even
before anything is registered (``routing.redact``).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from routing.redact import ERROR_MAX_CHARS, Redactor, clip, secrets_in

if TYPE_CHECKING:
    from routing.policy import Policy

_lock = threading.Lock()
_active = Redactor()


def register(*sources: object) -> Redactor:
    """Add secrets: strings as they are, anything else (the Settings, a policy's provider
    overrides…) searched for ``SecretStr`` values (``routing.redact.secrets_in``)."""
    global _active
    found: set[str] = set()
    for source in sources:
        if isinstance(source, str):
            found.add(source)
        elif source is not None:
            found.update(secrets_in(source))
    with _lock:
        _active = _active.adding(found)
        return _active


def register_policy_keys(policy: Policy) -> Redactor:
    """Add the provider keys a policy names by environment variable (``api_key_env``)."""
    names = {p.api_key_env for p in policy.providers.values() if p.api_key_env}
    return register(*(os.environ[n] for n in sorted(names) if os.environ.get(n)))


def redactor() -> Redactor:
    return _active


def redact(text: str) -> str:
    """``text`` without any secret this process knows, nor token-shaped strings."""
    return _active(text)


def redact_error(text: str, limit: int = ERROR_MAX_CHARS) -> str:
    """Error text as stored: redacted, then cut to ``limit`` characters."""
    return clip(_active(text), limit)
