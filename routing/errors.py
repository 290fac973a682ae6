"""The exception tree of batch-router.

Every error the project raises on purpose is one of these. The split that matters
is *retryable* (the same call may succeed later) versus *permanent* (retrying is
waste; the row or file is reported with the reason)::

    BatchRouterError
    ├── PermanentError
    │   ├── InputError            a whole input file is unusable (missing column, wrong type)
    │   ├── PolicyError           the routing policy file is invalid
    │   ├── ConfigError           settings are inconsistent (e.g. a provider with no URL)
    │   ├── JobConflictError      a job with this id is already running
    │   ├── JobFailedError        a job ended in state failed
    │   └── ProviderPermanentError  400/401/403/404, content filter: do not retry
    └── RetryableError
        ├── ProviderRetryableError  429, 5xx, timeouts, connection errors
        └── StorageError          object store / filesystem trouble (Celery retries these)

Inside a job's Celery task, what is not infrastructure trouble (``StorageError``, Redis,
the broker, ``OSError``) is permanent *for the job*, whatever its class (``InputError``,
``PolicyError``, pyarrow's ``ArrowInvalid``, a bug): the task is not retried and the job
fails once with the reason, which ``batch-router run`` reports as a ``JobFailedError``
(docs/resilience.md, "Jobs that fail").
"""

from __future__ import annotations


class BatchRouterError(Exception):
    """Base of every batch-router error."""


class PermanentError(BatchRouterError):
    """Retrying will not help."""


class RetryableError(BatchRouterError):
    """The same operation may succeed later."""


class InputError(PermanentError):
    """An input file is rejected whole; the message names the file and the column."""


class PolicyError(PermanentError):
    """The routing policy is invalid."""


class ConfigError(PermanentError):
    """Settings are missing or inconsistent."""


class JobConflictError(PermanentError):
    """A job id is reused while that job is still running."""


class JobFailedError(PermanentError):
    """A job finished in the ``failed`` state."""


class ProviderPermanentError(PermanentError):
    """A provider refused the request in a way retrying cannot fix."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProviderRetryableError(RetryableError):
    """A provider failed transiently; ``retry_after`` is its hint in seconds, if any."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class StorageError(RetryableError):
    """Reading or writing the object store failed."""
