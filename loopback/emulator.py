"""An in-process emulator of the NemoVideo API, for tests.

It follows ``/work/shared/nemo-api.md``: JSON envelopes, anonymous tokens (with the per-IP trial cap
and the one-per-client rule, both off by default), personal API tokens, sessions, the ``/run_sse``
chat stream (ADK or legacy framing, keep-alive variants, silent turns, error events, dropped and
hanging streams), uploads, credits, state, both documented render answer shapes, the render download
endpoint, a CDN that can die, and claim tokens with the website's claim page.

Usage::

    emu = NemoEmulator()
    await emu.start()                      # binds 127.0.0.1 on a free port
    client = NemoClient(base_url=emu.base_url, ...)
    emu.script("music", Turn(texts=["Added a Lo-fi track."], draft_change=add_bgm))
    emu.inject("run_sse", http_status=429)  # the next chat call answers 429
    ...
    assert emu.requests[-1].endpoint == "run_sse"
    await emu.stop()

or ``async with NemoEmulator() as emu: ...``. The real bot process can be pointed at it with
``NEMO_API_BASE=emu.base_url``.

Everything is plain state you can read or change between requests: ``accounts`` (by token),
``sessions`` (by session id), ``renders`` (by render id), ``claims`` (claim token -> (task id,
session id)), ``trials_granted`` (anonymous tokens the endpoint granted), ``requests`` (every
request, in order), and the settings below (``render_shape``, ``keepalive``, ``framing``, ...).
Faults are queued per endpoint with :meth:`NemoEmulator.inject`; endpoint names are listed in
:data:`ENDPOINTS`.

Credits belong to a user, not to a token: tokens issued for the same client id share one
:class:`Wallet`, so ``account.credits_available = 0`` survives a token refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import hashlib
import html
import json
import pathlib
import re
import secrets
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlparse

from aiohttp import BodyPartReader, web

__all__ = [
    "DEFAULT_TEXTS",
    "ENDPOINTS",
    "FILE_TYPES",
    "Account",
    "Fault",
    "NemoEmulator",
    "RecordedRequest",
    "Render",
    "Session",
    "Turn",
    "Wallet",
    "draft_duration",
    "draft_is_exportable",
    "mp4_duration",
    "sample_draft",
]

DEFAULT_RENDER_FILE = pathlib.Path(__file__).parent.parent / "tests" / "media" / "clip.mp4"
DEFAULT_CDN_IMAGE = pathlib.Path(__file__).parent.parent / "tests" / "media" / "photo.jpg"
AGENT = "nemo_agent"
TOKEN_LIFETIME = timedelta(days=7)
FREE_CREDITS = 100
MAX_CLIENT_ID = 64
ATTRIBUTION_HEADERS = ("X-Skill-Source", "X-Skill-Version", "X-Skill-Platform")
PERSONAL_TOKEN_LIFETIME = timedelta(days=365)  # made on the website; lives until revoked, in practice
CLAIM_LIFETIME = 604800  # seconds: 7 days
TRIAL_CAP_MESSAGE = "anonymous token limit reached for this IP (10 per 7 days)"
TRIAL_CLIENT_MESSAGE = "anonymous token limit reached for this client id (1 per 7 days)"
CDN_HANG_SECONDS = 3600.0  # cdn_dead = 0: longer than any client waits; stop() cancels it

#: Names accepted by :meth:`NemoEmulator.inject` (also ``RecordedRequest.endpoint``).
ENDPOINTS = (
    "anonymous_token",
    "claim_token",
    "session",
    "run_sse",
    "upload",
    "credits",
    "state",
    "render_start",
    "render_status",
    "render_cancel",
    "render_download",
    "render_file",
    "cdn",
    "claim_page",
)

#: Accepted upload extensions and the ``file_type`` the server reports for them.
FILE_TYPES: dict[str, str] = {
    **dict.fromkeys(("mp4", "mov", "avi", "webm", "mkv"), "video"),
    **dict.fromkeys(("jpg", "jpeg", "png", "gif", "webp"), "image"),
    **dict.fromkeys(("mp3", "wav", "m4a", "aac"), "audio"),
}

# Track types in the short-key draft.
TT_VIDEO, TT_AUDIO, TT_TEXT = 0, 1, 7

DEFAULT_TEXTS = ("Sure, give me a moment.", "Your 10-second clip is on the timeline.")
KEEPALIVES = {
    "comment": ": ping\n\n",
    "empty": "data:\n\n",
    "heartbeat": 'data: {"type":"heartbeat"}\n\n',
    "none": "",
}


# --------------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the emulator received it."""

    method: str
    path: str
    headers: dict[str, str]  # keys lowercased
    json: Any  # parsed JSON body, or None (no body, multipart, or not JSON)
    endpoint: str  # a name from ENDPOINTS, or "unknown"
    files: list[tuple[str, int]] = field(default_factory=list)  # multipart file parts: (filename, size)
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)  # multipart non-file fields
    raw: bytes = b""  # the body bytes when not multipart
    status: int | None = None  # the HTTP status answered (200 for streams)
    at: float = 0.0  # time.monotonic() when the request arrived (for benchmarks)
    body_read_at: float | None = None  # time.monotonic() once the whole body was read


@dataclass
class Wallet:
    """Credits and plan of one user; shared by every token issued to that user."""

    user_id: str
    credits_available: int = FREE_CREDITS
    credits_frozen: int = 0
    registered: bool = False


@dataclass
class Account:
    """One issued token. Credit fields read and write the user's shared :class:`Wallet`."""

    token: str
    user_id: str
    client_id: str
    expires_at: datetime
    wallet: Wallet
    valid: bool = True
    personal: bool = False  # a registered user's API token (client_id ""), not an anonymous trial

    @property
    def credits_available(self) -> int:
        return self.wallet.credits_available

    @credits_available.setter
    def credits_available(self, value: int) -> None:
        self.wallet.credits_available = value

    @property
    def credits_frozen(self) -> int:
        return self.wallet.credits_frozen

    @credits_frozen.setter
    def credits_frozen(self, value: int) -> None:
        self.wallet.credits_frozen = value

    @property
    def registered(self) -> bool:
        return self.wallet.registered

    @registered.setter
    def registered(self, value: bool) -> None:
        self.wallet.registered = value

    def usable(self) -> bool:
        """Valid and not expired (a naive ``expires_at`` is taken as UTC)."""
        expires = self.expires_at if self.expires_at.tzinfo else self.expires_at.replace(tzinfo=UTC)
        return self.valid and expires > datetime.now(UTC)


@dataclass
class Session:
    session_id: str
    task_id: str
    language: str = "en"
    draft: dict[str, Any] = field(default_factory=lambda: {"t": []})
    media: list[dict[str, Any]] = field(default_factory=list)  # upload answers' file dicts
    messages: list[str] = field(default_factory=list)  # user texts received by run_sse
    user_id: str = ""
    task_name: str = "project"
    generated_media: list[dict[str, Any]] = field(default_factory=list)
    draft_version: int = 0


@dataclass
class Render:
    id: str
    session_id: str
    draft: dict[str, Any]
    polls: int = 0
    status: str = "pending"  # pending -> processing -> completed | failed
    progress: int = 0
    cancelled: bool = False
    error: str | None = None
    # For benchmarks: when set, the render keeps its status until this time.monotonic() moment and
    # completes at its first poll after it (``render_polls_per_step`` is ignored). ``poll_times``:
    # the time.monotonic() moment of every status poll.
    complete_at: float | None = None
    poll_times: list[float] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")


@dataclass
class Turn:
    """One chat turn as the SSE stream plays it (register with :meth:`NemoEmulator.script`).

    - ``texts``: model replies in order; with ``partials`` each is preceded by ``partial: true`` deltas
      and then sent whole with ``partial: false`` (ADK framing only). A run body with
      ``"streaming": true`` (ADK's token streaming) gets the same for every turn, in deltas of
      ``NemoEmulator.delta_chars`` characters.
    - ``tool_calls``: a functionCall / functionResponse pair (``tool_name``), after the first text when
      there are two or more texts, else before the text. The draft changes just before the response.
    - ``draft_change``: mutates the session draft (``{"t": [...]}``) while the turn runs.
    - ``error``: an error at the end, per ``error_style``: "event" (``errorCode``/``errorMessage``),
      "line" (``data: {"error": ..., "error_details": {...}}``) or "garbage"
      (``data: Traceback (most recent call last): <error>``, not JSON).
    - ``drop_after``: abort the TCP connection after this many events, without ending the chunked body
      (if larger than the number of events: after the last one). The draft change still lands.
    - ``hang_after_last``: keep the stream open, sending nothing, this long after the last event.
    - ``thoughts``: first a ``"thought": true`` text (``thought_text``) that must not be shown.
    - ``duration``: spread the events over this many seconds, with keep-alives in the gaps.
    - ``cost``: credits the turn takes.
    """

    texts: list[str] = field(default_factory=list)
    tool_calls: bool = True
    draft_change: Callable[[dict[str, Any]], None] | None = None
    error: str | None = None
    error_style: str = "event"
    error_message: str = "The agent could not complete the request."
    drop_after: int | None = None
    hang_after_last: float = 0.0
    thoughts: bool = False
    thought_text: str = "[thought] planning the timeline edit"
    partials: bool = False
    duration: float = 0.0
    tool_name: str = "edit_timeline"
    cost: int = 1


@dataclass
class Fault:
    """A queued fault for one endpoint (see :meth:`NemoEmulator.inject`)."""

    code: int | None = None
    http_status: int | None = None
    body: bytes | None = None
    delay: float = 0.0
    times: int = 1
    content_type: str = "application/json"


@dataclass
class _FilePart:
    field: str
    filename: str
    size: int
    digest: str
    data: bytes | None  # kept only for small files (to read an MP4's duration)


@dataclass
class _Call:
    """What a handler gets besides the aiohttp request."""

    rec: RecordedRequest
    parts: list[_FilePart]


class _Reply(Exception):
    """Raised by handlers and helpers to answer right away with ``response``."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


# --------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------


def sample_draft() -> dict[str, Any]:
    """The contract's 3-track example: Video "city timelapse" 0-10s, BGM "Lo-fi" 0-10s at 35%,
    Title "Urban Dreams" 0-3s."""
    return {
        "t": [
            _track(
                TT_VIDEO,
                "Video",
                [{"d": 10000, "m": {"name": "city timelapse", "width": 1080, "height": 1920}}],
            ),
            _track(TT_AUDIO, "BGM", [{"d": 10000, "m": {"name": "Lo-fi", "volume": 0.35}}], volume=0.35),
            _track(TT_TEXT, "Title", [{"d": 3000, "m": {"title": "Urban Dreams", "text": "Urban Dreams"}}]),
        ]
    }


def _track(tt: int, name: str, segments: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return {"tt": tt, "sg": segments, "m": {"name": name, **meta}}


def _upsert_track(draft: dict[str, Any], track: dict[str, Any]) -> None:
    """Replace the first track of the same type, or append."""
    tracks = draft.setdefault("t", [])
    for i, existing in enumerate(tracks):
        if isinstance(existing, dict) and existing.get("tt") == track["tt"]:
            tracks[i] = track
            return
    tracks.append(track)


def draft_is_exportable(draft: Any) -> bool:
    """True when some track has a non-empty ``sg`` (the contract's rule)."""
    if not isinstance(draft, dict) or not isinstance(draft.get("t"), list):
        return False
    return any(isinstance(t, dict) and isinstance(t.get("sg"), list) and t["sg"] for t in draft["t"])


def draft_duration(draft: Any) -> float:
    """Longest track, in seconds (segments of a track play one after another)."""
    best = 0
    for track in draft.get("t", []) if isinstance(draft, dict) else []:
        segments = track.get("sg") if isinstance(track, dict) else None
        total = sum(
            s.get("d", 0) for s in segments or [] if isinstance(s, dict) and isinstance(s.get("d"), int)
        )
        best = max(best, total)
    return best / 1000


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1 and pos + 16 <= end:
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        if size < header:
            return
        yield kind, pos + header, min(pos + size, end)
        pos += size


def mp4_duration(data: bytes) -> float | None:
    """Duration in seconds from an MP4/MOV ``moov/mvhd`` box, or None."""
    try:
        for kind, start, end in _boxes(data, 0, len(data)):
            if kind != b"moov":
                continue
            for inner, s, _e in _boxes(data, start, end):
                if inner == b"mvhd":
                    if data[s] == 1:
                        timescale, duration = struct.unpack(">IQ", data[s + 20 : s + 32])
                    else:
                        timescale, duration = struct.unpack(">II", data[s + 12 : s + 20])
                    return round(duration / timescale, 3) if timescale else None
    except (struct.error, IndexError):
        return None
    return None


def _extension(filename: str) -> str:
    return filename.rsplit(".", 1)[-1].lower() if "." in filename else ""


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _frame(obj: Any) -> str:
    return f"data: {_compact(obj)}\n\n"


def _detail(status: int, detail: Any) -> web.Response:
    return web.json_response({"detail": detail}, status=status)


def _unprocessable(*loc: str, kind: str = "missing", msg: str = "Field required") -> _Reply:
    """A FastAPI-style 422 validation answer."""
    return _Reply(_detail(422, [{"type": kind, "loc": ["body", *loc], "msg": msg}]))


def _split_half(text: str) -> list[str]:
    """Two streaming deltas whose concatenation is ``text`` (one when it has no space)."""
    cut = text.find(" ", len(text) // 2)
    return [text] if cut <= 0 else [text[:cut], text[cut:]]


def _deltas(text: str, size: int) -> list[str]:
    """Streaming deltas of ``size`` characters whose concatenation is ``text``."""
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)] or [text]


def _quoted(text: str) -> str | None:
    match = re.search(r'"([^"]+)"|“([^”]+)”|«([^»]+)»', text)
    return next((g for g in match.groups() if g), None) if match else None


# --------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------

Handler = Callable[[web.Request, "_Call"], Awaitable[web.StreamResponse]]


class NemoEmulator:
    """The NemoVideo API on 127.0.0.1, with switchable behaviour and fault injection.

    Settings (plain attributes, read on every request):

    - ``render_shape``: "output" (bare ``{"id","status","progress","output":{"url","duration","size"}}``),
      "success" (``{"success": true, "data": {"id","status","progress","outputUrl"}}``) or "envelope"
      (the "output" object inside ``{"code":0,"message":"ok","data":...}``).
    - ``render_polls_per_step``: status polls that see each of pending and processing before the render
      completes (1: pending, processing, completed; 0: completed at the first poll).
    - ``render_fail``: when set, renders end "failed" with this ``error`` instead of completing.
    - ``keepalive``: "comment" (``: ping``), "empty" (``data:``), "heartbeat"
      (``data: {"type":"heartbeat"}``) or "none"; sent in every gap between events, and at least every
      ``keepalive_interval`` seconds inside long gaps.
    - ``framing``: "adk" (ADK Event JSON) or "legacy" (``{"type":"text","content":...}`` ...).
    - ``event_delay``: seconds between SSE events (streamed deltas included).
    - ``delta_chars``: the size of each ``partial: true`` delta when the run body asks for streaming.
    - ``error_http_status``: the HTTP status sent with business error codes.
    - ``require_attribution``: render start answers HTTP 402 without the X-Skill-* headers.
    - ``max_upload_bytes``: larger uploaded files get code 4002.
    - ``free_credits``: credits of a new anonymous user.
    - ``cdn_image``: the bytes the CDN serves for a picture's URL (every other CDN URL serves the
      render file, an MP4). The default chat turn without media generates a clip
      (``generated_media``), or a picture when the message asks for an "image" or "picture".
    - ``upload_read_pause``: seconds the server waits before reading each 64 KB of an uploaded file.
    - ``trial_cap``: anonymous tokens the endpoint grants in all (every request comes from 127.0.0.1,
      so this is the per-IP cap; ``trials_granted`` counts them); past it the call answers 429.
      None: unlimited. :meth:`add_account` is the tests' back door and neither counts nor is refused.
    - ``one_trial_per_client``: refuse (429) a new anonymous token to a client id whose latest token
      is still usable; one that expired or was invalidated may get a new one.
    - ``trial_refusal``: how those refusals look: "status" (HTTP 429 with the envelope
      ``{"code": 429, ...}``) or "envelope" (the same envelope with HTTP 200).
    - ``claim_lifetime``: the ``expires_in`` of a claim token, in seconds.
    - ``cdn_dead``: None (the CDN works), an HTTP status the render file URL answers instead of the
      video, or 0: the render file request hangs until the client gives up. The download endpoint
      keeps working either way.
    """

    def __init__(self, render_file: pathlib.Path | None = None) -> None:
        self.render_file = pathlib.Path(render_file) if render_file else DEFAULT_RENDER_FILE
        self.requests: list[RecordedRequest] = []
        self.accounts: dict[str, Account] = {}
        self.sessions: dict[str, Session] = {}
        self.renders: dict[str, Render] = {}
        self.wallets: dict[str, Wallet] = {}  # by user_id
        # Settings: switchable between requests.
        # "output" (bare object), "envelope" (the output shape inside code/data), "success"
        self.render_shape: str = "output"
        self.render_polls_per_step: int = 1
        self.render_fail: str | None = None
        self.render_status_delay: float = 0.0  # seconds each status answer waits (a distant backend)
        self.keepalive: str = "heartbeat"  # "comment" | "empty" | "heartbeat" | "none"
        self.keepalive_interval: float = 1.0  # at most this long between keep-alives inside a gap
        self.framing: str = "adk"  # "adk" | "legacy"
        self.event_delay: float = 0.0
        self.delta_chars: int = 16
        self.error_http_status: int = 200
        self.require_attribution: bool = True
        self.max_upload_bytes: int = 500 * 1024 * 1024
        self.free_credits: int = FREE_CREDITS
        self.cdn_image: bytes = DEFAULT_CDN_IMAGE.read_bytes()  # what the CDN serves for a picture
        self.upload_read_pause: float = 0.0  # a slow link: seconds between 64 KB chunks of an upload
        self.trial_cap: int | None = None  # the backend's ~10 per IP per 7 days; None: unlimited
        self.one_trial_per_client: bool = False
        self.trial_refusal: str = "status"  # "status" (HTTP 429) | "envelope" (HTTP 200, code 429)
        self.claim_lifetime: int = CLAIM_LIFETIME
        self.cdn_dead: int | None = None  # an HTTP status, or 0: hang
        self.trials_granted: int = 0
        self.claims: dict[str, tuple[str, str]] = {}  # claim token -> (task_id, session_id)
        # Internals.
        self._users_by_client: dict[str, str] = {}
        self._scripts: list[tuple[str, Turn]] = []
        self._faults: dict[str, deque[Fault]] = {}
        self._streams: set[asyncio.Task[Any]] = set()
        self._render_bytes = b""
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._task_counter = 90
        self._session_counter = 0

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._render_bytes = self.render_file.read_bytes()
        self._runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for task in list(self._streams):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> NemoEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("NemoEmulator.start() has not run")
        return f"http://127.0.0.1:{self._port}"

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        routes: list[tuple[str, str, Handler, str]] = [
            ("POST", "/api/auth/anonymous-token", self._anonymous_token, "anonymous_token"),
            ("POST", "/api/auth/claim-token", self._claim_token, "claim_token"),
            ("POST", f"/api/tasks/me/with-session/{AGENT}", self._create_session, "session"),
            ("POST", "/run_sse", self._run_sse, "run_sse"),
            ("POST", f"/api/upload-video/{AGENT}/{{user}}/{{sid}}", self._upload, "upload"),
            ("GET", "/api/credits/balance/simple", self._credits, "credits"),
            ("GET", f"/api/state/{AGENT}/{{user}}/{{sid}}/latest", self._state, "state"),
            ("POST", "/api/render/proxy/lambda", self._render_start, "render_start"),
            ("GET", "/api/render/proxy/lambda/{rid}", self._render_status, "render_status"),
            ("POST", "/api/render/proxy/lambda/{rid}/cancel", self._render_cancel, "render_cancel"),
            ("GET", "/api/render/proxy/{rid}/download", self._render_download, "render_download"),
            ("GET", "/static/render/{rid}.mp4", self._render_file, "render_file"),
            ("GET", "/cdn/{digest}/{filename}", self._cdn, "cdn"),
            ("GET", "/workspace/claim", self._claim_page, "claim_page"),  # the website's page
        ]
        for method, path, handler, name in routes:
            app.router.add_route(method, path, self._endpoint(name, handler), name=name)
        app.router.add_route("*", "/{tail:.*}", self._endpoint("unknown", self._unknown))
        return app

    # ---- test controls ---------------------------------------------------------------------------

    def inject(
        self,
        endpoint: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        body: bytes | None = None,
        delay: float = 0.0,
        times: int = 1,
        content_type: str = "application/json",
    ) -> None:
        """Queue a fault for the next ``times`` calls of ``endpoint``.

        ``code``: envelope ``{"code": code, ...}`` with ``error_http_status`` (or ``http_status``).
        ``http_status`` alone: that status with ``{"detail": ...}`` (or ``body``).
        ``body`` alone: those raw bytes with status 200. ``delay``: sleep first; alone, answer normally.
        Faults queue up: a second ``inject`` for the same endpoint applies after the first is used up.
        A fault that answers replaces the handler, so it changes no state: a render start that
        fails leaves no render behind.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")
        fault = Fault(code, http_status, body, delay, times, content_type)
        self._faults.setdefault(endpoint, deque()).append(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def expire_tokens(self) -> None:
        """Every current token (personal ones too) becomes invalid: 1001 on any authed call (new
        tokens work)."""
        for account in self.accounts.values():
            account.valid = False

    def drop_sessions(self) -> None:
        """Every session vanishes: 1002 on state/upload, HTTP 404 on run_sse."""
        self.sessions.clear()

    def script(self, text_contains: str, turn: Turn) -> None:
        """Answer messages containing ``text_contains`` (case-insensitive) with ``turn``.
        Later registrations win."""
        self._scripts.append((text_contains.lower(), turn))

    def set_draft(self, session_id: str, draft: dict[str, Any]) -> None:
        self.sessions[session_id].draft = copy.deepcopy(draft)

    def add_account(
        self, client_id: str | None = None, *, credits: int | None = None, registered: bool = False
    ) -> Account:
        """Issue a token as the anonymous-token endpoint would (same client id -> same user)."""
        client_id = client_id or secrets.token_hex(16)
        user_id = self._users_by_client.get(client_id)
        if user_id is None:
            user_id = f"anon_{secrets.token_hex(4)}"
            self._users_by_client[client_id] = user_id
            self.wallets[user_id] = Wallet(user_id, self.free_credits)
        wallet = self.wallets[user_id]
        if credits is not None:
            wallet.credits_available = credits
        wallet.registered = wallet.registered or registered
        token = f"nmv_usr_{secrets.token_hex(16)}"
        account = Account(token, user_id, client_id, datetime.now(UTC) + TOKEN_LIFETIME, wallet)
        self.accounts[token] = account
        return account

    def add_personal_account(self, *, credits: int = 500, user_id: str | None = None) -> Account:
        """A registered user's personal API token, as made on the website (Settings -> API Tokens).

        The user (``usr_<hex>`` unless given) is registered and its wallet holds ``credits``; a known
        ``user_id`` keeps its wallet (a user with several tokens, or an anonymous user who registered).
        """
        user_id = user_id or f"usr_{secrets.token_hex(4)}"
        wallet = self.wallets.setdefault(user_id, Wallet(user_id))
        wallet.credits_available, wallet.registered = credits, True
        token = f"nmv_usr_{secrets.token_hex(16)}"
        expires_at = datetime.now(UTC) + PERSONAL_TOKEN_LIFETIME
        account = Account(token, user_id, "", expires_at, wallet, personal=True)
        self.accounts[token] = account
        return account

    def revoke(self, token: str) -> None:
        """The user revoked this one token on the website: 1001 on every authed call with it."""
        self.accounts[token].valid = False

    def add_session(
        self,
        user_id: str = "",
        *,
        language: str = "en",
        task_name: str = "project",
        draft: dict[str, Any] | None = None,
    ) -> Session:
        """Create a session as the session endpoint would."""
        self._task_counter += 1
        self._session_counter += 1
        sid = str(5_529_798_706_024_415_232 + self._session_counter * 7_919)
        session = Session(sid, f"task_{self._task_counter}", language, user_id=user_id, task_name=task_name)
        if draft is not None:
            session.draft = copy.deepcopy(draft)
        self.sessions[sid] = session
        return session

    def account_for_client(self, client_id: str) -> Account | None:
        """The most recently issued account for a client id."""
        found = [a for a in self.accounts.values() if a.client_id == client_id]
        return found[-1] if found else None

    def calls(self, endpoint: str) -> list[RecordedRequest]:
        """Recorded requests for one endpoint name."""
        return [r for r in self.requests if r.endpoint == endpoint]

    # ---- request plumbing ------------------------------------------------------------------------

    def _endpoint(
        self, name: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._dispatch(request, name, handler)

        return endpoint

    async def _dispatch(self, request: web.Request, name: str, handler: Handler) -> web.StreamResponse:
        """Record the request, read its body, apply a queued fault, then run the handler."""
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=None,
            endpoint=name,
            query=dict(request.query),
            at=time.monotonic(),
        )
        self.requests.append(rec)
        try:
            call = _Call(rec, await self._read_body(request, rec))
            fault = self._take_fault(name)
            if fault is not None:
                await asyncio.sleep(fault.delay)
                reply = self._fault_response(fault)
                if reply is not None:
                    raise _Reply(reply)
            response = await handler(request, call)
        except _Reply as reply:
            response = reply.response
        rec.status = response.status
        return response

    async def _read_body(self, request: web.Request, rec: RecordedRequest) -> list[_FilePart]:
        """Read the whole body; multipart file parts are streamed, hashed and measured."""
        parts: list[_FilePart] = []
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.filename is None:
                    rec.form[part.name or ""] = await part.text()
                    continue
                hasher, size, kept = hashlib.sha256(), 0, bytearray()
                while chunk := await part.read_chunk(65536):
                    if self.upload_read_pause:
                        await asyncio.sleep(self.upload_read_pause)
                    hasher.update(chunk)
                    size += len(chunk)
                    if size <= 8 * 1024 * 1024:
                        kept += chunk
                data = bytes(kept) if size <= 8 * 1024 * 1024 else None
                parts.append(_FilePart(part.name or "", part.filename, size, hasher.hexdigest()[:16], data))
            rec.files = [(p.filename, p.size) for p in parts]
        elif request.body_exists:
            rec.raw = await request.read()
            with contextlib.suppress(ValueError):
                rec.json = json.loads(rec.raw)
        rec.body_read_at = time.monotonic()
        return parts

    def _take_fault(self, endpoint: str) -> Fault | None:
        queue = self._faults.get(endpoint)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.popleft()
        return fault

    def _fault_response(self, fault: Fault) -> web.Response | None:
        if fault.code is not None:
            status = fault.http_status or self.error_http_status
            body = {"code": fault.code, "message": f"injected error {fault.code}", "data": None}
            return web.json_response(body, status=status)
        if fault.http_status is not None:
            if fault.body is not None:
                return web.Response(
                    body=fault.body, status=fault.http_status, content_type=fault.content_type
                )
            return _detail(fault.http_status, f"injected HTTP {fault.http_status}")
        if fault.body is not None:
            return web.Response(body=fault.body, status=200, content_type=fault.content_type)
        return None  # delay only

    def _ok(self, data: Any) -> web.Response:
        return web.json_response({"code": 0, "message": "ok", "data": data})

    def _error(self, code: int, message: str) -> _Reply:
        body = {"code": code, "message": message, "data": None}
        return _Reply(web.json_response(body, status=self.error_http_status))

    def _authorize(self, request: web.Request) -> Account:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        account = self.accounts.get(token.strip()) if scheme.lower() == "bearer" else None
        if account is None or not account.usable():
            raise self._error(1001, "token expired or invalid")
        return account

    def _session(self, sid: str) -> Session:
        session = self.sessions.get(sid)
        if session is None:
            raise self._error(1002, "session not found")
        return session

    @staticmethod
    def _json_object(call: _Call) -> dict[str, Any]:
        """The request's JSON body as a dict, or a FastAPI-style 422."""
        body = call.rec.json
        if not isinstance(body, dict):
            raise _unprocessable(kind="json_invalid", msg="JSON object required")
        return body

    # ---- auth, sessions, credits, state ----------------------------------------------------------

    async def _anonymous_token(self, request: web.Request, call: _Call) -> web.StreamResponse:
        client_id = request.headers.get("X-Client-Id", "").strip()
        if not client_id:
            return _detail(400, "Missing X-Client-Id")
        if len(client_id) > MAX_CLIENT_ID:
            return _detail(400, f"X-Client-Id longer than {MAX_CLIENT_ID} characters")
        if self.trial_cap is not None and self.trials_granted >= self.trial_cap:
            return self._trial_refused(TRIAL_CAP_MESSAGE)
        latest = self.account_for_client(client_id) if self.one_trial_per_client else None
        if latest is not None and latest.usable():
            return self._trial_refused(TRIAL_CLIENT_MESSAGE)
        account = self.add_account(client_id)
        self.trials_granted += 1  # refusals above do not count
        return self._ok(
            {
                "token": account.token,
                "user_id": account.user_id,
                "expires_at": account.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "credits": account.credits_available,
            }
        )

    def _trial_refused(self, message: str) -> web.Response:
        """429 for the anonymous-token call: as the HTTP status or only as the envelope's code."""
        body = {"code": 429, "message": message, "data": None}
        return web.json_response(body, status=429 if self.trial_refusal == "status" else 200)

    async def _claim_token(self, request: web.Request, call: _Call) -> web.StreamResponse:
        account = self._authorize(request)
        body = self._json_object(call)
        for key in ("task_id", "session_id"):
            if key not in body:
                raise _unprocessable(key)
            if not isinstance(body[key], str):
                raise _unprocessable(key, kind="string_type", msg="Input should be a valid string")
        session = self._session(body["session_id"])
        if session.user_id != account.user_id:
            raise self._error(1002, "session not found")  # another user's session is not disclosed
        claim = f"clm_{secrets.token_hex(12)}"
        self.claims[claim] = (body["task_id"], body["session_id"])
        return self._ok({"claim_token": claim, "expires_in": self.claim_lifetime})

    async def _claim_page(self, request: web.Request, call: _Call) -> web.StreamResponse:
        """The website's claim link (``claim_lifetime`` is not enforced here)."""
        claim = self.claims.get(request.query.get("ct", ""))
        if claim is None:
            return web.Response(
                status=404, text="<!doctype html><p>Link not found</p>", content_type="text/html"
            )
        page = f"<!doctype html><title>NemoVideo</title><p>Project {html.escape(claim[0])}</p>"
        return web.Response(text=page, content_type="text/html")

    async def _create_session(self, request: web.Request, call: _Call) -> web.StreamResponse:
        account = self._authorize(request)
        body = self._json_object(call) if request.body_exists else {}
        session = self.add_session(
            account.user_id,
            language=str(body.get("language") or "en"),
            task_name=str(body.get("task_name") or "project"),
        )
        return self._ok(
            {"task_id": session.task_id, "session_id": session.session_id, "user_id": account.user_id}
        )

    async def _credits(self, request: web.Request, call: _Call) -> web.StreamResponse:
        wallet = self._authorize(request).wallet
        available, frozen = wallet.credits_available, wallet.credits_frozen
        return self._ok({"available": available, "frozen": frozen, "total": available + frozen})

    async def _state(self, request: web.Request, call: _Call) -> web.StreamResponse:
        self._authorize(request)
        session = self._session(request.match_info["sid"])
        return self._ok(
            {
                "session_id": session.session_id,
                "task_id": session.task_id,
                "task_name": session.task_name,
                "state": {
                    "draft": copy.deepcopy(session.draft),
                    "video_infos": [m for m in session.media if m.get("file_type") == "video"],
                    "generated_media": list(session.generated_media),
                    "canvas_config": {"width": 1080, "height": 1920},
                },
            }
        )

    # ---- upload ----------------------------------------------------------------------------------

    async def _upload(self, request: web.Request, call: _Call) -> web.StreamResponse:
        self._authorize(request)
        session = self._session(request.match_info["sid"])
        parts: list[_FilePart] = [p for p in call.parts if p.field == "files"]
        entries: list[dict[str, Any]] = []
        if request.content_type.startswith("multipart/"):
            if not parts:
                raise _unprocessable("files")
            for part in parts:
                self._check_file(part.filename, part.size)
                entries.append(self._media_entry(part.filename, part.digest, part.data))
        else:
            body = self._json_object(call)
            urls = body.get("urls")
            if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
                raise _unprocessable("urls")
            for url in urls:
                filename = unquote(pathlib.PurePosixPath(urlparse(url).path).name) or "file"
                self._check_file(filename, 0)
                digest = hashlib.sha256(url.encode()).hexdigest()[:16]
                entries.append(self._media_entry(filename, digest, None))
        session.media.extend(entries)
        return self._ok({"files": entries, "session_state_applied": True})

    def _check_file(self, filename: str, size: int) -> None:
        ext = _extension(filename)
        if ext not in FILE_TYPES:
            raise self._error(4001, f"unsupported file type: {filename}")
        if size > self.max_upload_bytes:
            raise self._error(4002, f"file too large: {filename} (limit {self.max_upload_bytes} bytes)")

    def _media_entry(self, filename: str, digest: str, data: bytes | None) -> dict[str, Any]:
        kind = FILE_TYPES[_extension(filename)]
        entry: dict[str, Any] = {
            "filename": filename,
            "file_type": kind,
            "cdn_url": f"{self.base_url}/cdn/{digest}/{quote(filename)}",
        }
        measured = mp4_duration(data) if data else None
        if kind == "image":
            entry.update(width=1080, height=1350)
        elif kind == "video":
            entry.update(width=1080, height=1920, duration=measured or 10.0, fps=30.0)
        else:
            entry.update(duration=measured or 30.0)
        entry["hash"] = digest
        return entry

    # ---- chat (SSE) ------------------------------------------------------------------------------

    async def _run_sse(self, request: web.Request, call: _Call) -> web.StreamResponse:
        account = self._authorize(request)
        body = call.rec.json
        text = self._message_text(body)
        sid = body["session_id"]
        session = self.sessions.get(sid)
        if session is None:
            return _detail(404, f"Session not found: {sid}")
        if account.credits_available <= 0:
            raise self._error(2001, "insufficient credits")
        session.messages.append(text)
        turn = self._pick_turn(session, text)
        account.credits_available = max(0, account.credits_available - turn.cost)

        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"},
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)  # stop() cancels streams that are still open
        try:
            streaming = body.get("streaming") is True  # ADK's RunAgentRequest.streaming
            await self._stream_turn(request, response, session, turn, text, streaming=streaming)
        finally:
            self._streams.discard(task)
        return response

    @staticmethod
    def _message_text(body: Any) -> str:
        """The user text of a run_sse body, or a FastAPI-style 422."""
        problems: list[dict[str, Any]] = []
        if not isinstance(body, dict):
            raise _unprocessable(kind="json_invalid", msg="JSON object required")
        for key in ("app_name", "user_id", "session_id"):
            if not isinstance(body.get(key), str) or not body[key]:
                problems.append({"type": "missing", "loc": ["body", key], "msg": "Field required"})
        message = body.get("new_message")
        parts = message.get("parts") if isinstance(message, dict) else None
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            problems.append(
                {"type": "missing", "loc": ["body", "new_message", "parts"], "msg": "Field required"}
            )
        if problems:
            raise _Reply(_detail(422, problems))
        return "".join(str(p.get("text", "")) for p in parts or [])

    def _pick_turn(self, session: Session, text: str) -> Turn:
        lowered = text.lower()
        for needle, turn in reversed(self._scripts):
            if needle in lowered:
                return turn
        return self._default_turn(session, text)

    def _default_turn(self, session: Session, text: str) -> Turn:
        """Two texts and a tool call; the draft gets a video track (plus BGM / title when asked).
        A message containing "silent" gets the same edit with no text at all."""
        lowered = text.lower()

        def change(draft: dict[str, Any]) -> None:
            visuals = [m for m in session.media if m.get("file_type") in ("video", "image")]
            segments: list[dict[str, Any]]
            if visuals:
                segments = [
                    {
                        "d": int(m.get("duration", 3.0) * 1000),
                        "m": {"name": m["filename"], "url": m["cdn_url"]},
                    }
                    for m in visuals
                ]
            elif "image" in lowered or "picture" in lowered:  # the agent draws one
                image = {
                    "name": "generated image",
                    "file_type": "image",
                    "prompt": text[:80],
                    "url": f"{self.base_url}/cdn/generated/image_{len(session.generated_media) + 1}.jpg",
                }
                session.generated_media.append(image)
                segments = [{"d": 3000, "m": {"name": image["name"], "url": image["url"]}}]
            else:
                clip = {
                    "name": "generated clip",
                    "prompt": text[:80],
                    "duration": 10.0,
                    "url": f"{self.base_url}/cdn/generated/clip_{len(session.generated_media) + 1}.mp4",
                }
                session.generated_media.append(clip)
                segments = [{"d": 10000, "m": {"name": clip["name"], "url": clip["url"]}}]
            _upsert_track(draft, _track(TT_VIDEO, "Video", segments))
            total = sum(s["d"] for s in segments)
            if "music" in lowered or "bgm" in lowered:
                audio = next((m for m in session.media if m.get("file_type") == "audio"), None)
                name = audio["filename"] if audio else "Lo-fi"
                _upsert_track(
                    draft,
                    _track(TT_AUDIO, "BGM", [{"d": total, "m": {"name": name, "volume": 0.35}}], volume=0.35),
                )
            if "title" in lowered:
                title = _quoted(text) or "Urban Dreams"
                _upsert_track(
                    draft, _track(TT_TEXT, "Title", [{"d": 3000, "m": {"title": title, "text": title}}])
                )

        texts = [] if "silent" in lowered else list(DEFAULT_TEXTS)
        return Turn(texts=texts, tool_calls=True, draft_change=change)

    def _plan(
        self, turn: Turn, session: Session, text: str, *, streaming: bool = False
    ) -> tuple[list[Callable[[], str]], int | None]:
        """The SSE frames of a turn (built when sent, so timestamps and draft_version are current)
        and the index of the frame before which the draft changes (None: after the last frame)."""
        adk = self.framing == "adk"
        invocation = f"e-{secrets.token_hex(6)}"
        frames: list[Callable[[], str]] = []
        apply_at: int | None = None

        def event(content: dict[str, Any], actions: dict[str, Any] | None = None, **extra: Any) -> str:
            body = {
                "content": content,
                **extra,
                "author": AGENT,
                "invocationId": invocation,
                "id": secrets.token_hex(4),
                "timestamp": round(time.time(), 3),
                "actions": actions or {},
            }
            return _frame(body)

        def model_text(value: str, **extra: Any) -> str:
            if not adk:
                return _frame({"type": "text", "content": value})
            content = {"parts": [{"text": value}], "role": "model"}
            return event(content, {"stateDelta": {}, "artifactDelta": {}}, **extra)

        def thought() -> str:
            return event({"parts": [{"text": turn.thought_text, "thought": True}], "role": "model"})

        call_id = f"call_{secrets.token_hex(4)}"
        args = {"instruction": text[:200]}
        result = {"status": "success"}

        def tool_call() -> str:
            if not adk:
                return _frame({"type": "tool_call", "name": turn.tool_name, "args": args})
            part = {"functionCall": {"id": call_id, "name": turn.tool_name, "args": args}}
            return event({"parts": [part], "role": "model"})

        def tool_result() -> str:
            if not adk:
                return _frame({"type": "tool_result", "name": turn.tool_name, "result": result})
            part = {"functionResponse": {"id": call_id, "name": turn.tool_name, "response": result}}
            return event(
                {"parts": [part], "role": "user"}, {"stateDelta": {"draft_version": session.draft_version}}
            )

        def tool_pair() -> None:
            nonlocal apply_at
            frames.append(tool_call)
            apply_at = len(frames)
            frames.append(tool_result)

        if turn.thoughts and adk:
            frames.append(thought)
        if turn.tool_calls and len(turn.texts) < 2:
            tool_pair()
        for i, value in enumerate(turn.texts):
            if adk and (turn.partials or streaming):
                deltas = _deltas(value, self.delta_chars) if streaming else _split_half(value)
                frames.extend(functools.partial(model_text, delta, partial=True) for delta in deltas)
                frames.append(functools.partial(model_text, value, partial=False))
            else:
                frames.append(functools.partial(model_text, value))
            if i == 0 and turn.tool_calls and len(turn.texts) >= 2:
                tool_pair()
        if turn.error:
            frames.append(functools.partial(self._error_frame, turn, invocation))
        return frames, apply_at

    @staticmethod
    def _error_frame(turn: Turn, invocation: str) -> str:
        if turn.error_style == "line":
            return _frame(
                {"error": turn.error, "error_details": {"code": turn.error, "message": turn.error_message}}
            )
        if turn.error_style == "garbage":
            return f"data: Traceback (most recent call last): {turn.error}\n\n"
        return _frame(
            {
                "errorCode": turn.error,
                "errorMessage": turn.error_message,
                "author": AGENT,
                "invocationId": invocation,
                "id": secrets.token_hex(4),
                "timestamp": round(time.time(), 3),
                "actions": {},
            }
        )

    async def _stream_turn(
        self,
        request: web.Request,
        response: web.StreamResponse,
        session: Session,
        turn: Turn,
        text: str,
        *,
        streaming: bool = False,
    ) -> None:
        """Send the turn's frames with pauses and keep-alives; drop, hang or end as the turn says.
        The draft change lands even when the client goes away: the agent keeps working."""
        frames, apply_at = self._plan(turn, session, text, streaming=streaming)
        applied = False

        def apply_change() -> None:
            nonlocal applied
            if not applied:
                applied = True
                if turn.draft_change is not None:
                    turn.draft_change(session.draft)
                    session.draft_version += 1

        share = turn.duration / len(frames) if frames else turn.duration
        try:
            if turn.drop_after is not None and turn.drop_after <= 0:
                await self._pause(response, share)
                self._abort(request)
                return
            for i, build in enumerate(frames):
                await self._pause(response, share + (self.event_delay if i else 0.0))
                if i == apply_at:
                    apply_change()
                await response.write(build().encode())
                if turn.drop_after is not None and i + 1 >= turn.drop_after:
                    self._abort(request)
                    return
            if not frames:
                await self._pause(response, share)
            apply_change()
            await self._hang(request, turn.hang_after_last)
            if turn.drop_after is not None:
                self._abort(request)
                return
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            apply_change()

    async def _pause(self, response: web.StreamResponse, seconds: float) -> None:
        """Wait ``seconds``, sending keep-alives in between (at least one when seconds > 0)."""
        if seconds <= 0:
            return
        keepalive = KEEPALIVES[self.keepalive].encode()
        step = min(self.keepalive_interval, seconds / 2)
        elapsed = 0.0
        while seconds - elapsed > step + 1e-9:
            await asyncio.sleep(step)
            elapsed += step
            if keepalive:
                await response.write(keepalive)
        await asyncio.sleep(max(0.0, seconds - elapsed))

    @staticmethod
    async def _hang(request: web.Request, seconds: float) -> None:
        """Send nothing for ``seconds``; stop early when the client disconnects."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    async def _hold(self, request: web.Request, seconds: float) -> None:
        """:meth:`_hang` before any answer, registered so that stop() cancels it like a stream."""
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        try:
            await self._hang(request, seconds)
        finally:
            self._streams.discard(task)

    @staticmethod
    def _abort(request: web.Request) -> None:
        """Close the TCP connection without ending the chunked body."""
        if request.transport is not None:
            request.transport.abort()

    # ---- render ----------------------------------------------------------------------------------

    async def _render_start(self, request: web.Request, call: _Call) -> web.StreamResponse:
        self._authorize(request)
        missing = [h for h in ATTRIBUTION_HEADERS if not request.headers.get(h, "").strip()]
        if self.require_attribution and missing:
            return _detail(402, f"Export requires attribution headers: missing {', '.join(missing)}")
        body = self._json_object(call)
        render_id, sid, draft = body.get("id"), body.get("sessionId"), body.get("draft")
        if not isinstance(render_id, str) or not render_id or not isinstance(sid, str):
            raise _unprocessable("id" if not isinstance(render_id, str) or not render_id else "sessionId")
        if render_id in self.renders:
            raise self._error(3001, f"duplicate render id: {render_id}")
        if not isinstance(draft, dict) or not draft_is_exportable(draft):
            raise self._error(3002, "draft is empty: nothing to render")
        render = Render(render_id, sid, copy.deepcopy(draft))
        self.renders[render_id] = render
        return self._render_answer(render)

    async def _render_status(self, request: web.Request, call: _Call) -> web.StreamResponse:
        self._authorize(request)
        render = self._render(request.match_info["rid"])
        if self.render_status_delay:
            await asyncio.sleep(self.render_status_delay)
        render.polls += 1
        render.poll_times.append(time.monotonic())
        if not render.finished and render.complete_at is not None:
            if time.monotonic() >= render.complete_at:
                render.status, render.progress = "completed", 100
        elif not render.finished:
            per_step = self.render_polls_per_step
            stage = 2 if per_step <= 0 else min(2, (render.polls - 1) // per_step)
            if stage == 1:
                render.status, render.progress = "processing", 50
            elif stage == 2 and self.render_fail:
                render.status, render.error = "failed", self.render_fail
            elif stage == 2:
                render.status, render.progress = "completed", 100
        return self._render_answer(render)

    async def _render_cancel(self, request: web.Request, call: _Call) -> web.StreamResponse:
        self._authorize(request)
        render = self._render(request.match_info["rid"])
        if not render.finished:
            render.status, render.cancelled, render.error = "failed", True, "cancelled"
        return self._render_answer(render)

    def _render(self, render_id: str) -> Render:
        render = self.renders.get(render_id)
        if render is None:
            raise _Reply(_detail(404, f"Render not found: {render_id}"))
        return render

    def render_url(self, render_id: str) -> str:
        return f"{self.base_url}/static/render/{quote(render_id)}.mp4"

    def _render_answer(self, render: Render) -> web.Response:
        """The render in the current ``render_shape``."""
        done = render.status == "completed"
        if self.render_shape == "success":
            data: dict[str, Any] = {"id": render.id, "status": render.status, "progress": render.progress}
            if done:
                data["outputUrl"] = self.render_url(render.id)
            if render.error:
                data["error"] = render.error
            return web.json_response({"success": True, "data": data})
        body: dict[str, Any] = {"id": render.id, "status": render.status, "progress": render.progress}
        if done:
            duration = mp4_duration(self._render_bytes) or draft_duration(render.draft)
            body["output"] = {
                "url": self.render_url(render.id),
                "duration": duration,
                "size": len(self._render_bytes),
            }
        if render.error:
            body["error"] = render.error
        if self.render_shape == "envelope":
            return self._ok(body)
        return web.json_response(body)

    async def _render_download(self, request: web.Request, call: _Call) -> web.StreamResponse:
        """The backend's own copy of a finished render (needs the token; works when the CDN is dead)."""
        self._authorize(request)
        render = self.renders.get(request.match_info["rid"])
        if render is None or render.status != "completed":
            return _detail(404, "Render not found")
        return web.Response(body=self._render_bytes, content_type="video/mp4")

    async def _render_file(self, request: web.Request, call: _Call) -> web.StreamResponse:
        if self.cdn_dead == 0:
            await self._hold(request, CDN_HANG_SECONDS)
            return _detail(504, "Gateway Timeout")  # the client has gone (or waited an hour)
        if self.cdn_dead is not None:
            return web.Response(status=self.cdn_dead, text=f"CDN error {self.cdn_dead}")
        render = self.renders.get(request.match_info["rid"])
        if render is None or render.status != "completed":
            return _detail(404, "Not Found")
        return web.Response(body=self._render_bytes, content_type="video/mp4")

    async def _unknown(self, request: web.Request, call: _Call) -> web.StreamResponse:
        return _detail(404, "Not Found")

    async def _cdn(self, request: web.Request, call: _Call) -> web.StreamResponse:
        """Media on the CDN: a picture (``cdn_image``) for an image name, else the render file."""
        if FILE_TYPES.get(_extension(request.match_info["filename"])) == "image":
            return web.Response(body=self.cdn_image, content_type="image/jpeg")
        return web.Response(body=self._render_bytes, content_type="video/mp4")
