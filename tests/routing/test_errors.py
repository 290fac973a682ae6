"""The exception tree: retryable versus permanent."""

from __future__ import annotations

import pytest

from routing import errors
from routing.errors import (
    BatchRouterError,
    ConfigError,
    InputError,
    PermanentError,
    PolicyError,
    ProviderPermanentError,
    ProviderRetryableError,
    RetryableError,
    StorageError,
)


@pytest.mark.parametrize("error", [InputError, PolicyError, ConfigError, ProviderPermanentError])
def test_permanent_errors(error: type[BatchRouterError]) -> None:
    assert issubclass(error, PermanentError)
    assert not issubclass(error, RetryableError)


@pytest.mark.parametrize("error", [ProviderRetryableError, StorageError])
def test_retryable_errors(error: type[BatchRouterError]) -> None:
    assert issubclass(error, RetryableError)
    assert not issubclass(error, PermanentError)


def test_one_root() -> None:
    assert issubclass(PermanentError, BatchRouterError)
    assert issubclass(RetryableError, BatchRouterError)
    assert issubclass(BatchRouterError, Exception)


def test_every_error_is_drawn_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    for name, value in vars(errors).items():
        if isinstance(value, type) and issubclass(value, BatchRouterError):
            assert name in doc, name


def test_provider_errors_carry_status_and_retry_after() -> None:
    slow = ProviderRetryableError("rate limited", status=429, retry_after=2.5)
    assert (str(slow), slow.status, slow.retry_after) == ("rate limited", 429, 2.5)
    assert ProviderRetryableError("timeout").retry_after is None
    refused = ProviderPermanentError("bad request", status=400)
    assert (str(refused), refused.status) == ("bad request", 400)
