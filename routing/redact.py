"""Redaction of secrets from text that is stored or logged.

Provider error bodies, exception messages and tracebacks are data the pipeline keeps (the
``error`` column, the audit trail, dead letters, logs), and some providers echo the
request's credentials in them. A :class:`Redactor` replaces, in any text:

- every **known secret** (the values of the deployment's ``SecretStr`` settings found by
  :func:`secrets_in`, provider keys), in its plain, percent-encoded, percent-decoded,
  JSON-escaped and ``repr``-escaped forms. A secret shorter than ``MIN_SECRET_CHARS`` is
  ignored: replacing it would shred ordinary text, and it protects nothing anyway;
- **token-shaped strings**, known or not (a provider echoing some other key): the
  credential after ``Bearer`` or ``Basic`` (after ``Token`` when it holds a digit), after
  a header or parameter naming a key (``x-api-key: …``, ``"api_key": "…"``,
  ``password=…``), a URL's password (``redis://:…@host``), and keys with a provider's
  prefix (``sk-…``, ``xai-…``, ``gsk_…``, ``hf_…``, ``AIza…``, ``AKIA…``).

Each becomes ``[REDACTED]``. Redact first, then :func:`clip`: cutting first could leave
a secret's prefix that no longer matches. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pydantic import BaseModel, SecretStr

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 6
ERROR_MAX_CHARS = 1000  # stored error text (Completion.error, dead letters) is cut here

_CRED = r"[A-Za-z0-9._~+/=-]{8,}"
_KEY_NAMES = (
    r"x-api-key|x-goog-api-key|api[-_]?key|api[-_]?token|access[-_]?token|auth[-_]?token"
    r"|secret[-_]?access[-_]?key|client[-_]?secret|password|passwd|authorization"
)
_CREDENTIAL_PARAM = re.compile(r"pass|secret|token|auth|key$", re.I)  # not ssl_keyfile
# Each match becomes its ``keep`` group (what names the credential) + ``[REDACTED]``.
_PATTERNS: tuple[re.Pattern[str], ...] = (
    # scheme://user:password@host → the password
    re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/\"'<>]+(?=@)", re.I),
    # Authorization: Bearer|Basic <credential>; Token <credential with a digit>
    re.compile(rf"(?P<keep>\b(?:bearer|basic)\s+){_CRED}", re.I),
    re.compile(rf"(?P<keep>\btoken\s+)(?=\S*\d){_CRED}", re.I),
    # a header or parameter naming a key, then its value (quoted or not)
    re.compile(
        rf"(?P<keep>\b(?:{_KEY_NAMES})[\"']?\s*[:=]\s*[\"']?)"
        r"(?!(?:bearer|basic|token)\s)[^\s\"',;&}\[\]]{4,}",
        re.I,
    ),
    # keys recognisable by their prefix
    re.compile(
        r"(?P<keep>)(?<![A-Za-z0-9])(?:(?:sk|pk|rk)[-_][A-Za-z0-9_-]{8,}|xai-[A-Za-z0-9]{8,}"
        r"|gsk_[A-Za-z0-9]{8,}|hf_[A-Za-z0-9]{8,}|AIza[0-9A-Za-z_-]{20,}"
        r"|(?:AKIA|ASIA)[0-9A-Z]{16})"
    ),
)


def _keep(match: re.Match[str]) -> str:
    return match.group("keep") + REDACTED


def _variants(secret: str) -> set[str]:
    """The forms a secret takes in error text, URLs, JSON bodies and exception reprs."""
    forms = {
        secret,
        quote(secret, safe=""),
        unquote(secret),
        json.dumps(secret, ensure_ascii=False)[1:-1],
        secret.replace("\\", "\\\\").replace("'", "\\'"),
    }
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


class Redactor:
    """Replaces known secrets and token-shaped strings in text (see the module doc).
    Immutable; :meth:`adding` returns a new one with more secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = frozenset(s for s in secrets if len(s) >= MIN_SECRET_CHARS)
        forms = sorted({v for s in self.secrets for v in _variants(s)}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, forms))) if forms else None

    def adding(self, secrets: Iterable[str]) -> Redactor:
        more = frozenset(secrets) - self.secrets
        return Redactor(self.secrets | more) if more else self

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        for pattern in _PATTERNS:
            text = pattern.sub(_keep, text)
        return text


def clip(text: str, limit: int = ERROR_MAX_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def url_secrets(value: str) -> set[str]:
    """The secret parts of a value: a URL's password (as written and decoded) and its
    query parameters naming a credential (``?password=…``), else the whole value. A URL
    without them holds no secret (``redis://host:6379/0``)."""
    parts = urlsplit(value)
    if not (parts.scheme and parts.netloc):
        return {value}
    try:
        password = parts.password
    except ValueError:
        return {value}
    found = {password, unquote(password)} if password else set()
    query = parse_qsl(parts.query, keep_blank_values=False)
    return found | {v for k, v in query if _CREDENTIAL_PARAM.search(k)}


def secrets_in(value: object) -> frozenset[str]:
    """Every ``SecretStr`` value inside ``value`` (a pydantic model such as the Settings,
    a mapping or a sequence, walked recursively), URL-shaped ones reduced to their
    password (:func:`url_secrets`)."""
    found: set[str] = set()
    _walk(value, found)
    return frozenset(found)


def _walk(value: object, found: set[str]) -> None:
    if isinstance(value, SecretStr):
        found.update(url_secrets(value.get_secret_value()))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _walk(getattr(value, name), found)
    elif isinstance(value, Mapping):
        for item in value.values():
            _walk(item, found)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _walk(item, found)
