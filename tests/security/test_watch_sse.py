"""The drop folder writes under the configured server-side encryption too: the input it
moves to ``processed/`` / ``failed/`` and the ``error.json`` it writes (real SeaweedFS)."""

from __future__ import annotations

import pytest

from producer.watch.store import DropFolder, Inbox, s3_client
from tests import services
from workers.settings import S3Settings, Settings

pytestmark = [pytest.mark.security, pytest.mark.integration]


def test_moved_inputs_and_error_files_are_encrypted(s3_endpoint: str, bucket: str) -> None:
    s3 = S3Settings(
        endpoint_url=s3_endpoint,
        access_key_id=services.S3_KEY,
        secret_access_key=services.S3_SECRET,
        sse="AES256",
    )
    client = s3_client(Settings(s3=s3))
    client.put_object(Bucket=bucket, Key="inbox/acme/night.parquet", Body=b"PAR1 not really")
    inbox = Inbox(client, DropFolder.parse(f"s3://{bucket}/inbox/"), s3.sse_args())
    (dropped,) = list(inbox.list())

    moved = inbox.move(dropped, inbox.folder.destination("failed", dropped, "job-1"))
    error = inbox.write_error(dropped, "job-1", {"error": "not a readable Parquet file"})

    for uri in (moved, error):
        key = uri.removeprefix(f"s3://{bucket}/")
        assert client.head_object(Bucket=bucket, Key=key).get("ServerSideEncryption") == "AES256"
    assert list(inbox.list()) == []  # the input left the inbox
