"""The NemoVideo error tree and the one place that maps an answer to it.

Every failure of the backend surfaces as a `NemoError` subclass, so callers handle the contract's
codes by type and never parse messages. Messages carry no secrets: they are built here from the
code, the HTTP status and a short, clipped backend detail.
"""

from __future__ import annotations

from typing import Any


class NemoError(Exception):
    """A failure reported by, or on the way to, the NemoVideo API."""

    def __init__(self, detail: str = "", *, code: int | None = None, http_status: int | None = None):
        self.detail = detail[:300]
        self.code = code
        self.http_status = http_status
        super().__init__(self.describe())

    def describe(self) -> str:
        parts = [type(self).__name__]
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.http_status is not None:
            parts.append(f"http={self.http_status}")
        if self.detail:
            parts.append(self.detail)
        return " ".join(parts)


class TokenExpired(NemoError):
    """1001: the token is expired or invalid."""


class SessionNotFound(NemoError):
    """1002, or HTTP 404 on /run_sse: the agent session is gone."""


class OutOfCredits(NemoError):
    """2001: the account has no credits left."""


class UnsupportedFile(NemoError):
    """4001: the backend does not take this file type."""


class FileTooLarge(NemoError):
    """4002: the file is over the backend's size limit."""


class MissingClientId(NemoError):
    """400 on the anonymous-token call: no usable X-Client-Id."""


class ExportNotAllowed(NemoError):
    """402: the plan cannot export (not a credit problem)."""


class RateLimited(NemoError):
    """429: too many requests."""


class BackendUnavailable(NemoError):
    """Transport errors, timeouts, 5xx answers and bodies that are not the contract's JSON."""


class StreamIdle(NemoError):
    """The chat stream sent nothing, not even a keep-alive, for the idle timeout."""


class StreamDropped(NemoError):
    """The chat stream was cut mid-turn (connection reset, truncated body)."""


class BackendRejected(NemoError):
    """Any other refusal: an unknown business code or a 4xx the contract does not name."""


# The contract's error list, read alike from the envelope's `code` and from the HTTP status: the
# skills list 402 and 429 beside the business codes, and the backend may send any of them either way.
CODES: dict[int, type[NemoError]] = {
    1001: TokenExpired,
    1002: SessionNotFound,
    2001: OutOfCredits,
    4001: UnsupportedFile,
    4002: FileTooLarge,
    402: ExportNotAllowed,
    429: RateLimited,
}


def _kind(number: int, *, anonymous_token_call: bool) -> type[NemoError] | None:
    """The error a code or status names; 400 is "missing X-Client-Id" on the call that sends one."""
    if number == 400:
        return MissingClientId if anonymous_token_call else None
    return CODES.get(number)


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("message", "detail", "error", "msg"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return ""


def error_for(http_status: int, body: Any, *, anonymous_token_call: bool = False) -> NemoError | None:
    """The error an answer stands for, or None when it is a success.

    The envelope's `code` is read from 2xx and 4xx bodies alike (the contract leaves the HTTP status
    of a non-zero code undocumented), and takes precedence over the status; both are read through
    the same table, so `{"code": 429}` and HTTP 429 mean the same.
    """
    detail = _detail(body)
    code = body.get("code") if isinstance(body, dict) else None
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        named = _kind(code, anonymous_token_call=anonymous_token_call) or BackendRejected
        return named(detail, code=code, http_status=http_status)
    if isinstance(body, dict) and body.get("success") is False:
        return BackendRejected(detail or "success=false", http_status=http_status)
    if 200 <= http_status < 300:
        return None
    if http_status == 401:
        return TokenExpired(detail, http_status=http_status)
    if http_status == 404 and detail.lower().startswith("session not found"):
        return SessionNotFound(detail, http_status=http_status)
    if status_kind := _kind(http_status, anonymous_token_call=anonymous_token_call):
        return status_kind(detail, http_status=http_status)
    if http_status >= 500:
        return BackendUnavailable(detail, http_status=http_status)
    return BackendRejected(detail, http_status=http_status)


def unwrap(body: Any) -> Any:
    """The payload of any of the three answer shapes: envelope, `success` wrapper, or bare object."""
    if isinstance(body, dict) and "data" in body and ("code" in body or "success" in body):
        return body["data"]
    return body
