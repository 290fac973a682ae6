"""workers/connections.py: one Redis client per URL and options in a process, TLS options
from Settings, nothing inherited across a fork. No server needed (clients connect lazily)."""

from __future__ import annotations

import os

from pydantic import SecretStr

from workers import connections
from workers.settings import RedisTls, Settings


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_one_client_per_url_and_options() -> None:
    url = "redis://127.0.0.1:1/3"
    assert connections.client(url) is connections.client(url)
    assert connections.client(url) is not connections.client(url, decode_responses=False)
    assert connections.client(url) is not connections.client(url, socket_timeout=5)
    assert connections.client(url).get_connection_kwargs()["decode_responses"] is True


def test_state_and_broker_clients_come_from_settings_with_tls() -> None:
    settings = _settings(
        broker_url=SecretStr("rediss://127.0.0.1:1/0"),
        redis_url=SecretStr("rediss://127.0.0.1:1/1"),
        redis_tls=RedisTls(ca_file="/etc/ssl/ca.pem"),
    )
    state = connections.state_client(settings).get_connection_kwargs()
    assert state["db"] == 1 and state["ssl_ca_certs"] == "/etc/ssl/ca.pem"
    broker = connections.broker_client(settings, socket_timeout=5).get_connection_kwargs()
    assert broker["db"] == 0 and broker["socket_timeout"] == 5
    assert broker["ssl_cert_reqs"] == "required"


def test_a_forked_child_opens_its_own_clients() -> None:
    parent = connections.client("redis://127.0.0.1:1/4")
    pid = os.fork()
    if pid == 0:  # the child: a new client, not the parent's
        os._exit(0 if connections.client("redis://127.0.0.1:1/4") is not parent else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert connections.client("redis://127.0.0.1:1/4") is parent
