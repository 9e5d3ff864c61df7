"""The NemoVideo API client: HTTP, the SSE chat stream, uploads and renders.

It borrows an `httpx.AsyncClient` (the app owns its lifetime) and maps every answer through
`bot.nemo.errors.error_for`, so callers only ever see typed results or a `NemoError`. Tokens travel in
the `Authorization` header only, never in a URL.

Why one module of this length: one short method per endpoint of the contract
(`../shared/nemo-api.md`), each mapping its answer through one error table.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from bot.core import metrics
from bot.nemo.errors import BackendUnavailable, NemoError, StreamDropped, StreamIdle, error_for, unwrap
from bot.nemo.sse import AgentEvent, parse_event

APP = "nemo_agent"
TOKEN_LIFETIME_SECONDS = 7 * 24 * 3600
CLAIM_LIFETIME_SECONDS = 7 * 24 * 3600  # when the answer does not say
UPLOAD_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Attribution:
    source: str
    version: str
    platform: str

    def headers(self) -> dict[str, str]:
        return {
            "X-Skill-Source": self.source,
            "X-Skill-Version": self.version,
            "X-Skill-Platform": self.platform,
        }


@dataclass(frozen=True)
class TokenGrant:
    token: str
    user_id: str
    expires_at: float  # unix seconds
    credits: int | None = None


@dataclass(frozen=True)
class Claim:
    """A claim token: opens one project in the browser, with no API access."""

    token: str
    expires_in: float  # seconds


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    task_id: str
    user_id: str


@dataclass(frozen=True)
class Credits:
    available: float
    frozen: float
    total: float


@dataclass(frozen=True)
class UploadedMedia:
    filename: str
    file_type: str
    duration: float | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ProjectState:
    draft: dict[str, Any]
    media: list[dict[str, Any]] = field(default_factory=list)
    generated: list[dict[str, Any]] = field(default_factory=list)  # the agent's own images and clips


@dataclass(frozen=True)
class RenderStatus:
    status: str  # pending | processing | completed | failed (anything else is kept as given)
    progress: int = 0
    url: str | None = None
    duration: float | None = None
    size: int | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class LocalFile:
    """A file on disk to upload, under the (already sanitised) name the backend will see."""

    path: Path
    filename: str
    content_type: str


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of idempotent calls: `attempts` more tries, waits of base·2ⁿ with ±50% jitter."""

    attempts: int = 2
    base_seconds: float = 0.5

    def delay(self, attempt: int) -> float:
        return float(self.base_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))


class NemoClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        attribution: Attribution,
        *,
        idle_timeout: float = 300.0,
        retry: RetryPolicy | None = None,
        streams: httpx.AsyncClient | None = None,
        streaming: bool = False,
    ):
        self._http = http
        self._streaming = streaming  # ask ADK for token streaming (`partial` deltas before each reply)
        self._streams = streams or http  # chat turns' SSE streams (a pool of their own in the bot)
        self._attribution = attribution
        self._idle_timeout = idle_timeout
        self._retry = retry or RetryPolicy()

    # -- plumbing -------------------------------------------------------------------------------

    def _headers(self, token: str | None, **extra: str) -> dict[str, str]:
        headers = self._attribution.headers()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(extra)
        return headers

    async def _request(
        self, method: str, path: str, *, token: str | None, anonymous: bool = False, **kwargs: Any
    ) -> Any:
        """One API call. GETs (state, credits, render status) are idempotent, so a transient
        failure is retried with exponential backoff and jitter; POSTs never are (a chat turn or a
        render start must not run twice)."""
        headers = self._headers(token, **kwargs.pop("headers", {}))
        attempts = 1 + (self._retry.attempts if method == "GET" else 0)
        operation = metrics.BACKEND_SECONDS.labels(_operation(path))
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                try:
                    response = await self._http.request(method, path, headers=headers, **kwargs)
                except httpx.TimeoutException as err:
                    raise BackendUnavailable(f"{method} {path}: timed out") from err
                except httpx.HTTPError as err:
                    raise BackendUnavailable(f"{method} {path}: {type(err).__name__}") from err
                finally:
                    operation.observe(time.monotonic() - started)
                return _decode(response, anonymous=anonymous)
            except NemoError as err:
                metrics.BACKEND_ERRORS.labels(type(err).__name__).inc()
                if not isinstance(err, BackendUnavailable) or attempt == attempts:
                    raise
                await asyncio.sleep(self._retry.delay(attempt))
        raise AssertionError("unreachable")

    # -- account and session --------------------------------------------------------------------

    async def anonymous_token(self, client_id: str) -> TokenGrant:
        data = await self._request(
            "POST",
            "/api/auth/anonymous-token",
            token=None,
            anonymous=True,
            headers={"X-Client-Id": client_id},
        )
        token = _required_str(data, "token")
        return TokenGrant(
            token=token,
            user_id=str(data.get("user_id") or ""),
            expires_at=_parse_expiry(data.get("expires_at")),
            credits=data.get("credits") if isinstance(data.get("credits"), int) else None,
        )

    async def create_session(self, token: str, language: str) -> SessionInfo:
        data = await self._request(
            "POST",
            f"/api/tasks/me/with-session/{APP}",
            token=token,
            json={"task_name": "project", "language": language},
        )
        return SessionInfo(
            session_id=_required_str(data, "session_id"),
            task_id=str(data.get("task_id") or ""),
            user_id=str(data.get("user_id") or ""),
        )

    async def claim_token(self, token: str, task_id: str, session_id: str) -> Claim:
        data = await self._request(
            "POST",
            "/api/auth/claim-token",
            token=token,
            json={"task_id": task_id, "session_id": session_id},
        )
        claim = _required_str(data, "claim_token")
        if claim.startswith("nmv_"):  # an API token must never end up in a link
            raise BackendUnavailable("claim answer holds an API token")
        expires_in = data.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 0.0
        return Claim(claim, lifetime or CLAIM_LIFETIME_SECONDS)

    async def credits(self, token: str) -> Credits:
        data = await self._request("GET", "/api/credits/balance/simple", token=token)
        available, frozen = _number(data, "available"), _number(data, "frozen")
        total = data.get("total") if isinstance(data.get("total"), int | float) else available + frozen
        return Credits(available=available, frozen=frozen, total=float(total))

    async def state(self, token: str, session_id: str) -> ProjectState:
        data = await self._request("GET", f"/api/state/{APP}/me/{session_id}/latest", token=token)
        state = data.get("state") if isinstance(data, dict) else None
        state = state if isinstance(state, dict) else {}
        draft = _dict(state.get("draft"))
        media = [
            item
            for key in ("video_infos", "generated_media")
            if isinstance(state.get(key), list)
            for item in state[key]
            if isinstance(item, dict)
        ]
        generated = state.get("generated_media")
        return ProjectState(
            draft=draft,
            media=media,
            generated=[item for item in generated if isinstance(item, dict)]
            if isinstance(generated, list)
            else [],
        )

    # -- chat -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def stream_turn(
        self, token: str, session_id: str, text: str
    ) -> AsyncIterator[AsyncIterator[AgentEvent]]:
        """Open `/run_sse`; errors before the stream starts raise here, events are read by the caller.

        The read timeout is the idle gap: a stream silent for that long raises `httpx.ReadTimeout`.
        """
        body: dict[str, Any] = {
            "app_name": APP,
            "user_id": "me",
            "session_id": session_id,
            "new_message": {"parts": [{"text": text}]},
        }
        if self._streaming:
            body["streaming"] = True
        base = self._streams.timeout
        timeout = httpx.Timeout(base.connect or 30.0, read=self._idle_timeout, pool=base.pool)
        headers = self._headers(token, Accept="text/event-stream")
        async with AsyncExitStack() as stack:
            try:
                source = await stack.enter_async_context(
                    aconnect_sse(
                        self._streams, "POST", "/run_sse", json=body, headers=headers, timeout=timeout
                    )
                )
            except httpx.TimeoutException as err:
                raise BackendUnavailable("run_sse: timed out") from err
            except httpx.HTTPError as err:
                raise BackendUnavailable(f"run_sse: {type(err).__name__}") from err
            response = source.response
            if response.status_code != 200 or "text/event-stream" not in response.headers.get(
                "content-type", ""
            ):
                try:
                    await response.aread()
                except httpx.HTTPError as err:
                    raise BackendUnavailable(f"run_sse: {type(err).__name__}") from err
                raise _refusal(response)
            yield _events(source.aiter_sse())

    # -- media ----------------------------------------------------------------------------------

    async def upload_files(
        self,
        token: str,
        session_id: str,
        files: Sequence[LocalFile],
        *,
        on_bytes: Callable[[int], None] | None = None,
    ) -> list[UploadedMedia]:
        """Multipart upload streamed from disk with an exact Content-Length (no chunked encoding);
        `on_bytes` hears of each chunk of the files' bytes as it is handed to the connection."""
        boundary = uuid.uuid4().hex
        length = multipart_length(files, boundary)
        data = await self._request(
            "POST",
            f"/api/upload-video/{APP}/me/{session_id}",
            token=token,
            content=_multipart_stream(files, boundary, on_bytes),
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(length),
            },
        )
        return _uploaded(data)

    async def upload_urls(self, token: str, session_id: str, urls: Sequence[str]) -> list[UploadedMedia]:
        data = await self._request(
            "POST",
            f"/api/upload-video/{APP}/me/{session_id}",
            token=token,
            json={"urls": list(urls), "source_type": "url"},
        )
        return _uploaded(data)

    # -- renders --------------------------------------------------------------------------------

    async def start_render(
        self, token: str, session_id: str, render_id: str, draft: dict[str, Any]
    ) -> RenderStatus:
        data = await self._request(
            "POST",
            "/api/render/proxy/lambda",
            token=token,
            json={
                "id": render_id,
                "sessionId": session_id,
                "draft": draft,
                "output": {"format": "mp4", "quality": "high"},
            },
        )
        return parse_render(data)

    async def render_status(self, token: str, render_id: str) -> RenderStatus:
        return parse_render(await self._request("GET", f"/api/render/proxy/lambda/{render_id}", token=token))

    async def cancel_render(self, token: str, render_id: str) -> None:
        await self._request("POST", f"/api/render/proxy/lambda/{render_id}/cancel", token=token)

    async def download(self, url: str, destination: Path, max_bytes: int, *, seconds: float) -> int:
        """Fetch a rendered file (a public CDN URL, no credentials) to disk; its size in bytes."""
        return await self._fetch(url, {}, destination, max_bytes, seconds)

    async def download_render(
        self, token: str, render_id: str, destination: Path, max_bytes: int, *, seconds: float
    ) -> int:
        """Fetch a finished render through the API (the fallback when its CDN URL fails). The
        URL needs the token: it is never shown to anyone."""
        path = f"/api/render/proxy/{render_id}/download"
        return await self._fetch(path, self._headers(token), destination, max_bytes, seconds)

    async def _fetch(
        self, url: str, headers: dict[str, str], destination: Path, max_bytes: int, seconds: float
    ) -> int:
        written = 0
        try:
            async with self._http.stream(
                "GET", url, headers=headers, timeout=httpx.Timeout(seconds)
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    refusal = _refusal(response)  # a refused token is TokenExpired, for recovery
                    raise (
                        refusal
                        if refusal.code or refusal.http_status == 401
                        else BackendUnavailable(
                            f"download answered {response.status_code}", http_status=response.status_code
                        )
                    )
                with destination.open("wb") as out:
                    async for chunk in response.aiter_bytes(UPLOAD_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise BackendUnavailable("download larger than allowed")
                        out.write(chunk)
        except httpx.HTTPError as err:
            raise BackendUnavailable(f"download: {type(err).__name__}") from err
        return written


def _operation(path: str) -> str:
    """A call's name for the metrics: its path without ids ("/api/render/proxy/lambda/{id}")."""
    return "/".join(
        "{id}" if any(ch.isdigit() for ch in part) else part for part in path.split("?")[0].split("/")
    )


async def _events(source: AsyncIterator[Any]) -> AsyncIterator[AgentEvent]:
    """Parsed events; a silent stream raises StreamIdle, a cut one StreamDropped."""
    try:
        async for sse in source:
            event = parse_event(sse.data)
            if event is not None:
                yield event
    except httpx.ReadTimeout as err:
        raise StreamIdle("no bytes within the idle timeout") from err
    except httpx.HTTPError as err:
        raise StreamDropped(type(err).__name__) from err


def _decode(response: httpx.Response, *, anonymous: bool) -> Any:
    """The unwrapped payload of an answer, or the NemoError it stands for."""
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
        if 200 <= response.status_code < 300:
            raise BackendUnavailable(f"malformed body (HTTP {response.status_code})") from None
    error = error_for(response.status_code, body, anonymous_token_call=anonymous)
    if error is not None:
        raise error
    data = unwrap(body)
    if not isinstance(data, dict):
        raise BackendUnavailable(f"unexpected body shape (HTTP {response.status_code})")
    return data


def _refusal(response: httpx.Response) -> NemoError:
    """Why a call answered without what it asked for: `/run_sse` without a stream, a download without
    the file (404 session, an error envelope, a bad gateway...)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    return error_for(status, body) or BackendUnavailable(f"run_sse answered HTTP {status} without a stream")


def parse_render(data: Any) -> RenderStatus:
    """A render status from either documented shape (`output.url` or `outputUrl`)."""
    if not isinstance(data, dict):
        raise BackendUnavailable("render status without a body")
    output = _dict(data.get("output"))
    url = output.get("url") or data.get("outputUrl") or data.get("output_url") or data.get("url")
    progress = data.get("progress")
    status = str(data.get("status") or "pending").lower()
    error = data.get("error") or data.get("errorMessage")
    return RenderStatus(
        status=status,
        progress=max(0, min(100, int(progress))) if isinstance(progress, int | float) else 0,
        url=url if isinstance(url, str) and url.startswith(("http://", "https://")) else None,
        duration=_opt_float(output.get("duration", data.get("duration"))),
        size=_opt_int(output.get("size", data.get("size"))),
        error=str(error)[:300] if error else None,
    )


def _uploaded(data: dict[str, Any]) -> list[UploadedMedia]:
    files = data.get("files")
    if not isinstance(files, list):
        raise BackendUnavailable("upload answer without files")
    return [
        UploadedMedia(
            filename=str(item.get("filename") or "file"),
            file_type=str(item.get("file_type") or "file"),
            duration=_opt_float(item.get("duration")),
            width=_opt_int(item.get("width")),
            height=_opt_int(item.get("height")),
        )
        for item in files
        if isinstance(item, dict)
    ]


def _part_header(file: LocalFile, boundary: str) -> bytes:
    name = file.filename.replace('"', "").replace("\r", "").replace("\n", "")
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: {file.content_type}\r\n\r\n"
    ).encode()


def multipart_length(files: Sequence[LocalFile], boundary: str) -> int:
    closing = len(f"--{boundary}--\r\n")
    return sum(len(_part_header(f, boundary)) + os.path.getsize(f.path) + 2 for f in files) + closing


async def _multipart_stream(
    files: Sequence[LocalFile], boundary: str, on_bytes: Callable[[int], None] | None = None
) -> AsyncIterator[bytes]:
    for file in files:
        yield _part_header(file, boundary)
        with file.path.open("rb") as handle:  # read off the event loop: a cold disk must not stall chats
            while chunk := await asyncio.to_thread(handle.read, UPLOAD_CHUNK):
                yield chunk
                if on_bytes is not None:  # after the yield: the connection has taken the chunk
                    on_bytes(len(chunk))
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _required_str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise BackendUnavailable(f"answer without {key}")
    return value


def _number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _opt_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _parse_expiry(value: object) -> float:
    """`expires_at` as unix seconds; 7 days from now when absent or unreadable."""
    now = datetime.now(UTC).timestamp()
    if isinstance(value, int | float):
        return float(value / 1000 if value > 1e12 else value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return now + TOKEN_LIFETIME_SECONDS
