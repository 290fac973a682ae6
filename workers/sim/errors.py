"""The simulator's errors: a request it refuses, a fault it simulates, and the error body of
each provider it speaks for.

OpenAI's shape is ``{"error": {message, type, param, code}}`` (also used by the ``/_sim``
control endpoints); Anthropic's is ``{"type": "error", "error": {type, message}}`` with the
type named by the status: 400 ``invalid_request_error``, 401 ``authentication_error``, 404
``not_found_error``, 429 ``rate_limit_error``, any other ``api_error``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

__all__ = ["BadRequest", "Fault", "anthropic_error", "openai_error"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


class BadRequest(Exception):
    """A request refused with 400; ``param`` and ``code`` as OpenAI reports them."""

    def __init__(self, message: str, param: str | None, code: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass(frozen=True)
class Fault:
    """A simulated failure before a protocol shapes it: the HTTP status, the message,
    OpenAI's error ``type`` and ``code``, and response headers (a 429's Retry-After)."""

    status: int
    message: str
    kind: str
    code: str
    headers: tuple[tuple[str, str], ...] = ()

    def openai(self) -> web.Response:
        return openai_error(
            self.status, self.message, self.kind, self.code, headers=dict(self.headers) or None
        )

    def anthropic(self) -> web.Response:
        retry = {k: v for k, v in self.headers if k.lower() == "retry-after"}
        return anthropic_error(self.status, self.message, retry)


def openai_error(
    status: int,
    message: str,
    kind: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def anthropic_error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    kind = _ANTHROPIC_TYPES.get(status, "api_error")
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status, headers=headers)
