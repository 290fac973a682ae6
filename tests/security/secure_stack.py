"""A hardened deployment for the security tests: Redis with a password (and TLS only, when
this ``redis-server`` build has it), S3 with credentials and server-side encryption, a
provider API key, and real Celery workers logging JSON at DEBUG."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests import services

REDIS_PASSWORD = "rp-Vx9q7Lm2Zk4Tt8Qw"
API_KEY = "sk-live-Hq3Nb8Rc1Yd6Wf0Pz"
WRONG_PASSWORD = "wrong-Jj5Kk2Ll9Mm0Nn7"


@dataclass
class SecureRedis:
    url: str  # what the deployment uses: rediss:// when TLS is available
    ca_file: Path | None
    tls: bool
    no_tls_reason: str | None
    proc: services.Proc


def make_cert(workdir: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate for 127.0.0.1 (None: no openssl here)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = workdir / "redis-cert.pem", workdir / "redis-key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _start(exe: str, workdir: Path, cert: tuple[Path, Path] | None) -> tuple[str, services.Proc]:
    """redis-server with a password; TLS only (no plain port) when ``cert`` is given."""
    port = services.free_port()
    args = [exe, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    args += ["--requirepass", REDIS_PASSWORD]
    if cert is not None:
        args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert[0])]
        args += ["--tls-key-file", str(cert[1]), "--tls-ca-cert-file", str(cert[0])]
        args += ["--tls-auth-clients", "no"]
    else:
        args += ["--port", str(port)]
    name = "secure-redis-tls" if cert else "secure-redis"
    proc = services.start(args, workdir / f"{name}.log", name)
    scheme = "rediss" if cert else "redis"
    return f"{scheme}://:{REDIS_PASSWORD}@127.0.0.1:{port}/0", proc


def start_secure_redis(workdir: Path) -> SecureRedis:
    """Redis with a password, over TLS only when this build supports it."""
    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not found")
    cert = make_cert(workdir)
    reason = None if cert else "openssl not found: cannot make a test certificate"
    if cert is not None:
        url, proc = _start(exe, workdir, cert)
        tls = {"ssl_ca_certs": str(cert[0]), "ssl_cert_reqs": "required"}
        try:
            services.wait_until(lambda: redis.Redis.from_url(url, **tls).ping(), 10, "redis", proc)
            return SecureRedis(url, cert[0], True, None, proc)
        except (TimeoutError, RuntimeError):
            proc.stop()
            reason = f"this redis-server build has no TLS support: {proc.log_tail(300).strip()}"
    url, proc = _start(exe, workdir, None)
    services.wait_until(lambda: redis.Redis.from_url(url).ping(), 20, "redis", proc)
    return SecureRedis(url, None, False, reason, proc)


def secure_env(redis: SecureRedis, s3_endpoint: str, sim_url: str) -> dict[str, str]:
    env = services.deployment_env(
        redis.url,
        s3_endpoint,
        sim_url,
        BATCH_ROUTER_PROVIDERS__SIM__API_KEY=API_KEY,
        BATCH_ROUTER_S3__SSE="AES256",
        BATCH_ROUTER_ROWS_PER_CHUNK="100",
        BATCH_ROUTER_INLINE_BATCH_MAX_BYTES="20000",
        LOG_FORMAT="json",
    )
    if redis.ca_file is not None:
        env["BATCH_ROUTER_REDIS_TLS__CA_FILE"] = str(redis.ca_file)
    return env


def start_worker(workdir: Path, queues: list[str], env: dict[str, str], name: str) -> services.Proc:
    """A ``celery worker`` logging at DEBUG (everything a log could leak)."""
    cmd = [
        sys.executable, "-m", "celery", "-A", "workers.worker", "worker", "-Q", ",".join(queues),
        "-n", f"{name}@%h", "--concurrency", "1", "--loglevel", "DEBUG",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    return services.start(
        cmd, workdir / f"secure-worker-{name}.log", f"secure-{name}", env={**os.environ, **env}
    )
