"""The one Settings object, read from the environment (prefix ``BATCH_ROUTER_``).

Nested values use ``__``: ``BATCH_ROUTER_S3__ENDPOINT_URL=http://127.0.0.1:8333``.
A ``.env`` file in the working directory is read too. Secrets are ``SecretStr`` and are
never logged. Build it once at the edge (CLI, worker start) and pass it down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class S3Settings(BaseModel):
    """An S3-compatible object store. Unset credentials fall back to the AWS defaults."""

    endpoint_url: str | None = None
    region: str | None = Field(
        None,
        description="the store's region; unset: AWS_REGION, AWS_DEFAULT_REGION, the AWS "
        "config file's region (boto3's chain), else us-east-1",
    )
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    sse: Literal["AES256", "aws:kms"] | None = Field(
        None, description="server-side encryption requested on every object written"
    )
    sse_kms_key_id: str | None = Field(None, description="KMS key for sse=aws:kms")

    def resolved_region(self) -> str:
        """The region used for the store and every AWS client: :attr:`region`, else the
        environment's (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the AWS config file: what
        boto3 reads), else ``us-east-1``."""
        if self.region:
            return self.region
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            if os.environ.get(name):
                return os.environ[name]
        import botocore.session

        configured = botocore.session.get_session().get_config_variable("region")
        return str(configured) if configured else "us-east-1"

    def aws_client(self, service: str, endpoint_url: str | None) -> Any:
        """A boto3 client for ``service`` with this store's region and credentials (unset:
        the AWS defaults)."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=endpoint_url,
            region_name=self.resolved_region(),
            aws_access_key_id=self.access_key_id.get_secret_value() if self.access_key_id else None,
            aws_secret_access_key=(
                self.secret_access_key.get_secret_value() if self.secret_access_key else None
            ),
        )

    def sse_args(self) -> dict[str, str]:
        """boto3 arguments (PutObject, CopyObject) asking for the configured server-side
        encryption; empty when none is configured."""
        if self.sse is None:
            return {}
        args: dict[str, str] = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args


class RedisTls(BaseModel):
    """TLS options for ``rediss://`` URLs (broker and state Redis alike), added to the
    URL as the query parameters redis-py and kombu read; a parameter already in the URL
    wins. ``cert_reqs``: verify the server's certificate (``required``) or not."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    cert_reqs: Literal["required", "optional", "none"] = "required"

    def apply(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "rediss":
            return url
        wanted = {
            "ssl_cert_reqs": self.cert_reqs,
            "ssl_ca_certs": self.ca_file,
            "ssl_certfile": self.cert_file,
            "ssl_keyfile": self.key_file,
        }
        query = dict(parse_qsl(parts.query))
        for key, value in wanted.items():
            if value is not None and key not in query:
                query[key] = str(value)
        return urlunsplit(parts._replace(query=urlencode(query)))


class ProviderOverride(BaseModel):
    """Per-provider deployment values that do not belong in the policy file."""

    base_url: str | None = None
    api_key: SecretStr | None = None


class Settings(BaseSettings):
    """Everything a process of batch-router needs to know about its deployment."""

    model_config = SettingsConfigDict(
        env_prefix="BATCH_ROUTER_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    broker_url: SecretStr | None = Field(
        None, description="Redis URL of the Celery broker; unset → local executor"
    )
    redis_url: SecretStr | None = Field(
        None, description="Redis URL for job state; defaults to broker_url"
    )
    s3: S3Settings = S3Settings()
    redis_tls: RedisTls = RedisTls()
    providers: dict[str, ProviderOverride] = Field(default_factory=dict)
    policy_path: Path | None = Field(None, description="routing policy YAML; unset → default")
    output: str | None = Field(None, description="default output root (local path or s3://)")
    rows_per_chunk: int = Field(2000, gt=0, le=1_000_000)
    inline_batch_max_bytes: int = Field(
        256_000, ge=0, description="routed batches larger than this travel as staged Parquet"
    )
    visibility_timeout_s: int = Field(
        3600, gt=0, description="broker redelivery timeout; longer than the longest task"
    )
    task_time_limit_s: int | None = Field(
        None,
        gt=0,
        description="hard limit of one task: its pool process is killed past it and the "
        "message redelivered (Celery task_time_limit); unset: none",
    )
    task_soft_time_limit_s: int | None = Field(
        None,
        gt=0,
        description="soft limit of one task: SoftTimeLimitExceeded is raised in it, which "
        "fails it like any error (Celery task_soft_time_limit); unset: none",
    )
    job_ttl_s: int = Field(7 * 86400, gt=0)
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    request_timeout_s: float = Field(60.0, gt=0)
    # drop folder (`batch-router watch`, producer/watch/watcher.py) and nightly jobs
    # (workers/nightly.py)
    watch_poll_s: float = Field(10.0, gt=0, description="seconds between inbox listings")
    watch_lease_s: int = Field(
        60, ge=5, description="a watcher's claim on a file expires this long after it dies"
    )
    watch_max_jobs: int = Field(4, gt=0, description="files one watcher runs at once")
    watch_queue_url: str | None = Field(None, description="SQS queue of S3 events (sqs mode)")
    sqs_endpoint_url: str | None = Field(None, description="SQS endpoint; unset → AWS")
    schedule: Path | None = Field(None, description="nightly schedules YAML; unset → none")
    nightly_tick_s: float = Field(30.0, gt=0, description="beat checks the schedules this often")

    @model_validator(mode="after")
    def _time_limits_fit(self) -> Settings:
        """A soft limit below the hard one, both below the visibility timeout (else the
        broker hands a task that still runs to a second worker)."""
        hard, soft = self.task_time_limit_s, self.task_soft_time_limit_s
        if hard is not None and soft is not None and soft >= hard:
            raise ValueError(
                f"task_soft_time_limit_s ({soft}) must be below task_time_limit_s ({hard})"
            )
        for name, limit in (("task_time_limit_s", hard), ("task_soft_time_limit_s", soft)):
            if limit is not None and limit >= self.visibility_timeout_s:
                raise ValueError(
                    f"{name} ({limit}) must be below visibility_timeout_s "
                    f"({self.visibility_timeout_s}): a task still running would be redelivered"
                )
        return self

    @property
    def distributed(self) -> bool:
        return self.broker_url is not None

    def broker(self) -> str:
        if self.broker_url is None:
            raise ValueError("no broker configured (BATCH_ROUTER_BROKER_URL)")
        return self.redis_tls.apply(self.broker_url.get_secret_value())

    def state_redis(self) -> str:
        url = self.redis_url or self.broker_url
        if url is None:
            raise ValueError("no Redis configured (BATCH_ROUTER_REDIS_URL / BROKER_URL)")
        return self.redis_tls.apply(url.get_secret_value())
