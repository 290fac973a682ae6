"""routing.redact: known secrets in every form they take, token-shaped strings whoever
owns them, nothing else touched; and the Settings' secrets found without listing them."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from pydantic import BaseModel, SecretStr

from routing.redact import (
    MIN_SECRET_CHARS,
    REDACTED,
    Redactor,
    clip,
    secrets_in,
    url_secrets,
)
from workers.settings import ProviderOverride, S3Settings, Settings

pytestmark = pytest.mark.security

SECRET = "pa$s/w'o\"rd:Hq3N@b8"


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe=""),
        json.dumps(SECRET)[1:-1],
        repr(SECRET)[1:-1],
    ],
)
def test_a_known_secret_is_redacted_in_each_form_it_takes(form: str) -> None:
    text = f"error: got {form} in the body"
    out = Redactor([SECRET])(text)
    assert form not in out and REDACTED in out
    assert out.startswith("error: got ") and out.endswith(" in the body")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abcDEF0123456789xyz", "abcDEF0123456789xyz"),
        ("{'authorization': 'Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig'}", "eyJhbGciOiJIUzI1NiJ9"),
        ("authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
        ("x-api-key: 0123456789abcdef0123", "0123456789abcdef0123"),
        ('{"api_key": "k_live_abcdef987"}', "k_live_abcdef987"),
        ("X-Goog-Api-Key=Qwertyuiop12", "Qwertyuiop12"),
        ("login failed, password=hunter2hunter2", "hunter2hunter2"),
        ("Error 111 connecting to redis://:s3cr3t-pw@redis:6379/0", "s3cr3t-pw"),
        ("https://user:pa55word@proxy.example/v1", "pa55word"),
        ("Incorrect API key provided: sk-proj-AbCdEf123456", "sk-proj-AbCdEf123456"),
        ("key sk-ant-api03-Zz9_Yy8-Xx7 rejected", "sk-ant-api03-Zz9_Yy8-Xx7"),
        ("xai-AbCdEf12345678 is not valid", "xai-AbCdEf12345678"),
        ("token gsk_AbCdEf12345678", "gsk_AbCdEf12345678"),
        ("(hf_AbCdEf12345678)", "hf_AbCdEf12345678"),
        ("Authorization: Token 9f8e7d6c5b4a", "9f8e7d6c5b4a"),
        ("key=AIzaSyA-1234567890abcdefghijk", "AIzaSyA-1234567890abcdefghijk"),
        ("AccessKeyId AKIAIOSFODNN7EXAMPLE unknown", "AKIAIOSFODNN7EXAMPLE"),
    ],
)
def test_token_shaped_strings_are_redacted_when_no_setting_holds_them(
    text: str, secret: str
) -> None:
    out = Redactor()(text)
    assert secret not in out, out
    assert REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "retryable provider error (status 429): Rate limit reached for requests (simulated).",
        "APIConnectionError: Connection error. (Cannot connect to host 127.0.0.1:8000 ssl:default)",
        "GET http://127.0.0.1:8000/v1/chat/completions",
        "redis://redis:6379/0 is unreachable",
        "provider 'x': no API key (set SIM_API_KEY or BATCH_ROUTER_PROVIDERS__X__API_KEY)",
        "a risk-assessment of the desk_lamp_holders, task-sent events",
        "malformed chat-completions response: KeyError('choices')",
        "the Bearer of bad news",
        "invalid token provided; token mismatch",
    ],
)
def test_ordinary_error_text_is_left_alone(text: str) -> None:
    assert Redactor(["unrelated-secret"])(text) == text


def test_redaction_is_idempotent() -> None:
    redactor = Redactor(["Qq1Ww2Ee3Rr4"])
    text = (
        "x-api-key: Qq1Ww2Ee3Rr4; Authorization: Bearer sk-abc12345678; "
        "redis://:pw-123456@h:1/0; 'api_key': 'zzzzzzzz'"
    )
    once = redactor(text)
    assert redactor(once) == once
    assert "]]" not in once


def test_short_secrets_are_ignored_and_the_longest_form_wins() -> None:
    assert Redactor(["abc"]).secrets == frozenset()
    assert Redactor(["abc"])("abc abc") == "abc abc"
    assert len("x" * MIN_SECRET_CHARS) == MIN_SECRET_CHARS
    both = Redactor(["secret-one", "secret-one-and-more"])
    assert both("secret-one-and-more") == REDACTED


def test_adding_secrets_returns_a_new_redactor() -> None:
    first = Redactor(["first-secret"])
    second = first.adding(["second-secret"])
    assert first("second-secret") == "second-secret"
    assert second("first-secret second-secret") == f"{REDACTED} {REDACTED}"
    assert second.adding(["second-secret"]) is second


def test_clip_marks_the_cut() -> None:
    assert clip("abc", 5) == "abc"
    assert clip("abcdefgh", 5) == "abcd…"
    assert len(clip("x" * 5000)) == 1000


def test_url_secrets_are_the_password_only() -> None:
    assert url_secrets("redis://:p%40ss-word@h:6379/0") == {"p%40ss-word", "p@ss-word"}
    assert url_secrets("rediss://user:pw123456@h:6380/0") == {"pw123456"}
    assert url_secrets("redis://h:6379/0") == set()
    assert url_secrets("redis://h:1/0?password=q-pw-123&db=2") == {"q-pw-123"}
    assert url_secrets("rediss://h:1/0?ssl_keyfile=/k.pem&ssl_password=kp-4567") == {"kp-4567"}
    assert url_secrets("sk-live-abcdef") == {"sk-live-abcdef"}


def test_secrets_in_finds_every_secretstr_of_the_settings() -> None:
    settings = Settings(
        _env_file=None,
        broker_url=SecretStr("redis://:broker-pw-1@h:1/0"),
        redis_url=SecretStr("redis://h:2/0"),
        s3=S3Settings(
            access_key_id=SecretStr("AKIAIOSFODNN7EXAMPLE"),
            secret_access_key=SecretStr("s3-secret-key-1"),
        ),
        providers={
            "a": ProviderOverride(api_key=SecretStr("key-of-a-123")),
            "b": ProviderOverride(base_url="http://b/v1"),
        },
    )
    assert secrets_in(settings) == {
        "broker-pw-1",
        "AKIAIOSFODNN7EXAMPLE",
        "s3-secret-key-1",
        "key-of-a-123",
    }


def test_secrets_in_walks_any_model_mapping_and_sequence() -> None:
    class Inner(BaseModel):
        token: SecretStr
        name: str = "plain"

    class Outer(BaseModel):
        items: list[Inner]
        extra: dict[str, SecretStr]

    outer = Outer(items=[Inner(token=SecretStr("tok-111111"))], extra={"k": SecretStr("x-2222222")})
    assert secrets_in(outer) == {"tok-111111", "x-2222222"}
