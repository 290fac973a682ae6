"""Storage over local paths and a real S3-compatible store (SeaweedFS from the fixtures).

The same behaviour tests run against both backends through the ``root`` fixture; the S3
variant is an integration test (it starts SeaweedFS once per run).
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from routing.errors import InputError, PermanentError, RetryableError, StorageError
from tests import services
from workers.settings import S3Settings
from workers.storage import Storage, is_s3, join, parquet_bytes


def s3_storage(
    endpoint: str, key: str = services.S3_KEY, secret: str = services.S3_SECRET
) -> Storage:
    return Storage(S3Settings(endpoint_url=endpoint, access_key_id=key, secret_access_key=secret))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Storage, str]:
    """A storage and an empty root URI under which a test may write anything."""
    if request.param == "local":
        return Storage(S3Settings()), str(tmp_path / "root")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("bucket")
    return s3_storage(endpoint), f"s3://{bucket}/root"


def sample_table(n: int = 5) -> pa.Table:
    return pa.table(
        {
            "prompt_id": [f"p{i}" for i in range(n)],
            "prompt": [None if i == 2 else f"prompt number {i}" for i in range(n)],
            "cost_usd": pa.array(
                [(Decimal(i) / 7).quantize(Decimal("1e-12")) for i in range(n)],
                pa.decimal128(24, 12),
            ),
            "n": pa.array(range(n), pa.int64()),
        }
    )


# ---------------------------------------------------------------- helpers


def test_join_and_is_s3() -> None:
    assert join("s3://b/root/", "/a/", "b.parquet") == "s3://b/root/a/b.parquet"
    assert join("/tmp/x", "y") == "/tmp/x/y"
    assert is_s3("s3://b/k")
    assert not is_s3("/tmp/s3://")
    assert not is_s3("file:///tmp/x")


# ---------------------------------------------------------------- listing


def test_list_files_under_prefix(backend: tuple[Storage, str]) -> None:
    storage, root = backend
    for name in [
        "in/b.parquet",
        "in/a.parquet",
        "in/sub/c.parquet",
        "in/notes.txt",
        "in/_SUCCESS",
        "in/.hidden.parquet",
        "in/_temporary/0/part.parquet",
        "in/.staging/x.parquet",
        "inx/sibling.parquet",
    ]:
        storage.write_bytes(join(root, name), b"x")

    expected = [join(root, p) for p in ("in/a.parquet", "in/b.parquet", "in/sub/c.parquet")]
    assert storage.list_files(join(root, "in"), ".parquet") == expected
    assert storage.list_files(join(root, "in") + "/", ".parquet") == expected
    assert storage.list_files(join(root, "in")) == sorted([*expected, join(root, "in/notes.txt")])


def test_list_files_hidden_names_only_count_below_the_prefix(
    backend: tuple[Storage, str],
) -> None:
    storage, root = backend
    base = join(root, "_job", ".dir", "in")
    storage.write_bytes(join(base, "a.parquet"), b"x")
    assert storage.list_files(base) == [join(base, "a.parquet")]


def test_list_files_single_file_and_missing(backend: tuple[Storage, str]) -> None:
    storage, root = backend
    uri = join(root, "one.parquet")
    storage.write_bytes(uri, b"x")
    assert storage.list_files(uri) == [uri]
    assert storage.list_files(uri, ".parquet") == [uri]
    assert storage.list_files(join(root, "missing")) == []
    assert storage.list_files(join(root, "missing.parquet")) == []


# ---------------------------------------------------------------- bytes and Parquet


def test_bytes_round_trip_and_overwrite(backend: tuple[Storage, str]) -> None:
    storage, root = backend
    uri = join(root, "deep", "er", "blob.bin")
    data = bytes(range(256)) * 1000
    assert not storage.exists(uri)
    storage.write_bytes(uri, data)
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == data
    storage.write_bytes(uri, b"second")
    assert storage.read_bytes(uri) == b"second"
    storage.write_bytes(join(root, "empty"), b"")
    assert storage.read_bytes(join(root, "empty")) == b""
    assert not storage.exists(join(root, "deep"))  # a folder/prefix is not a file


def test_read_bytes_if_any(backend: tuple[Storage, str]) -> None:
    """One request for "read it if it is there": None for a missing object or folder."""
    storage, root = backend
    uri = join(root, "maybe", "record.json")
    assert storage.read_bytes_if_any(uri) is None
    storage.write_bytes(uri, b"{}")
    assert storage.read_bytes_if_any(uri) == b"{}"
    assert storage.read_bytes_if_any(join(root, "nowhere", "x.json")) is None


def test_parquet_round_trip(backend: tuple[Storage, str]) -> None:
    storage, root = backend
    table = sample_table()
    uri = join(root, "results", "part-0.parquet")
    storage.write_parquet(uri, table)

    assert storage.read_parquet(uri).equals(table)
    assert storage.read_parquet_file(uri).equals(table)
    assert storage.read_parquet(uri, columns=["n", "cost_usd"]).equals(
        table.select(["n", "cost_usd"])
    )
    footer = storage.parquet_file(uri)
    assert footer.metadata.num_rows == table.num_rows
    assert footer.schema_arrow == table.schema
    assert footer.read_row_groups([0]).equals(table)
    assert storage.read_bytes(uri) == parquet_bytes(table)
    storage.write_parquet(uri, table, compression="snappy")  # the engine's intermediates
    assert storage.read_parquet(uri).equals(table)
    assert storage.parquet_file(uri).metadata.row_group(0).column(0).compression == "SNAPPY"


def test_read_parquet_of_a_folder_reads_every_part(backend: tuple[Storage, str]) -> None:
    storage, root = backend
    table = sample_table(6)
    storage.write_parquet(join(root, "out", "part-a.parquet"), table.slice(0, 4))
    storage.write_parquet(join(root, "out", "part-b.parquet"), table.slice(4))
    storage.write_bytes(join(root, "out", "_SUCCESS"), b"")
    got = storage.read_parquet(join(root, "out")).sort_by("n")
    assert got.equals(table)


def test_file_uri_is_a_local_path(tmp_path: Path) -> None:
    storage = Storage(S3Settings())
    storage.write_bytes(f"file://{tmp_path}/a/b.txt", b"hello")
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"hello"
    assert storage.read_bytes(f"file://{tmp_path}/a/b.txt") == b"hello"
    assert storage.list_files(f"file://{tmp_path}/a") == [str(tmp_path / "a" / "b.txt")]


# ---------------------------------------------------------------- atomic local writes


def test_local_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    storage = Storage(S3Settings())
    target = tmp_path / "out" / "part.parquet"
    for i in range(5):
        storage.write_parquet(str(target), sample_table(i + 1))
    assert os.listdir(target.parent) == ["part.parquet"]
    assert storage.read_parquet(str(target)).num_rows == 5


def test_failed_local_write_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = Storage(S3Settings())
    target = tmp_path / "manifest.json"
    storage.write_bytes(str(target), b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match=re.escape(f"cannot write {target}")):
        storage.write_bytes(str(target), b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["manifest.json"]


# ---------------------------------------------------------------- errors


def test_local_errors_are_storage_errors_naming_the_uri(tmp_path: Path) -> None:
    storage = Storage(S3Settings())
    missing = str(tmp_path / "missing.parquet")
    for call in (storage.read_bytes, storage.read_parquet, storage.parquet_file):
        with pytest.raises(StorageError, match=r"missing\.parquet") as info:
            call(missing)
        assert isinstance(info.value, RetryableError)
    (tmp_path / "file").write_bytes(b"x")
    under_a_file = str(tmp_path / "file" / "child.bin")
    with pytest.raises(StorageError, match=r"cannot write .*file/child\.bin"):
        storage.write_bytes(under_a_file, b"y")


@pytest.mark.parametrize("uri", ["s3:/bucket/x.parquet", "S3://bucket/x", "gs://b/x", "s3a://b/x"])
def test_a_uri_of_another_form_is_an_input_error_not_a_local_path(
    uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = Storage(S3Settings())
    for call in (storage.exists, storage.read_bytes, storage.list_files):
        with pytest.raises(InputError, match="use s3://bucket/key") as info:
            call(uri)
        assert isinstance(info.value, PermanentError) and uri in str(info.value)
    with pytest.raises(InputError):
        storage.write_bytes(uri, b"x")
    assert list(tmp_path.iterdir()) == []  # nothing written under a folder named "s3:"
    assert storage.resolve("file:///tmp/x")[1] == "/tmp/x"
    assert storage.resolve("relative/x")[1] == str(tmp_path / "relative" / "x")


def test_the_region_follows_the_aws_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, the region is boto3's: AWS_REGION, AWS_DEFAULT_REGION, the config file."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert S3Settings().resolved_region() == "us-east-1"
    config = tmp_path / "config"
    config.write_text("[default]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert S3Settings().resolved_region() == "ap-south-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    assert S3Settings().resolved_region() == "eu-north-1"
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert S3Settings().resolved_region() == "eu-west-3"
    assert S3Settings(region="us-west-2").resolved_region() == "us-west-2"  # the setting wins
    client = S3Settings().aws_client("s3", None)
    assert client.meta.region_name == "eu-west-3"
    assert Storage(S3Settings())._s3fs.region == "eu-west-3"


@pytest.mark.integration
def test_a_missing_bucket_is_named(s3_endpoint: str, bucket: str) -> None:
    from workers.jobs.plan import read_footers

    storage = s3_storage(s3_endpoint)
    assert storage.missing_bucket("s3://no-such-bucket-here/in/x.parquet") == "no-such-bucket-here"
    assert storage.missing_bucket(f"s3://{bucket}/in/x.parquet") is None
    assert storage.missing_bucket("/local/x") is None
    with pytest.raises(InputError, match="the bucket 'no-such-bucket-here' does not exist"):
        read_footers(storage, "s3://no-such-bucket-here/in/")
    with pytest.raises(InputError, match="no such file or folder"):
        read_footers(storage, f"s3://{bucket}/not/there/")


@pytest.mark.integration
def test_s3_missing_objects(s3_endpoint: str, bucket: str) -> None:
    storage = s3_storage(s3_endpoint)
    uri = f"s3://{bucket}/nope/missing.parquet"
    assert not storage.exists(uri)
    for call in (storage.read_bytes, storage.read_parquet, storage.parquet_file):
        with pytest.raises(StorageError, match=re.escape(f"s3://{bucket}/nope/missing.parquet")):
            call(uri)


@pytest.mark.integration
def test_s3_bad_credentials_are_storage_errors_naming_the_uri(
    s3_endpoint: str, bucket: str
) -> None:
    s3_storage(s3_endpoint).write_bytes(f"s3://{bucket}/in/a.parquet", b"x")
    storage = s3_storage(s3_endpoint, key="wrong-key", secret="wrong-secret")
    uri = f"s3://{bucket}/in/a.parquet"
    calls = {
        "read": lambda: storage.read_bytes(uri),
        "write": lambda: storage.write_bytes(f"s3://{bucket}/in/b.parquet", b"y"),
        "list": lambda: storage.list_files(f"s3://{bucket}/in"),
        "exists": lambda: storage.exists(uri),
        "footer": lambda: storage.parquet_file(uri),
    }
    for name, call in calls.items():
        with pytest.raises(StorageError, match=f"s3://{bucket}/in") as info:
            call()
        assert "cannot" in str(info.value), name
    # nothing was written with the wrong key
    assert s3_storage(s3_endpoint).list_files(f"s3://{bucket}/in") == [uri]


@pytest.mark.integration
def test_s3_unreachable_endpoint_is_a_storage_error() -> None:
    storage = s3_storage(f"http://127.0.0.1:{services.free_port()}")
    with pytest.raises(StorageError, match=re.escape("s3://bucket/key")):
        storage.read_bytes("s3://bucket/key")
