"""Find text in every object of a job: Parquet decoded (its pages are compressed, so a
raw grep would miss text), every other object as raw bytes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


def readable(name: str, data: bytes) -> bytes:
    """The object's content as searchable bytes: a Parquet file's rows and schema as JSON
    (plus its raw bytes: footers hold metadata), anything else as is."""
    if not name.endswith(".parquet"):
        return data
    table = pq.read_table(io.BytesIO(data))
    rows = json.dumps(table.to_pylist(), default=str, ensure_ascii=False)
    meta = json.dumps(str(table.schema.metadata), ensure_ascii=False)
    return data + rows.encode() + meta.encode()


def local_objects(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield str(path), path.read_bytes()


def s3_objects(client: Any, bucket: str, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            yield f"s3://{bucket}/{item['Key']}", body


def hits(objects: Iterable[tuple[str, bytes]], needles: Iterable[str]) -> dict[str, list[str]]:
    """needle → the objects containing it (only needles found)."""
    wanted = [(n, n.encode()) for n in needles]
    found: dict[str, list[str]] = {}
    for name, data in objects:
        text = readable(name, data)
        for needle, raw in wanted:
            if raw in text:
                found.setdefault(needle, []).append(name)
    return found
