"""One storage interface over local paths and S3-compatible object stores.

URIs are ``s3://bucket/key`` or local paths (``file://`` accepted). pyarrow's
filesystems do the I/O, so Parquet row groups are read with ranged GETs and any
S3-compatible store works through ``endpoint_url``. Whole objects are written from
memory in one call, and local files through a temporary name and a rename, so a reader
never sees a partial object.

With ``s3.sse`` set, every object is written by one boto3 ``PutObject`` that asks for
server-side encryption (``AES256`` or ``aws:kms`` with ``s3.sse_kms_key_id``): pyarrow's
S3 filesystem sends no SSE headers.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

from routing.errors import InputError, StorageError
from workers.settings import S3Settings


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # two letters or more: "C:" is a drive


class _S3Client(Protocol):
    """The one call made on the boto3 S3 client (boto3 ships no types)."""

    def put_object(self, **kwargs: object) -> object: ...


def join(root: str, *parts: str) -> str:
    """Join URI parts with ``/`` (works for s3:// and local paths)."""
    out = root.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


@dataclass(frozen=True)
class Storage:
    """Reads and writes objects and Parquet by URI."""

    s3: S3Settings

    @cached_property
    def _s3fs(self) -> fs.S3FileSystem:
        s3 = self.s3
        kwargs: dict[str, object] = {"region": s3.resolved_region()}
        if s3.endpoint_url:
            scheme, _, host = s3.endpoint_url.partition("://")
            kwargs.update(endpoint_override=host, scheme=scheme)
        if s3.access_key_id and s3.secret_access_key:
            kwargs.update(
                access_key=s3.access_key_id.get_secret_value(),
                secret_key=s3.secret_access_key.get_secret_value(),
            )
        return fs.S3FileSystem(**kwargs)

    @cached_property
    def _boto(self) -> _S3Client:
        client: _S3Client = self.s3.aws_client("s3", self.s3.endpoint_url)
        return client

    def _put_encrypted(self, path: str, data: bytes) -> None:
        """One PutObject with the configured server-side encryption."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = path.partition("/")
        try:
            self._boto.put_object(Bucket=bucket, Key=key, Body=data, **self.s3.sse_args())
        except (BotoCoreError, ClientError) as exc:
            raise OSError(f"encrypted put failed: {exc}") from exc

    def resolve(self, uri: str) -> tuple[fs.FileSystem, str]:
        """The filesystem and path of ``uri``: ``s3://bucket/key``, ``file://path`` or a
        local path. Anything else that looks like a URI (``s3:/b/k``, ``S3://``, ``gs://``)
        is an :class:`InputError` naming the forms taken, never a local path by that
        name."""
        if is_s3(uri):
            return self._s3fs, uri.removeprefix("s3://")
        if not uri.startswith("file://") and _SCHEME.match(uri):
            raise InputError(
                f"{uri!r}: not a URI batch-router reads — use s3://bucket/key, file:///path "
                "or a local path"
            )
        path = uri.removeprefix("file://")
        return fs.LocalFileSystem(), str(Path(path).absolute())

    def missing_bucket(self, uri: str) -> str | None:
        """The bucket of an ``s3://`` URI when that bucket does not exist (else None)."""
        if not is_s3(uri):
            return None
        bucket = uri.removeprefix("s3://").split("/", 1)[0]
        try:
            found = self._s3fs.get_file_info(bucket).type != fs.FileType.NotFound
        except OSError:
            return None  # cannot tell (no rights to look): say nothing more
        return None if found else bucket

    def list_files(self, uri: str, suffix: str = "") -> list[str]:
        """Every file under ``uri`` (a prefix/folder, or one file), sorted, as URIs."""
        filesystem, path = self.resolve(uri)
        try:
            info = filesystem.get_file_info(path)
            if info.type == fs.FileType.File:
                return [uri]
            if info.type == fs.FileType.NotFound:
                return []
            infos = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
        except OSError as exc:
            raise StorageError(f"cannot list {uri}: {exc}") from exc
        prefix = "s3://" if is_s3(uri) else ""
        base = len(path.rstrip("/")) + 1
        return sorted(
            prefix + i.path
            for i in infos
            if i.type == fs.FileType.File and i.path.endswith(suffix) and not _hidden(i.path[base:])
        )

    def exists(self, uri: str) -> bool:
        filesystem, path = self.resolve(uri)
        try:
            return bool(filesystem.get_file_info(path).type == fs.FileType.File)
        except OSError as exc:
            raise StorageError(f"cannot check {uri}: {exc}") from exc

    def size(self, uri: str) -> int:
        """The size of the object / file at ``uri`` in bytes."""
        filesystem, path = self.resolve(uri)
        try:
            info = filesystem.get_file_info(path)
        except OSError as exc:
            raise StorageError(f"cannot check {uri}: {exc}") from exc
        if info.type != fs.FileType.File or info.size is None:
            raise StorageError(f"cannot check {uri}: not a file")
        return int(info.size)

    def read_bytes(self, uri: str) -> bytes:
        data = self.read_bytes_if_any(uri)
        if data is None:
            raise StorageError(f"cannot read {uri}: no such file or object")
        return data

    def read_bytes_if_any(self, uri: str) -> bytes | None:
        """The object / file at ``uri``, or None when there is none (one request: no
        separate existence check)."""
        filesystem, path = self.resolve(uri)
        try:
            with filesystem.open_input_stream(path) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc}") from exc

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Publish ``data`` at ``uri`` whole (never a partial object)."""
        filesystem, path = self.resolve(uri)
        try:
            if isinstance(filesystem, fs.LocalFileSystem):
                _write_local(Path(path), data)
                return
            if self.s3.sse is not None:
                self._put_encrypted(path, data)
                return
            with filesystem.open_output_stream(path) as stream:
                stream.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write {uri}: {exc}") from exc

    def delete(self, uri: str) -> None:
        """Remove the object / file at ``uri`` (absent already: nothing to do)."""
        filesystem, path = self.resolve(uri)
        try:
            filesystem.delete_file(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot delete {uri}: {exc}") from exc

    def parquet_file(self, uri: str) -> pq.ParquetFile:
        """Open a Parquet file for footer reads and row-group reads."""
        filesystem, path = self.resolve(uri)
        try:
            return pq.ParquetFile(filesystem.open_input_file(path))
        except OSError as exc:
            raise StorageError(f"cannot open {uri}: {exc}") from exc

    def read_parquet(self, uri: str, columns: list[str] | None = None) -> pa.Table:
        filesystem, path = self.resolve(uri)
        try:
            return pq.read_table(path, filesystem=filesystem, columns=columns)
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc}") from exc

    def read_parquet_file(self, uri: str) -> pa.Table:
        """One Parquet file (no dataset discovery: one request fewer than
        :meth:`read_parquet` on an object store)."""
        filesystem, path = self.resolve(uri)
        try:
            with filesystem.open_input_file(path) as handle:
                return pq.ParquetFile(handle).read()
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc}") from exc

    def write_parquet(self, uri: str, table: pa.Table, compression: str = "zstd") -> None:
        """Serialise ``table`` in memory, then publish it whole (``compression``: zstd for
        what is kept; snappy, ~3x cheaper to write a small file, for intermediates)."""
        self.write_bytes(uri, parquet_bytes(table, compression))


def _hidden(relative: str) -> bool:
    """A file below the listed prefix is hidden when any part of its path under that
    prefix starts with ``.`` or ``_`` (``_SUCCESS``, ``_temporary/…``, ``.x.tmp``), as in
    pyarrow's dataset discovery (which :meth:`Storage.read_parquet` uses)."""
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def parquet_bytes(table: pa.Table, compression: str = "zstd") -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue()


def _write_local(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
