"""The drop folder in the object store: its layout, listing, and moving files out of it.

Layout, for an inbox ``s3://B/P/inbox/`` (the two other folders are its siblings)::

    s3://B/P/inbox/<tenant>/<name>                       dropped by users
    s3://B/P/processed/<tenant>/<job_id>/<name>          after its job succeeded
    s3://B/P/failed/<tenant>/<job_id>/<name>             rejected input or failed job
    s3://B/P/failed/<tenant>/<job_id>/error.json         why
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from producer.watch.claims import DropFile
from routing.names import NO_TENANT_FOLDER
from workers.settings import Settings

NO_TENANT = NO_TENANT_FOLDER  # a hidden name (leading "_"), and no tenant may take it


class ReplacedError(Exception):
    """The inbox holds another version of the file now: nothing was copied or deleted."""


def s3_client(settings: Settings) -> Any:
    return settings.s3.aws_client("s3", settings.s3.endpoint_url)


def _hidden(relative: str) -> bool:
    """Skipped like pyarrow's dataset discovery: any path part starting with ``.``/``_``."""
    return any(part.startswith((".", "_")) for part in relative.split("/"))


@dataclass(frozen=True)
class DropFolder:
    """An inbox prefix and its ``processed/`` and ``failed/`` siblings."""

    bucket: str
    inbox: str  # key prefix, ending with "/"

    @classmethod
    def parse(cls, uri: str) -> DropFolder:
        if not uri.startswith("s3://"):
            raise ValueError(f"{uri}: the drop folder must be an s3:// prefix")
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        if not bucket or not prefix:
            raise ValueError(f"{uri}: give a folder inside the bucket, e.g. s3://{bucket}/inbox/")
        return cls(bucket, prefix + "/")

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.inbox}"

    def _sibling(self, name: str) -> str:
        parent = self.inbox.rstrip("/").rpartition("/")[0]
        return f"{parent}/{name}/" if parent else f"{name}/"

    def contains(self, key: str) -> bool:
        rel = key.removeprefix(self.inbox)
        return key.startswith(self.inbox) and bool(rel) and not key.endswith("/")

    def tenant_and_name(self, key: str) -> tuple[str | None, str]:
        """``inbox/<tenant>/<name…>`` → (tenant, name); a file directly in the inbox has
        no tenant."""
        tenant, sep, name = key.removeprefix(self.inbox).partition("/")
        return (tenant, name) if sep and tenant and name else (None, tenant)

    def destination(self, outcome: str, f: DropFile, job_id: str) -> str:
        """The key ``f`` is moved to: ``processed/…`` or ``failed/…`` (``outcome``)."""
        tenant, name = self.tenant_and_name(f.key)
        return f"{self._sibling(outcome)}{tenant or NO_TENANT}/{job_id}/{name}"

    def error_key(self, f: DropFile, job_id: str) -> str:
        tenant, _ = self.tenant_and_name(f.key)
        return f"{self._sibling('failed')}{tenant or NO_TENANT}/{job_id}/error.json"


class Inbox:
    """ListObjectsV2, HEAD and move on one drop folder."""

    def __init__(self, client: Any, folder: DropFolder, sse: dict[str, str] | None = None) -> None:
        self._c = client
        self.folder = folder
        self._sse = sse or {}  # server-side encryption of what it writes (S3Settings.sse_args)

    def list(self) -> Iterator[DropFile]:
        """Every visible file in the inbox now, as ``(key, ETag, size)``."""
        pages = self._c.get_paginator("list_objects_v2").paginate(
            Bucket=self.folder.bucket, Prefix=self.folder.inbox
        )
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if self.folder.contains(key) and not _hidden(key.removeprefix(self.folder.inbox)):
                    yield DropFile(self.folder.bucket, key, obj["ETag"].strip('"'), obj["Size"])

    def head(self, key: str) -> DropFile | None:
        """The current version of ``key``, or None if it is gone."""
        try:
            obj = self._c.head_object(Bucket=self.folder.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return DropFile(self.folder.bucket, key, obj["ETag"].strip('"'), obj["ContentLength"])

    def move(self, f: DropFile, dest_key: str) -> str:
        """Copy exactly the version ``f`` to ``dest_key`` (``CopySourceIfMatch``, which the
        managed copy also applies to a multipart copy's HEAD and parts), then delete it
        from the inbox unless it was replaced meanwhile (a new version is a new file).
        Returns the destination URI; ReplacedError if ``f`` was already replaced."""
        source = {"Bucket": f.bucket, "Key": f.key}
        pinned = {**self._sse, "CopySourceIfMatch": f'"{f.etag}"'}
        try:
            self._c.copy(source, f.bucket, dest_key, ExtraArgs=pinned)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 412 or exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                raise ReplacedError(f"{f.uri}: replaced since ETag {f.etag}") from exc
            raise
        current = self.head(f.key)
        if current is not None and current.etag == f.etag:
            self._c.delete_object(Bucket=f.bucket, Key=f.key)
        return f"s3://{f.bucket}/{dest_key}"

    def write_error(self, f: DropFile, job_id: str, detail: dict[str, Any]) -> str:
        key = self.folder.error_key(f, job_id)
        body = json.dumps(detail, indent=2).encode()
        self._c.put_object(
            Bucket=f.bucket, Key=key, Body=body, ContentType="application/json", **self._sse
        )
        return f"s3://{f.bucket}/{key}"
