"""A fake Telegram Bot API server for the tests and benchmarks.

``FakeTelegram`` is an ``aiohttp`` server on 127.0.0.1 (a free port) that answers the Bot API methods
this bot calls, as python-telegram-bot sends them (``POST <base_url><token>/<method>``, form or multipart
bodies, non-string values JSON-encoded), and serves downloads at ``<base_file_url><token>/<file_path>``.
Any other method is 404 "Not Found", as Telegram answers an unknown one: a bot change that needs more
fails loudly here rather than against a half-modelled method.

A test plays the users (``send_text``, ``send_photo``, ``press_button``...), which queues Update JSON for
``getUpdates`` or the webhook, and watches the bot: every request is in ``calls`` (``BotCall``), the
messages it sent in ``bot_messages(chat_id)`` (``Message``: edits, deletion, uploaded bytes)::

    fake = FakeTelegram()
    await fake.start()  # then run the bot with fake.token, fake.base_url and fake.base_file_url
    fake.send_command(42, "/start")
    reply = await fake.wait_for_message(42, "welcome")
    fake.press_button(42, reply.message_id, "export")
    video = await fake.wait_for_message(42, kind="video", timeout=30)
    await fake.stop()

Everything runs on the test's event loop: never block it while the bot talks to the fake. Times
(``BotCall.at``, ``Message.sent_at``, ``WebhookDelivery.at``) are ``time.monotonic()``. As Telegram does:

- Chats are made on first use: id > 0 private (with the user whose id it is), ``-100...`` a supergroup,
  other negative ids a group (``set_chat`` to choose); a message with ``thread_id`` makes a supergroup a
  forum. Privacy mode: in groups the bot gets only commands, mentions of it and replies to its messages
  (the user action still returns the hidden update).
- HTML is parsed like tdlib: a malformed text is 400 "can't parse entities" (the bot sends HTML only, so
  Markdown is refused). At most 4096 characters a message, 1024 a caption. An edit without reply_markup
  drops the keyboard; one that changes nothing is "message is not modified". Deleting someone else's
  message in a group needs admin rights (``set_member_status``).
- Files: getFile up to 20 MB, uploads up to 50 MB. Media the bot sends may be an upload, a file id or a
  URL the fake fetches (``Message.sent_as``). Local Bot API mode (``use_local_mode``): 2000 MB both ways,
  getFile answers absolute paths.
- A second getUpdates ends the first with 409; long polls are capped at 1 s. After setWebhook each update
  is POSTed to the url (with the secret header, at most max_connections at once, retried with a doubling
  pause until a 2xx), every attempt in ``webhook_deliveries``; getUpdates is then 409.
- Faults on demand: ``fail_next``, ``delay_next``, ``block_bot`` (403), ``set_flood_limit``. Telegram's
  flood limits, opt-in (``flood_limits=True`` or ``enable_flood_limits``): 30 requests a second for the
  bot, a token bucket of 3 refilled at 1/s per chat, 20 a minute per group or channel (``FloodLimits``),
  counting ``FLOOD_COUNTED_METHODS`` only. Over a limit is 429 with ``retry_after`` (the whole seconds
  until it would be admitted) and counts toward nothing; ``too_many_requests`` counts every 429.
- Update ids start at a random number in [10**8, 10**9).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import itertools
import json
import math
import mimetypes
import os
import random
import re
import shutil
import socket
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial, partialmethod
from http import HTTPStatus
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlparse

import aiohttp
from aiohttp import web

Json = dict[str, Any]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DEFAULT_TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"
MAX_MESSAGE_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MB = 1024 * 1024
DOWNLOAD_LIMIT = 20 * MB  # cloud Bot API: getFile
UPLOAD_LIMIT = 50 * MB  # cloud Bot API: multipart uploads
LOCAL_MODE_LIMIT = 2000 * MB  # a local Bot API server (--local), both ways
PHOTO_LIMIT = 10 * MB  # an uploaded photo; its width + height at most 10000, its ratio at most 20
URL_LIMITS = {"photo": 5 * MB, "video": 20 * MB}  # what Telegram fetches by URL
MAX_POLL_TIMEOUT = 1.0  # the server's cap on getUpdates long polls, so that the bot stops quickly

# The methods answered (those the bot calls), each by FakeTelegram._api_<method>; any other is 404.
_METHODS = _words(
    "getMe getUpdates setWebhook deleteWebhook setMyCommands sendMessage editMessageText deleteMessage "
    "sendChatAction sendVideo sendPhoto sendMediaGroup answerCallbackQuery getFile setMessageReaction "
    "getChatMember setChatMenuButton createForumTopic"
)
# Requests Telegram's flood limits count; no other method ever gets a flood 429.
FLOOD_COUNTED_METHODS = _words(
    "sendMessage sendVideo sendPhoto sendMediaGroup editMessageText deleteMessage sendChatAction "
    "setMessageReaction"
)
CHAT_ACTIONS = _words(
    "typing upload_photo record_video upload_video record_voice upload_voice upload_document "
    "choose_sticker find_location record_video_note upload_video_note"
)
# Parameters PTB sends as plain strings: never JSON-decoded (a text "123" stays a str).
_STRING_PARAMS = _words(
    "text caption parse_mode callback_query_id file_id url language_code action secret_token video photo "
    "thumbnail"
)
_ADMIN_RIGHTS = _words(
    "can_manage_chat can_delete_messages can_manage_video_chats can_restrict_members can_promote_members "
    "can_change_info can_invite_users can_post_stories can_edit_stories can_delete_stories "
    "can_pin_messages"
)
_FORBIDDEN = {
    "private": "Forbidden: bot was blocked by the user",
    "group": "Forbidden: bot was kicked from the group chat",
    "supergroup": "Forbidden: bot was kicked from the supergroup chat",
    "channel": "Forbidden: bot is not a member of the channel chat",
}
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same as a "
    "current content and reply markup of the message"
)
# What users send: kind -> (getFile folder, the media object's fields and their defaults)
_USER_FILES: dict[str, tuple[str, Json]] = {
    "photo": ("photos", {}),
    "video": (
        "videos",
        dict(file_name="clip.mp4", mime_type="video/mp4", duration=2, width=1280, height=720),
    ),
    "document": ("documents", {"file_name": "file.bin", "mime_type": None}),
    "audio": ("music", {"file_name": "track.mp3", "mime_type": "audio/mpeg", "duration": 3}),
    "voice": ("voice", {"mime_type": "audio/ogg", "duration": 2}),
    "sticker": (
        "stickers",
        dict(emoji="🙂", type="regular", width=1280, height=720, is_animated=False, is_video=False),
    ),
}
_VIDEO_SIZES = {"duration": 0, "width": 1280, "height": 720}  # a video the bot sends: its defaults
_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
_MARKUPS = {"inline_keyboard", "keyboard", "remove_keyboard", "force_reply"}
_DEFAULT_EXT = {"photos": "jpg", "videos": "mp4", "music": "mp3", "voice": "oga", "stickers": "webp"}


# -- data types -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """A Telegram user acting in a test."""

    id: int
    first_name: str
    username: str | None = None
    language_code: str | None = "en"
    is_bot: bool = False
    last_name: str | None = None

    def to_dict(self) -> Json:
        data: Json = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


DEFAULT_GROUP_USER = User(id=1000, first_name="Member", username="member")


@dataclass
class UploadedFile:
    """A file the bot uploaded (a multipart part)."""

    filename: str
    content_type: str
    data: bytes


Files = dict[str, UploadedFile]


@dataclass
class BotCall:
    """One Bot API request; ``status`` and ``response`` are set once the fake has answered."""

    method: str  # canonical spelling, e.g. "sendMessage", whatever case the bot used
    params: Json  # JSON-decoded values (chat_id -> int, reply_markup -> dict, ...)
    files: Files
    at: float  # when the request arrived
    status: int | None = None
    response: Json | None = None

    @property
    def ok(self) -> bool:
        return bool(self.response and self.response.get("ok"))

    @property
    def description(self) -> str | None:
        return (self.response or {}).get("description")

    def __str__(self) -> str:
        shown = json.dumps(self.params, ensure_ascii=False, default=str)[:160]
        outcome = (
            "pending" if self.status is None else "ok" if self.ok else f"{self.status} {self.description}"
        )
        return f"{self.method} {shown} files={sorted(self.files)} -> {outcome}"


@dataclass
class Message:
    """A message the bot sent, as the chat shows it now (edits applied)."""

    message_id: int
    chat_id: int
    kind: str  # "text" | "video" | "photo"
    text: str  # the text, or the caption of media ("" when none), markup stripped
    source: str  # the text or caption exactly as the bot sent it (markup included)
    entities: list[Json]
    raw: Json  # the Bot API Message object as it is now
    reply_markup: Json | None  # as sent (inline keyboard, reply keyboard, force_reply)
    thread_id: int | None = None
    reply_to: int | None = None
    file: UploadedFile | None = None  # the uploaded bytes of a video or a photo
    disable_notification: bool = False  # sent silently
    sent_text: str = ""
    sent_at: float = field(default_factory=time.monotonic)
    sent_as: str = ""  # media: "upload", "file_id" or "url"
    media_group_id: str | None = None  # one of a sendMediaGroup album
    thumbnail: UploadedFile | None = None  # a video's uploaded thumbnail
    params: Json = field(default_factory=dict)  # media: the request's parameters (width, duration...)
    edits: list[str] = field(default_factory=list)  # the text after each edit, in order
    edited_at: list[float] = field(default_factory=list)  # when each of `edits` was made
    deleted: bool = False

    def __post_init__(self) -> None:
        self.sent_text = self.text

    @property
    def history(self) -> list[str]:
        """Every text the message has shown: as sent, then after each edit."""
        return [self.sent_text, *self.edits]

    def shown_at(self, contains: str) -> float | None:
        """When the message first showed `contains` (sent with it, or an edit that added it)."""
        times = [self.sent_at, *self.edited_at]
        return next((at for text, at in zip(self.history, times, strict=False) if contains in text), None)

    @property
    def buttons(self) -> list[Json]:
        """Inline keyboard buttons, flattened."""
        return [button for row in (self.reply_markup or {}).get("inline_keyboard") or [] for button in row]


@dataclass
class FloodLimits:
    """Telegram's flood limits as the fake enforces them (when on); every number may be changed."""

    global_limit: int = 30  # counted requests of the whole bot ...
    global_window: float = 1.0  # ... in any window of this many seconds
    chat_burst: int = 3  # per chat: a token bucket this big ...
    chat_rate: float = 1.0  # ... refilled at this many requests a second
    group_limit: int = 20  # per group, supergroup or channel (negative ids): counted requests ...
    group_window: float = 60.0  # ... in any window of this many seconds


class WebhookDelivery(NamedTuple):
    """One webhook POST: its HTTP status, or the exception it ended with ("TimeoutError"...)."""

    update_id: int
    outcome: int | str
    attempt: int  # from 1, per update
    at: float  # when the attempt ended


class EntityParseError(ValueError):
    """Raised by ``parse_html``; the message is Telegram's detail text."""


class _ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: Json | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters

    def payload(self) -> Json:
        data: Json = {"ok": False, "error_code": self.code, "description": self.description}
        return data | {"parameters": self.parameters} if self.parameters else data


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


def _conflict(description: str) -> _ApiError:
    return _ApiError(409, f"Conflict: {description}")


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes | None
    size: int
    folder: str
    file_name: str | None = None
    mime_type: str | None = None
    file_path: str | None = None  # getFile's answer (cloud mode), once asked
    local_path: str | None = None  # the bytes live in this file on disk (data is None)

    def ids(self) -> Json:
        return {"file_id": self.file_id, "file_unique_id": self.file_unique_id}


# A photo or video the bot sends, and how it came: "upload", "file_id" or "url"
_Resolved = tuple[_StoredFile, UploadedFile | None, str]


# -- text: UTF-16 offsets, HTML like tdlib, the entities a client detects --------------------------


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# The tags the fake parses (tdlib's, less span, tg-emoji and code languages), and their entity types
_HTML_TAGS = {
    **dict.fromkeys(("b", "strong"), "bold"),
    **dict.fromkeys(("i", "em"), "italic"),
    **dict.fromkeys(("u", "ins"), "underline"),
    **dict.fromkeys(("s", "strike", "del"), "strikethrough"),
    **{"tg-spoiler": "spoiler", "a": "text_link", "code": "code", "pre": "pre", "blockquote": "blockquote"},
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]+));")
_TAG_RE = re.compile(r"<(/?)([^\s>]*)")
_ATTRIBUTE_RE = re.compile(
    r"""\s*([^\s=>/"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9.-]*)(?=[\s>])))?"""
)
_TAG_END_RE = re.compile(r"\s*>")


def _html_entity(text: str, pos: int = 0) -> tuple[str, int] | None:
    """The character an HTML entity at ``pos`` stands for, and the position after it."""
    match = _ENTITY_RE.match(text, pos)
    if not match:
        return None
    if match[3] is not None:
        return (_NAMED_ENTITIES[match[3]], match.end()) if match[3] in _NAMED_ENTITIES else None
    code = int(match[1]) if match[1] is not None else int(match[2], 16)
    return None if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF else (chr(code), match.end())


def _unescape(match: re.Match[str]) -> str:
    return (_html_entity(match[0]) or (match[0],))[0]


def parse_html(text: str, *, strict_ampersand: bool = False) -> tuple[str, list[Json]]:
    """Telegram's HTML style: (plain text, entities), or EntityParseError with tdlib's message."""
    out: list[str] = []
    entities: list[Json] = []
    stack: list[tuple[str, str | None, int, int]] = []  # tag, href, UTF-16 start, source after the tag
    pos, u16 = 0, 0

    def at(index: int) -> str:
        return f"at byte offset {len(text[:index].encode())}"

    while pos < len(text):
        if text[pos] != "<":
            char, after = text[pos], pos + 1
            if char == "&":
                decoded = _html_entity(text, pos)
                if decoded is None and strict_ampersand:
                    raise EntityParseError(f"Unsupported HTML entity {at(pos)}")
                char, after = decoded or (char, after)
            out.append(char)
            u16, pos = u16 + _u16(char), after
            continue
        start, tag_match = pos, _TAG_RE.match(text, pos)
        assert tag_match is not None
        name = tag_match[2]
        if tag_match[1]:  # an end tag
            if not stack:
                raise EntityParseError(f"Unexpected end tag {at(start)}")
            end = _TAG_END_RE.match(text, tag_match.end())
            if end is None:
                raise EntityParseError(f"Unclosed end tag {at(start)}")
            tag, href, begin, inner = stack.pop()
            if name and name.lower() != tag:
                raise EntityParseError(
                    f'Unmatched end tag {at(start)}, expected "</{tag}>", found "</{name}>"'
                )
            pos = end.end()
            entity = {"type": _HTML_TAGS[tag], "offset": begin, "length": u16 - begin}
            if tag == "a":
                url = (text[inner:start] if href is None else href).strip()
                if not url or url.startswith("tg://user?id="):  # a text_mention needs a whole User: dropped
                    continue
                entity["url"] = url if "://" in url else "http://" + url
            if u16 > begin:
                entities.append(entity)
            continue
        if tag_match.end() >= len(text):
            raise EntityParseError(f"Unclosed start tag {at(start)}")
        tag = name.lower()
        if tag not in _HTML_TAGS:
            raise EntityParseError(f'Unsupported start tag "{tag}" {at(start)}')
        href, pos = None, tag_match.end()
        while attribute := _ATTRIBUTE_RE.match(text, pos):  # name, then "value", 'value' or value
            pos = attribute.end()
            if (tag, attribute[1].lower()) == ("a", "href") and attribute.lastindex != 1:
                href = (
                    attribute[4].lower()
                    if attribute[4] is not None
                    else _ENTITY_RE.sub(_unescape, attribute[2] or attribute[3] or "")
                )
        end = _TAG_END_RE.match(text, pos)
        if end is None:
            raise EntityParseError(f'Unclosed start tag "{tag}" {at(start)}')
        pos = end.end()
        stack.append((tag, href, u16, pos))
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(out), sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def _strip_text(text: str, entities: list[Json]) -> tuple[str, list[Json]]:
    """Telegram trims a message's leading and trailing whitespace; the entities are shifted and clipped."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    shift, limit = _u16(text[: len(text) - len(text.lstrip())]), _u16(stripped)
    result = []
    for entity in entities:
        start, end = max(0, entity["offset"] - shift), min(limit, entity["offset"] + entity["length"] - shift)
        if end > start:
            result.append({**entity, "offset": start, "length": end - start})
    return stripped, result


_DETECTED = (
    ("bot_command", re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>])")),
    ("mention", re.compile(r"(?<!\w)@[A-Za-z0-9_]{2,32}(?!\w)")),
    ("url", re.compile(r"(?<!\w)https?://[^\s<>\"]+")),
)


def detect_entities(text: str) -> list[Json]:
    """The entities a Telegram client attaches to plain text: bot commands, @mentions and URLs."""
    entities = [
        {"type": kind, "offset": _u16(text[: match.start()]), "length": _u16(match.group())}
        for kind, regex in _DETECTED
        for match in regex.finditer(text)
    ]
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


# -- small helpers --------------------------------------------------------------------------------


def _image(data: bytes) -> tuple[str, int, int] | None:
    """The format ("PNG" or "JPEG"), width and height of an image, if it is one."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return (str(image.format), *image.size) if image.format in ("PNG", "JPEG") else None
    except Exception:  # not an image Pillow can read
        return None


def _decode_param(key: str, value: str) -> Any:
    if key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _chat_key(params: Json) -> int | None:
    """The request's chat id, if it is an int (cheap: no validation)."""
    value = params.get("chat_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _thumbnail(reference: Any, files: Files, stored: _StoredFile) -> tuple[UploadedFile | None, Json | None]:
    """A video's ``attach://`` thumbnail, checked, and its PhotoSize JSON; (None, None) when none."""
    if not isinstance(reference, str) or not reference.startswith("attach://"):
        return None, None
    thumbnail = files.get(reference.removeprefix("attach://"))
    image = _image(thumbnail.data) if thumbnail is not None else None
    if thumbnail is None or image is None or image[0] != "JPEG":
        raise _bad("thumbnail must be a JPEG sent in the request")
    if max(image[1:]) > 320 or len(thumbnail.data) > 200 * 1000:
        raise _bad("thumbnail too large: at most 320x320 and 200 kB")
    ids = {key: f"THUMB{value}" for key, value in stored.ids().items()}
    return thumbnail, ids | {"file_size": len(thumbnail.data), "width": image[1], "height": image[2]}


def _error_response(code: int, description: str) -> web.Response:
    return web.json_response(_ApiError(code, description).payload(), status=code)


# -- the server -----------------------------------------------------------------------------------


class FakeTelegram:
    """A Bot API server double; see the module docstring."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "nemo_test_bot",
        *,
        privacy_mode: bool = True,
        max_poll_timeout: float = MAX_POLL_TIMEOUT,
        local_mode: bool = False,
        files_dir: str | os.PathLike[str] | None = None,
        flood_limits: bool = False,
        flood: FloodLimits | None = None,
        first_update_id: int | None = None,
    ) -> None:
        self.token, self.bot_username, self.privacy_mode = token, bot_username, privacy_mode
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_user = dict(id=self.bot_id, is_bot=True, first_name="Nemo Test", username=bot_username)
        self.max_poll_timeout, self.port = max_poll_timeout, 0
        self.url = self.base_url = self.base_file_url = ""  # set by start()
        self.calls: list[BotCall] = []
        self.callback_answers: dict[str, Json | None] = {}  # query id -> the bot's answer (None: open)
        self.reaction_history: dict[tuple[int, int], list[str]] = {}  # (chat, message) -> emoji set, in order
        self.deleted_user_messages: list[tuple[int, int]] = []  # (chat, message) the bot deleted
        self.menu_button: Json | None = None  # the private chats' menu button the bot set
        self.private_topics = False  # topics in private chats are on for the bot (Bot API 9.4)
        self.fetched_urls: list[str] = []  # media URLs the fake fetched for the bot, in order
        self.uploaded_videos = 0  # videos whose bytes the bot uploaded (not file ids or URLs)
        self.too_many_requests = 0  # every 429 answered
        # Flood limits: Telegram's (enable_flood_limits) and set_flood_limit's; logs of admitted times
        self.flood_limits, self.flood = flood_limits, flood or FloodLimits()
        self._flood_logs: dict[object, deque[float]] = defaultdict(deque)  # "bot", a group id, ("chat", id)
        self._buckets: dict[int, tuple[float, float]] = {}  # chat -> (tokens, when last refilled)
        self._chat_flood: tuple[int, float, int] | None = None  # (limit, seconds, retry_after)
        # Webhook: as the bot set it, the knobs a test may change, and every delivery attempt
        self.webhook_url, self.webhook_secret_token, self.webhook_max_connections = "", "", 40
        self.webhook_timeout = 5.0  # seconds a delivery may take before it counts as failed
        self.webhook_retry_seconds = 0.05  # the first pause before a failed delivery is retried ...
        self.webhook_retry_max_seconds = 1.0  # ... doubling up to this
        self.webhook_deliveries: list[WebhookDelivery] = []  # in the order they ended
        self._webhook_session: aiohttp.ClientSession | None = None  # while deliveries go on
        self._webhook_slots = asyncio.Semaphore()
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        # Chats, messages, files, updates
        self._chats: dict[int, Json] = {}
        self._private_users: dict[int, User] = {}
        self._members: dict[tuple[int, int], str] = {}
        self._next_message_id: dict[int, int] = {}
        self._messages: dict[tuple[int, int], Json] = {}  # every message of every chat (API JSON)
        self._topics: dict[tuple[int, int], Json] = {}
        self._bot_messages: dict[int, list[Message]] = {}
        self._bot_message_index: dict[tuple[int, int], Message] = {}
        self._files: dict[str, _StoredFile] = {}  # by file id
        self._paths: dict[str, _StoredFile] = {}  # by file path (downloads)
        self._ids = itertools.count(1)  # file ids, file paths, media groups, callback queries
        self._next_user_id = 7_000_000_001  # users(n)
        self._pending: list[Json] = []  # polling: not yet confirmed; webhook: not yet delivered
        self._next_update_id = first_update_id or random.randrange(10**8, 10**9)
        self._poll_generation = 0
        # Faults, waiters, the server
        self._failures: dict[str, list[_ApiError]] = {}
        self._delays: dict[str, list[float]] = {}
        self._blocked: set[int] = set()
        self._events: dict[object, asyncio.Event] = {}  # waiters on a chat id, or on "updates"
        self._changed = asyncio.Event()  # waiters on any change
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._request: web.Request | None = None  # the request being handled (read by getUpdates)
        self._handlers: dict[str, Callable[[Json, Files], Awaitable[Any]]] = {
            name: getattr(self, f"_api_{name}") for name in _METHODS
        }
        self._canonical = {name.lower(): name for name in self._handlers}
        self.local_mode, self.download_limit, self.upload_limit = False, DOWNLOAD_LIMIT, UPLOAD_LIMIT
        self.files_dir: Path | None = None  # local mode: where getFile puts bytes held in memory
        self._own_files_dir: str | None = None
        if local_mode:
            self.use_local_mode(files_dir)

    # -- lifecycle and addresses

    async def start(self) -> None:
        """Serve on 127.0.0.1 at a free port."""
        app = web.Application(client_max_size=self.upload_limit + 16 * MB)
        app.router.add_route("*", "/file/bot{token}/{path:.+}", self._serve_file)
        app.router.add_route("*", "/bot{token}/{method}", self._serve_api)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url, self.base_file_url = f"{self.url}/bot", f"{self.url}/file/bot"
        await web.SockSite(self._runner, sock).start()
        self._closing = False
        if self.webhook_url:
            self._start_webhook()

    async def stop(self) -> None:
        """End webhook deliveries, wake pending long polls and shut the server down."""
        self._closing = True
        await self._stop_webhook()
        self._notify("updates")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._own_files_dir is not None:
            shutil.rmtree(self._own_files_dir, ignore_errors=True)
            self._own_files_dir = self.files_dir = None

    # -- test controls

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 429,
        description: str = "",
        retry_after: int | None = 1,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with this error (429: with ``retry_after``)."""
        if error_code == 429:
            description = description or f"Too Many Requests: retry after {retry_after or 1}"
        elif not description:
            with contextlib.suppress(ValueError):
                description = HTTPStatus(error_code).phrase
        parameters = {"retry_after": retry_after} if error_code == 429 and retry_after is not None else None
        error = _ApiError(error_code, description or f"Error {error_code}", parameters)
        self._failures.setdefault(method.lower(), []).extend([error] * times)

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` calls of ``method`` for ``seconds`` before answering them."""
        self._delays.setdefault(method.lower(), []).extend([seconds] * times)

    def block_bot(self, chat_id: int) -> None:
        """Sends and edits to the chat answer 403 (blocked by the user, kicked from the group)."""
        self._blocked.add(chat_id)

    def unblock_bot(self, chat_id: int) -> None:
        self._blocked.discard(chat_id)

    def set_flood_limit(
        self, max_messages: int | None, per_seconds: float = 1.0, retry_after: int = 1
    ) -> None:
        """Per chat, more than ``max_messages`` sends or edits in ``per_seconds`` are 429 (None: off)."""
        self._chat_flood = None if max_messages is None else (max_messages, per_seconds, retry_after)
        for key in [key for key in self._flood_logs if isinstance(key, tuple)]:
            del self._flood_logs[key]

    def enable_flood_limits(self, enabled: bool = True, **limits: float) -> None:
        """Telegram's flood limits on (or off), from empty windows; ``limits`` change numbers of ``flood``."""
        self.flood_limits, self.flood = enabled, replace(self.flood, **limits)
        for key in [key for key in self._flood_logs if not isinstance(key, tuple)]:
            del self._flood_logs[key]
        self._buckets.clear()

    def users(self, n: int, *, language_code: str | None = "en") -> list[User]:
        """``n`` new private users with distinct ids, their chats registered (cheap, for load tests)."""
        made = []
        for _ in range(n):
            while self._next_user_id in self._chats:
                self._next_user_id += 1
            user_id = self._next_user_id
            self._private_users[user_id] = User(user_id, f"Load{user_id}", f"load{user_id}", language_code)
            self.set_chat(user_id, "private")
            made.append(self._private_users[user_id])
        return made

    def set_chat(
        self, chat_id: int, chat_type: str, *, title: str | None = None, is_forum: bool = False
    ) -> Json:
        """Register (or redefine) a chat: "private", "group", "supergroup" or "channel"; its Chat JSON."""
        if chat_type not in ("private", "group", "supergroup", "channel"):
            raise ValueError(f"unknown chat type {chat_type!r}")
        chat: Json = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            user = self._private_users.setdefault(chat_id, User(chat_id, f"User{chat_id}", f"user{chat_id}"))
            chat |= {k: v for k, v in user.to_dict().items() if k in ("first_name", "last_name", "username")}
        else:
            chat["title"] = title or f"{chat_type.title()} {chat_id}"
            if is_forum and chat_type == "supergroup":
                chat["is_forum"] = True
        self._chats[chat_id] = chat
        return dict(chat)

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        """What getChatMember answers: "creator", "administrator", "member", "left" or "kicked"."""
        self._members[(chat_id, user_id)] = status

    def use_local_mode(self, files_dir: str | os.PathLike[str] | None = None) -> None:
        """Act as a local Bot API server (``--local``) from now on; ``files_dir``: where getFile writes
        bytes held in memory (default: a temporary folder that ``stop`` removes). Call it before
        ``start`` for multipart uploads over 66 MB."""
        self.local_mode = True
        self.download_limit = self.upload_limit = LOCAL_MODE_LIMIT
        if files_dir is not None:
            self.files_dir = Path(files_dir)
            self.files_dir.mkdir(parents=True, exist_ok=True)

    # -- users act: each action returns its Update JSON; the keywords of _user_message choose the user,
    # the chat type, the forum topic and the message replied to

    def send_text(self, chat_id: int, text: str, *, entities: list[Json] | None = None, **kw: Any) -> Json:
        """A user writes ``text``; entities default to what a client detects (commands, mentions, URLs)."""
        found = detect_entities(text) if entities is None else entities
        return self._user_message(chat_id, {"text": text, **({"entities": found} if found else {})}, **kw)

    def send_command(self, chat_id: int, command: str, **kw: Any) -> Json:
        """``/start``, ``/export now``, ``/help@nemo_test_bot``...: text with a bot_command entity at 0."""
        text = command if command.startswith("/") else "/" + command
        entities = [e for e in detect_entities(text) if e["offset"] > 0 or e["type"] != "bot_command"]
        entities.insert(0, {"type": "bot_command", "offset": 0, "length": _u16(text.split(maxsplit=1)[0])})
        return self.send_text(chat_id, text, entities=entities, **kw)

    def _send_file(self, kind: str, chat_id: int, data: bytes | None, *names: str | None, **kw: Any) -> Json:
        folder, defaults = _USER_FILES[kind]
        fields = {**defaults, **dict(zip(("file_name", "mime_type"), names, strict=False))}
        fields.update({key: kw.pop(key) for key in list(kw) if key in defaults})
        stored = self._store_file(data, folder, kw.pop("size", None), fields.pop("file_name", None))
        stored.mime_type, stored.local_path = fields.pop("mime_type", None), kw.pop("local_path", None)
        media = self._photo_sizes(stored) if kind == "photo" else self._media_object(stored, **fields)
        content: Json = {kind: media}
        if caption := kw.pop("caption", None):
            entities = kw.pop("caption_entities", None)
            entities = detect_entities(caption) if entities is None else entities
            content |= {"caption": caption, "caption_entities": entities}
        content["media_group_id"] = kw.pop("media_group_id", None)
        return self._user_message(chat_id, {key: value for key, value in content.items() if value}, **kw)

    # A user sends a file: send_video(chat_id, data, **keywords): caption, caption_entities, media_group_id,
    # size (for the bytes' length), the media object's fields (file_name, mime_type, duration... as in
    # _USER_FILES), then those of _user_message. A document takes its file_name and mime_type by position
    # too. A photo has three PhotoSize entries, only the largest serving the bytes.
    send_photo = partialmethod(_send_file, "photo")
    send_video = partialmethod(_send_file, "video")
    send_document = partialmethod(_send_file, "document")
    send_audio = partialmethod(_send_file, "audio")
    send_voice = partialmethod(_send_file, "voice")
    send_sticker = partialmethod(_send_file, "sticker")

    def send_video_path(self, chat_id: int, path: str | os.PathLike[str], **kw: Any) -> Json:
        """A (large) video on disk, never read into memory: getFile answers its path in local mode, else
        it is served from disk at its file URL."""
        local = Path(path).absolute()
        kw["file_name"] = kw.get("file_name") or local.name
        return self._send_file("video", chat_id, None, size=local.stat().st_size, local_path=str(local), **kw)

    def send_album(
        self, chat_id: int, items: list[tuple[str, bytes, str]], caption: str = "", **kw: Any
    ) -> list[Json]:
        """2-10 items (kind "photo"|"video"|"document"|"audio", data, file name), one update each, sharing
        a media_group_id; ``caption`` goes on the first item, as clients do."""
        group_id, updates = f"1{next(self._ids):017d}", []
        for index, (kind, data, name) in enumerate(items):
            mime = mimetypes.guess_type(name)[0]
            names = () if kind == "photo" else (name, mime or _USER_FILES[kind][1]["mime_type"])
            keywords = {"caption": caption if index == 0 else None, "media_group_id": group_id, **kw}
            updates.append(self._send_file(kind, chat_id, data, *names, **keywords))
        return updates

    def edit_text(
        self, chat_id: int, message_id: int, new_text: str, *, entities: list[Json] | None = None
    ) -> Json:
        """The user edits their message (its caption, for media): an edited_message update."""
        message = self._messages.get((chat_id, message_id))
        if message is None or message.get("from", {}).get("id") == self.bot_id:
            raise ValueError(f"no user message {message_id} in chat {chat_id}")
        key, entities_key = ("text", "entities") if "text" in message else ("caption", "caption_entities")
        message[key] = new_text
        message.pop(entities_key, None)
        if found := (detect_entities(new_text) if entities is None else entities):
            message[entities_key] = found
        message["edit_date"] = int(time.time())
        kind = "edited_channel_post" if message["chat"]["type"] == "channel" else "edited_message"
        return self._queue_update(kind, message, self._bot_can_see(message))

    def press_button(
        self, chat_id: int, message_id: int, data: str, *, user: User | None = None, check: bool = True
    ) -> Json:
        """A user presses an inline button of a bot message: a callback_query update. With ``check`` the
        message must be there and show a button with this callback_data (``check=False``: a stale press)."""
        message = self._bot_message_index.get((chat_id, message_id))
        if check and (message is None or message.deleted):
            raise ValueError(f"bot message {message_id} in chat {chat_id} does not exist (or was deleted)")
        if check and message and data not in (shown := [b.get("callback_data") for b in message.buttons]):
            raise ValueError(f"message {message_id} has no button {data!r}; its buttons: {shown}")
        query_id = f"{self.bot_id}{next(self._ids):08d}"
        self.callback_answers[query_id] = None
        sender = user or self._default_user(self._ensure_chat(chat_id))
        instance = str(abs(hash((self.bot_id, chat_id))) % 10**18)
        query = {"id": query_id, "from": sender.to_dict(), "chat_instance": instance, "data": data}
        if message is not None:
            query["message"] = copy.deepcopy(message.raw)
        return self._queue_update("callback_query", query, True)

    def create_topic(self, chat_id: int, name: str = "Topic", *, user: User | None = None) -> int:
        """Open a forum topic (a service message update); returns its message_thread_id."""
        chat = self._ensure_chat(chat_id, "supergroup")
        chat["is_forum"] = True
        thread_id = self._allocate_message_id(chat_id)
        root = self._messages[(chat_id, thread_id)] = self._topic_root(chat_id, thread_id, name)
        root["from"] = (user or self._default_user(chat)).to_dict()
        self._queue_update("message", root, True)
        return thread_id

    # -- observe

    def bot_messages(self, chat_id: int) -> list[Message]:
        """Messages the bot sent to the chat, oldest first, deleted ones included (``deleted=True``)."""
        return list(self._bot_messages.get(chat_id, []))

    def message_count(self, chat_id: int) -> int:
        """How many messages the bot has sent to the chat: pass it as ``after=`` to wait for newer ones."""
        return len(self._bot_messages.get(chat_id, []))

    def activity(
        self, chat_id: int, methods: tuple[str, ...] = ("sendMessage", "editMessageText")
    ) -> list[BotCall]:
        """The bot's answered calls of ``methods`` to the chat, in order of arrival (their cadence)."""
        return [c for c in self.calls if c.method in methods and c.status and _chat_key(c.params) == chat_id]

    def reactions_on(self, chat_id: int, message_id: int) -> list[str]:
        """The reactions the bot set on a message, in order (``["👀", "👍"]``; "" when cleared)."""
        return list(self.reaction_history.get((chat_id, message_id), []))

    @property
    def pending_updates(self) -> list[Json]:
        """Queued updates the bot has not confirmed (polling) or received (webhook) yet."""
        return list(self._pending)

    def calls_to(self, method: str) -> list[BotCall]:
        return [call for call in self.calls if call.method == self._canonical.get(method.lower(), method)]

    async def wait_for(self, predicate: Callable[[BotCall], bool], timeout: float = 10.0) -> BotCall:  # noqa: ASYNC109
        """The first answered call, past or future, matching ``predicate``."""
        deadline, first_unanswered = time.monotonic() + timeout, 0
        while True:
            calls = self.calls[first_unanswered:]
            if call := next((c for c in calls if c.status is not None and predicate(c)), None):
                return call
            first_unanswered += next((i for i, c in enumerate(calls) if c.status is None), len(calls))
            if not await self._wait_change(deadline):
                raise TimeoutError(f"no matching Bot API call within {timeout}s.\n{self.dump_calls()}")

    async def wait_for_message(
        self,
        chat_id: int,
        contains: str | None = None,
        *,
        kind: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
        after: int = 0,
    ) -> Message:
        """A bot message in the chat (index >= ``after``) of ``kind`` whose text, as sent or after any edit
        (or its markup source), contains ``contains``, case-insensitively."""
        deadline, needle = time.monotonic() + timeout, (contains or "").casefold()
        while True:
            for message in self._bot_messages.get(chat_id, [])[after:]:
                texts = [*message.history, message.source]
                if kind in (None, message.kind) and any(needle in text.casefold() for text in texts):
                    return message
            if not await self._wait_change(deadline, chat_id):  # woken by calls for this chat only
                shown = "\n".join(
                    f"  #{i} id={m.message_id} {m.kind}{' (deleted)' if m.deleted else ''}: {m.history!r}"
                    for i, m in enumerate(self._bot_messages.get(chat_id, []))
                )
                raise TimeoutError(
                    f"no bot message in chat {chat_id} (index >= {after}) with kind={kind!r} containing "
                    f"{contains!r} within {timeout}s.\nBot messages in the chat:\n{shown or '  (none)'}\n"
                    f"{self.dump_calls()}"
                )

    async def wait_updates_consumed(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until the bot has every queued update: confirmed by a getUpdates offset, or a webhook 2xx."""
        deadline = time.monotonic() + timeout
        while self._pending:
            if not await self._wait_change(deadline):
                recent = "".join(f"  {delivery}\n" for delivery in self.webhook_deliveries[-10:])
                raise TimeoutError(
                    f"{len(self._pending)} updates not delivered within {timeout}s; webhook: "
                    f"{self.webhook_url or 'none'}, last deliveries:\n{recent}{self.dump_calls()}"
                )

    async def wait_webhook_delivered(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """``wait_updates_consumed`` with a webhook set (RuntimeError when none is)."""
        if not self.webhook_url:
            raise RuntimeError(f"no webhook is set: {len(self._pending)} updates wait for getUpdates")
        await self.wait_updates_consumed(timeout)

    def dump_calls(self, last: int = 25) -> str:
        start = max(0, len(self.calls) - last)
        lines = "".join(f"\n  [{start + i}] {call}" for i, call in enumerate(self.calls[start:]))
        return f"Last {len(self.calls) - start} of {len(self.calls)} Bot API calls:{lines or ' none'}"

    # -- HTTP

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        stored = self._paths.get(request.match_info["path"])
        if request.match_info["token"] != self.token:
            return _error_response(401, "Unauthorized")
        if stored is not None and stored.data is None and stored.local_path is not None:
            return web.FileResponse(stored.local_path, headers={"Content-Type": "application/octet-stream"})
        if stored is None or stored.data is None:
            return _error_response(404, "Not Found")
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _serve_api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error_response(401, "Unauthorized")
        method = self._canonical.get(request.match_info["method"].lower(), request.match_info["method"])
        raw: Json = dict(request.query)
        files: Files = {}
        if request.body_exists and request.content_type in _FORMS:
            try:
                form = await request.post()
            except web.HTTPRequestEntityTooLarge:
                return _error_response(413, "Request Entity Too Large")
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = UploadedFile(value.filename, value.content_type, value.file.read())
                else:
                    raw[key] = value
        params = {key: _decode_param(key, value) for key, value in raw.items()}
        call = BotCall(method, params, files, time.monotonic())
        self.calls.append(call)
        try:
            if delays := self._delays.get(method.lower()):
                await asyncio.sleep(delays.pop(0))
            if failures := self._failures.get(method.lower()):
                failure = failures.pop(0)
                raise _ApiError(failure.code, failure.description, failure.parameters)
            if method not in self._handlers:
                raise _ApiError(404, "Not Found")
            self._admit(method, call.params)
            self._request = request  # read by getUpdates before its first await
            status, payload = 200, {"ok": True, "result": await self._handlers[method](call.params, files)}
        except _ApiError as err:
            status, payload = err.code, err.payload()
        call.status, call.response = status, payload
        self.too_many_requests += status == 429
        self._notify(_chat_key(call.params))  # wait_for_message waits per chat: 1,000 waiters do not all wake
        return web.json_response(payload, status=status)

    def _admit(self, method: str, params: Json) -> None:
        """403 when the chat blocked the bot; 429 over a flood limit (then the request counts nowhere)."""
        counted = self.flood_limits and method in FLOOD_COUNTED_METHODS
        sending = method.startswith(("send", "edit")) and "chat_id" in params
        if not counted and not sending:
            return
        chat_id = self._chat_id(params) if "chat_id" in params else None
        if sending and chat_id in self._blocked:
            raise _ApiError(403, _FORBIDDEN[self._chats.get(chat_id, {}).get("type", "private")])
        now, limits = time.monotonic(), self.flood
        windows: list[tuple[object, int, float, int | None]] = []  # log key, limit, seconds, retry_after
        if counted:
            windows.append(("bot", limits.global_limit, limits.global_window, None))
            if chat_id is not None and chat_id < 0:
                windows.append((chat_id, limits.group_limit, limits.group_window, None))
        if sending and chat_id is not None and self._chat_flood is not None:
            windows.append((("chat", chat_id), *self._chat_flood))
        waits = [self._window_wait(*window, now) for window in windows]
        tokens = 0.0
        if counted and chat_id is not None:  # the chat's token bucket
            tokens, last = self._buckets.get(chat_id, (float(limits.chat_burst), now))
            tokens = min(float(limits.chat_burst), tokens + (now - last) * limits.chat_rate)
            waits.append((1 - tokens) / limits.chat_rate if tokens < 1 - 1e-9 else 0)
        if any(waits):
            retry = max(1, math.ceil(max(waits) - 1e-9))
            raise _ApiError(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})
        for key, *_ in windows:
            self._flood_logs[key].append(now)
        if counted and chat_id is not None:
            self._buckets[chat_id] = (tokens - 1, now)

    def _window_wait(self, key: object, limit: int, window: float, fixed: int | None, now: float) -> float:
        """0 if a sliding window (its log: the admitted times) takes one more request now, else ``fixed``
        (set_flood_limit's retry_after) or the seconds until it does."""
        log, limit = self._flood_logs[key], max(1, limit)
        while log and now - log[0] >= window:
            log.popleft()
        return 0.0 if len(log) < limit else fixed or log[len(log) - limit] + window - now

    def _notify(self, key: object = None) -> None:
        """Wake the waiters on any change, and those waiting on ``key`` (a chat id, or "updates")."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()
        if key is not None and key in self._events:
            self._events.pop(key).set()

    async def _wait_change(self, deadline: float, key: object = None) -> bool:
        """Wait for any change (or one for ``key``) until ``deadline``; False once it has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        event = self._changed if key is None else self._events.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), remaining)
        return True

    # -- the Bot API methods

    async def _api_getMe(self, params: Json, files: Files) -> Any:
        me = self.bot_user | {"can_join_groups": True, "can_read_all_group_messages": not self.privacy_mode}
        return me | ({"has_topics_enabled": True} if self.private_topics else {})

    async def _api_getUpdates(self, params: Json, files: Files) -> Any:
        if self.webhook_url:
            raise _conflict(
                "can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
            )
        offset, limit = int(params.get("offset") or 0), min(max(int(params.get("limit") or 100), 1), 100)
        if offset > 0:
            self._pending = [update for update in self._pending if update["update_id"] >= offset]
        elif offset < 0:
            self._pending = self._pending[offset:]
        self._poll_generation += 1
        generation, request = self._poll_generation, self._request
        self._notify("updates")  # an older poll ends (409)
        deadline = time.monotonic() + min(max(float(params.get("timeout") or 0), 0.0), self.max_poll_timeout)
        while True:
            if self._pending or self._closing:
                return copy.deepcopy(self._pending[:limit])
            if self.webhook_url:
                raise _conflict("terminated by setWebhook request")
            if generation != self._poll_generation:
                if request is None or request.transport is None or request.transport.is_closing():
                    return []  # the client gave up on this poll (PTB cancels it on shutdown)
                raise _conflict(
                    "terminated by other getUpdates request; make sure that only one bot instance is running"
                )
            if not await self._wait_change(deadline, "updates"):
                return []

    async def _api_setWebhook(self, params: Json, files: Files) -> Any:
        url, secret = str(params.get("url") or ""), str(params.get("secret_token") or "")
        if not url:  # an empty url removes the webhook
            return await self._api_deleteWebhook(params, files)
        if urlparse(url).scheme not in ("http", "https") or not urlparse(url).hostname:  # http: for loopback
            raise _bad("invalid webhook URL specified")
        if len(secret) > 256:
            raise _bad("secret token is too long")
        if not re.fullmatch(r"[A-Za-z0-9_-]*", secret):
            raise _bad("secret token contains unallowed characters")
        most = 100_000 if self.local_mode else 100
        connections = min(max(_int(params.get("max_connections"), 40), 1), most)
        settings = (url, secret, connections)
        if params.get("drop_pending_updates"):
            self._pending.clear()
        elif settings == (self.webhook_url, self.webhook_secret_token, self.webhook_max_connections):
            return True  # "Webhook is already set": the deliveries in flight go on
        await self._stop_webhook()
        self.webhook_url, self.webhook_secret_token, self.webhook_max_connections = settings
        self._notify("updates")  # a long poll in progress ends with 409
        self._start_webhook()
        return True

    async def _api_deleteWebhook(self, params: Json, files: Files) -> Any:
        await self._stop_webhook()
        self.webhook_url, self.webhook_secret_token, self.webhook_max_connections = "", "", 40
        if params.get("drop_pending_updates"):
            self._pending.clear()
        self._notify()
        return True

    async def _api_setMyCommands(self, params: Json, files: Files) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("can't parse commands JSON object")
        for command in commands:
            command = command if isinstance(command, dict) else {}
            if not re.fullmatch(r"/?[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description := str(command.get("description") or "")) <= 256:
                raise _bad(
                    "BOT_COMMAND_DESCRIPTION_INVALID" if description else "command description is empty"
                )
        return True

    async def _api_sendMessage(self, params: Json, files: Files) -> Any:
        return self._sent(self._target_chat(params), params, files)

    async def _api_sendPhoto(self, params: Json, files: Files) -> Any:
        chat, media = self._target_chat(params), await self._media("photo", params.get("photo"), files)
        return self._sent(chat, params, files, media)

    async def _api_sendVideo(self, params: Json, files: Files) -> Any:
        chat, media = self._target_chat(params), await self._media("video", params.get("video"), files)
        return self._sent(chat, params, files, media)

    async def _api_sendMediaGroup(self, params: Json, files: Files) -> Any:
        """2-10 photos and videos, one message each sharing a media_group_id, each with its own caption."""
        chat, items = self._target_chat(params), params.get("media")
        if not isinstance(items, list) or not 2 <= len(items) <= 10:
            too_many = isinstance(items, list) and len(items) > 10
            raise _bad("Too much messages to send as an album" if too_many else "Too few media in the group")
        if not all(isinstance(item, dict) and item.get("type") in ("photo", "video") for item in items):
            raise _bad("media group may contain only photos and videos here")
        group_id = f"2{next(self._ids):017d}"
        # All resolved first: one refused item refuses the whole album, as Telegram does.
        resolved = [await self._media(item["type"], item.get("media"), files, attach=True) for item in items]
        return [
            self._sent(chat, {**params, **item, "media": None}, files, media, group_id)
            for item, media in zip(items, resolved, strict=True)
        ]

    async def _api_editMessageText(self, params: Json, files: Files) -> Any:
        if "chat_id" not in params or "message_id" not in params:
            raise _bad("message identifier is not specified")
        key = (self._chat_id(params), int(params["message_id"]))
        message = self._bot_message_index.get(key)
        if message is None and key in self._messages:
            raise _bad("message can't be edited")
        if message is None or message.deleted:
            raise _bad("message to edit not found")
        markup = self._check_markup(params.get("reply_markup"), self._chats.get(key[0]))
        if markup is not None and "inline_keyboard" not in markup:
            raise _bad("reply markup must be an inline keyboard")
        if message.kind != "text":
            raise _bad("there is no text in the message to edit")
        text, entities = self._text(params, "MESSAGE_TOO_LONG")
        if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
            raise _bad(NOT_MODIFIED)
        if text != message.text or params["text"] != message.source:
            message.edits.append(text)
            message.edited_at.append(time.monotonic())
        message.text, message.entities, message.reply_markup = text, entities, markup
        message.source = params["text"]
        message.raw.update(text=text, edit_date=int(time.time()), entities=entities, reply_markup=markup)
        for field_name in ("entities", "reply_markup"):  # left out: removed
            if not message.raw[field_name]:
                del message.raw[field_name]
        return copy.deepcopy(message.raw)

    async def _api_deleteMessage(self, params: Json, files: Files) -> Any:
        chat_id = self._chat_id(params)
        if params.get("message_id") in (None, ""):
            raise _bad("message identifier is not specified")
        key = (chat_id, int(params["message_id"]))
        bot_message, stored = self._bot_message_index.get(key), self._messages.get(key)
        admin = self._members.get((chat_id, self.bot_id)) in ("administrator", "creator")
        if bot_message is None and stored is not None and chat_id < 0 and not admin:
            raise _bad("message can't be deleted")  # someone else's, in a group: admins only
        self._messages.pop(key, None)
        if bot_message is not None and not bot_message.deleted:
            bot_message.deleted = True
        elif stored is None:
            raise _bad("message to delete not found")
        else:
            self.deleted_user_messages.append(key)
        return True

    async def _api_sendChatAction(self, params: Json, files: Files) -> Any:
        self._target_chat(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    async def _api_answerCallbackQuery(self, params: Json, files: Files) -> Any:
        query_id = str(params.get("callback_query_id") or "")
        if self.callback_answers.get(query_id, True) is not None:  # unknown, or answered already
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        if len(str(params.get("text") or "")) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = dict(params)
        return True

    async def _api_getFile(self, params: Json, files: Files) -> Any:
        stored = self._files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise _bad("invalid file_id")
        if stored.size > self.download_limit:
            raise _bad("file is too big")
        if self.local_mode and stored.local_path is None:  # an absolute path, which PTB copies
            if stored.data is None:
                raise _bad("wrong file_id or the file is temporarily unavailable")
            target = self._local_dir() / stored.folder / self._file_name(stored)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(stored.data)
            stored.local_path = str(target)
        elif not self.local_mode and stored.file_path is None:
            stored.file_path = f"{stored.folder}/{self._file_name(stored)}"
            self._paths[stored.file_path] = stored
        path = stored.local_path if self.local_mode else stored.file_path
        return stored.ids() | {"file_size": stored.size, "file_path": path}

    async def _api_setMessageReaction(self, params: Json, files: Files) -> Any:
        from telegram.constants import ReactionEmoji

        key = (self._chat_id(params), int(params.get("message_id") or 0))
        if key not in self._messages:
            raise _bad("message to react not found")
        reactions, allowed = params.get("reaction") or [], {e.value for e in ReactionEmoji}
        if not isinstance(reactions, list) or not all(isinstance(r, dict) for r in reactions):
            raise _bad("REACTION_INVALID")
        if any(r.get("type") == "emoji" and r.get("emoji") not in allowed for r in reactions):
            raise _bad("REACTION_INVALID")
        shown = "".join(str(r.get("emoji") or r.get("custom_emoji_id") or "") for r in reactions)
        self.reaction_history.setdefault(key, []).append(shown)
        return True

    async def _api_getChatMember(self, params: Json, files: Files) -> Any:
        chat, user_id = self._target_chat(params), int(params.get("user_id") or 0)
        if user_id == self.bot_id:
            user = self.bot_user
        elif chat["type"] == "private" and user_id == chat["id"]:
            user = self._default_user(chat).to_dict()
        else:
            user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        member: Json = {"status": self._members.get((chat["id"], user_id), "member"), "user": user}
        if member["status"] in ("creator", "administrator"):
            member["is_anonymous"] = False
        if member["status"] == "administrator":
            member.update(dict.fromkeys(_ADMIN_RIGHTS, True), can_be_edited=False)
        if member["status"] == "kicked":
            member["until_date"] = 0
        return member

    # -- the bot's messages

    def _chat_id(self, params: Json) -> int:
        if params.get("chat_id") in (None, ""):
            raise _bad("chat_id is empty")
        try:
            return int(params["chat_id"])
        except (TypeError, ValueError) as err:
            raise _bad("chat not found") from err

    def _target_chat(self, params: Json) -> Json:
        return self._ensure_chat(self._chat_id(params))

    def _text(self, params: Json, too_long: str) -> tuple[str, list[Json]]:
        """The text of sendMessage or editMessageText, parsed: (plain text, entities)."""
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad("message text is empty")
        plain, entities = self._format(text, params.get("parse_mode"), params.get("entities"))
        if not plain:
            raise _bad("message text is empty")
        if len(plain) > MAX_MESSAGE_LENGTH:
            raise _bad(too_long)
        return plain, entities

    def _format(self, text: str, parse_mode: str | None, entities: Any) -> tuple[str, list[Json]]:
        """(plain text, entities) of a text or caption: HTML parsed like tdlib, or the entities given."""
        if (parse_mode or "").lower() == "html":
            try:
                return _strip_text(*parse_html(text))
            except EntityParseError as err:
                raise _bad(f"can't parse entities: {err}") from err
        if parse_mode:
            raise _bad(f"unsupported parse_mode {parse_mode} (the fake parses HTML only)")
        return _strip_text(text, list(entities) if isinstance(entities, list) else [])

    async def _api_setChatMenuButton(self, params: Json, files: Files) -> Any:
        button = params.get("menu_button")
        button = json.loads(button) if isinstance(button, str) else button
        if not isinstance(button, dict) or button.get("type") not in ("commands", "web_app", "default"):
            raise _bad("can't parse menu button JSON object")
        if button["type"] == "web_app" and not str((button.get("web_app") or {}).get("url", "")).startswith(
            "https://"
        ):
            raise _bad("BUTTON_URL_INVALID")  # Mini Apps open over HTTPS only
        self.menu_button = button
        return True

    async def _api_createForumTopic(self, params: Json, files: Files) -> Any:
        chat = self._target_chat(params)
        if not (chat.get("is_forum") or (chat["type"] == "private" and self.private_topics)):
            raise _bad("the chat is not a forum")
        name = str(params.get("name") or "")
        if not 1 <= len(name) <= 128:
            raise _bad("TOPIC_NAME_INVALID" if name else "topic name is empty")
        thread_id = self._allocate_message_id(chat["id"])
        root = self._messages[(chat["id"], thread_id)] = self._topic_root(chat["id"], thread_id, name)
        root["from"] = dict(self.bot_user)
        return {"message_thread_id": thread_id, "name": name, "icon_color": 7322096}

    def _check_markup(self, markup: Any, chat: Json | None = None) -> Json | None:
        if markup in (None, ""):
            return None
        if not isinstance(markup, dict) or not _MARKUPS & set(markup):
            raise _bad("can't parse reply keyboard markup JSON object")
        for button in (button for row in markup.get("inline_keyboard", []) for button in row):
            if "callback_data" in button and not 1 <= len(str(button["callback_data"]).encode()) <= 64:
                raise _bad("BUTTON_DATA_INVALID")
            if "url" in button and not re.match(r"(https?|tg)://\S+$", str(button["url"])):
                raise _bad(f"inline keyboard button URL '{button['url']}' is invalid: Wrong HTTP URL")
            if "web_app" in button:  # Mini App buttons: HTTPS, and in private chats only
                if chat is not None and chat.get("type") != "private":
                    raise _bad("BUTTON_TYPE_INVALID")
                if not str((button["web_app"] or {}).get("url", "")).startswith("https://"):
                    raise _bad("BUTTON_URL_INVALID")
        return markup

    def _sent(
        self, chat: Json, params: Json, files: Files, media: _Resolved | None = None, group: str = ""
    ) -> Json:
        """Store a message the bot sent: a text, or ``media`` (a photo or video), in album ``group``."""
        markup = self._check_markup(params.get("reply_markup"), chat)
        reply_to = self._reply_target(chat["id"], params)
        thread_id = _int(params.get("message_thread_id"), 0) or None
        stored, upload, how = media or (None, None, "")
        kind = stored.folder.removesuffix("s") if stored else "text"
        thumbnail = None
        if kind == "text":
            source = params.get("text")
            text, entities = self._text(params, "message is too long")
            preview = params.get("link_preview_options")
            content = {"text": text, "entities": entities, "link_preview_options": preview}
        else:
            assert stored is not None
            source = str(params.get("caption") or "")
            text, entities = self._format(source, params.get("parse_mode"), params.get("caption_entities"))
            if _u16(text) > MAX_CAPTION_LENGTH:
                raise _bad("message caption is too long")
            if kind == "photo":
                content = {"photo": self._photo_sizes(stored)}
            else:
                sizes = {key: _int(params.get(key), default) for key, default in _VIDEO_SIZES.items()}
                thumbnail, thumbnail_json = _thumbnail(params.get("thumbnail"), files, stored)
                content = {"video": self._media_object(stored, **sizes, thumbnail=thumbnail_json)}
            content |= {"caption": text, "caption_entities": entities, "media_group_id": group}
        content["reply_markup"] = markup if markup and "inline_keyboard" in markup else None
        content = {key: value for key, value in content.items() if value}
        raw = self._new_message(chat, self.bot_user, thread_id, reply_to, content)
        message = Message(raw["message_id"], chat["id"], kind, text, str(source), entities, raw, markup)
        message.thread_id, message.reply_to, message.file = thread_id, reply_to, upload
        message.disable_notification = bool(params.get("disable_notification"))
        self._bot_messages.setdefault(chat["id"], []).append(message)
        self._bot_message_index.setdefault((chat["id"], message.message_id), message)
        if kind != "text":
            message.sent_as, message.media_group_id, message.thumbnail = how, group or None, thumbnail
            message.params = {k: v for k, v in params.items() if k not in ("media", "reply_markup")}
            self.uploaded_videos += kind == "video" and how == "upload"  # counted once it is accepted
        return copy.deepcopy(raw)

    def _reply_target(self, chat_id: int, params: Json) -> int | None:
        """The message ``reply_parameters`` points at in this chat, if any (replies across chats: none)."""
        reply = params.get("reply_parameters")
        if not isinstance(reply, dict) or reply.get("chat_id") not in (None, chat_id, str(chat_id)):
            return None
        if reply.get("message_id") in (None, ""):
            return None
        if (chat_id, target := int(reply["message_id"])) in self._messages:
            return target
        if reply.get("allow_sending_without_reply"):
            return None
        raise _bad("message to be replied not found")

    async def _media(self, kind: str, value: Any, files: Files, *, attach: bool = False) -> _Resolved:
        """A photo or video the bot sends, and how it came: an "upload" (in an album by ``attach://``), a
        "file_id" the fake issued, or a "url" the fake fetches."""
        if value in (None, "") or (isinstance(value, str) and value.startswith("attach://")):
            part = kind if value in (None, "") and not attach else str(value).removeprefix("attach://")
            if (upload := files.get(part)) is None:
                raise _bad(f"there is no {kind} in the request")
            return self._stored_upload(kind, upload), upload, "upload"
        if not isinstance(value, str):
            raise _bad("wrong file identifier/HTTP URL specified")
        if value.startswith(("http://", "https://")):
            return await self._fetch_media(kind, value), None, "url"
        stored = self._files.get(value)
        if stored is None:
            raise _bad("wrong file identifier/HTTP URL specified")
        if stored.folder != f"{kind}s":
            have = {"photos": "Photo", "videos": "Video"}.get(stored.folder, "Document")
            raise _bad(f"can't use file of type {have} as {kind.title()}")
        return stored, None, "file_id"

    def _stored_upload(self, kind: str, upload: UploadedFile) -> _StoredFile:
        """An uploaded photo or video, checked as Telegram checks it."""
        if not upload.data:
            raise _bad("file must be non-empty")
        if len(upload.data) > self.upload_limit:
            raise _ApiError(413, "Request Entity Too Large")
        if kind == "video":
            mime = upload.content_type
            if not mime or mime == "application/octet-stream":  # Telegram sniffs the real type
                mime = mimetypes.guess_type(upload.filename)[0] or "video/mp4"
            return self._store_file(upload.data, "videos", None, upload.filename, mime)
        if len(upload.data) > PHOTO_LIMIT:
            raise _bad("PHOTO_SAVE_FILE_INVALID")
        if (image := _image(upload.data)) is None:
            raise _bad("IMAGE_PROCESS_FAILED")
        if sum(image[1:]) > 10000 or max(image[1:]) > 20 * max(1, min(image[1:])):
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        return self._store_file(upload.data, "photos", None, upload.filename, f"image/{image[0].lower()}")

    async def _fetch_media(self, kind: str, url: str) -> _StoredFile:
        """Fetch a photo or video by URL, as Telegram's servers do, and check what came."""
        self.fetched_urls.append(url)
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
                data = await response.content.read(URL_LIMITS[kind] + 1)
                if response.status != 200 or len(data) > URL_LIMITS[kind]:
                    raise _bad("failed to get HTTP URL content")
        except (aiohttp.ClientError, TimeoutError) as err:
            raise _bad("failed to get HTTP URL content") from err
        if kind == "photo" and _image(data) is not None:
            return self._store_file(data, "photos")
        if kind == "video" and data[4:8] == b"ftyp":
            name = unquote(urlparse(url).path.rsplit("/", 1)[-1]) or "video.mp4"
            return self._store_file(data, "videos", None, name, "video/mp4")
        raise _bad("wrong type of the web page content")

    # -- files

    def _store_file(
        self, data: bytes | None, folder: str, size: int | None = None, *named: str | None
    ) -> _StoredFile:
        """A file with a new file id; ``named``: its file_name and mime_type, if known."""
        number = next(self._ids)
        file_id = f"FAKE{folder[:3].upper()}{number:06d}AAQCAgADfake{self.bot_id}"
        size = len(data or b"") if size is None else size
        self._files[file_id] = _StoredFile(file_id, f"AQAD{number:06d}", data, size, folder, *named)
        return self._files[file_id]

    def _file_name(self, stored: _StoredFile) -> str:
        """A new name for a file's bytes (getFile), with its extension."""
        ext = ""
        if stored.file_name and "." in stored.file_name:
            ext = stored.file_name.rsplit(".", 1)[1].lower()
        elif stored.mime_type:
            ext = (mimetypes.guess_extension(stored.mime_type) or "").lstrip(".")
        ext = ext or _DEFAULT_EXT.get(stored.folder, "")
        return f"file_{next(self._ids)}{'.' + ext if ext else ''}"

    def _local_dir(self) -> Path:
        if self.files_dir is None:
            self._own_files_dir = tempfile.mkdtemp(prefix="fake-telegram-files-")
            self.files_dir = Path(self._own_files_dir)
        return self.files_dir

    def _photo_sizes(self, stored: _StoredFile) -> list[Json]:
        """Three PhotoSize entries: two thumbnails (placeholder bytes) and the photo itself."""
        _, width, height = _image(stored.data or b"") or ("", 1280, 720)
        sizes = []
        for side in (90, 320):
            scale = min(1.0, side / max(width, height, 1))
            w, h = max(1, round(width * scale)), max(1, round(height * scale))
            sizes.append((self._store_file(f"fake thumbnail {w}x{h}".encode(), "photos"), w, h))
        return [
            s.ids() | {"width": w, "height": h, "file_size": s.size}
            for s, w, h in [*sizes, (stored, width, height)]
        ]

    def _media_object(self, stored: _StoredFile, **fields: Any) -> Json:
        """The Video/Audio/Voice/Document/Sticker object of a stored file (``fields`` None: left out)."""
        fields |= {"file_name": stored.file_name, "mime_type": stored.mime_type, "file_size": stored.size}
        return stored.ids() | {key: value for key, value in fields.items() if value is not None}

    # -- chats and the users' messages

    def _allocate_message_id(self, chat_id: int) -> int:
        number = self._next_message_id.get(chat_id, 1)
        while (chat_id, number) in self._messages or (chat_id, number) in self._topics:
            number += 1
        self._next_message_id[chat_id] = number + 1
        return number

    def _ensure_chat(self, chat_id: int, chat_type: str | None = None, user: User | None = None) -> Json:
        """The chat, made on first use; ``chat_type`` None: as registered, else inferred from the id."""
        chat = self._chats.get(chat_id)
        if chat is not None and chat_type in (None, chat["type"]):
            return chat
        inferred = "private" if chat_id > 0 else "supergroup" if str(chat_id).startswith("-100") else "group"
        chat_type = chat_type or inferred
        if chat_type == "private" and user is not None:
            self._private_users.setdefault(chat_id, user)
        self.set_chat(chat_id, chat_type)
        return self._chats[chat_id]

    def _default_user(self, chat: Json) -> User:
        """The user acting when a test names none: the private chat's own user, else DEFAULT_GROUP_USER."""
        if chat["type"] != "private":
            return DEFAULT_GROUP_USER
        user_id = chat["id"]
        return self._private_users.get(user_id) or User(user_id, f"User{user_id}", f"user{user_id}")

    def _topic_root(self, chat_id: int, thread_id: int, name: str | None = None) -> Json:
        """The forum_topic_created service message of a topic (made on first use)."""
        if (chat_id, thread_id) not in self._topics:
            chat = dict(self._chats[chat_id])
            root: Json = {"message_id": thread_id, "date": int(time.time()), "chat": chat}
            root |= {"from": DEFAULT_GROUP_USER.to_dict(), "message_thread_id": thread_id}
            root["is_topic_message"] = True
            root["forum_topic_created"] = {"name": name or f"Topic {thread_id}", "icon_color": 7322096}
            self._topics[(chat_id, thread_id)] = root
        return copy.deepcopy(self._topics[(chat_id, thread_id)])

    def _new_message(
        self, chat: Json, sender: Json, thread_id: int | None, reply_to: int | None, content: Json
    ) -> Json:
        """A new Message object in the chat (by the bot or a user), stored; a channel's has sender_chat."""
        chat_id = chat["id"]
        message_id = self._allocate_message_id(chat_id)
        raw: Json = {"message_id": message_id, "date": int(time.time()), "chat": dict(chat)}
        if chat["type"] == "channel":
            raw["sender_chat"] = dict(chat)
        else:
            raw["from"] = dict(sender)
        if thread_id is not None:
            raw["message_thread_id"] = thread_id
            if chat.get("is_forum") or (chat["type"] == "private" and self.private_topics):
                raw["is_topic_message"] = True
        if reply_to is not None:
            if (chat_id, reply_to) not in self._messages:
                raise ValueError(f"no message {reply_to} in chat {chat_id} to reply to")
            raw["reply_to_message"] = copy.deepcopy(self._messages[(chat_id, reply_to)])
            raw["reply_to_message"].pop("reply_to_message", None)
        elif thread_id is not None and chat.get("is_forum"):
            raw["reply_to_message"] = self._topic_root(chat_id, thread_id)
        raw.update(content)
        self._messages[(chat_id, message_id)] = raw
        return raw

    def _user_message(
        self,
        chat_id: int,
        content: Json,
        *,
        user: User | None = None,
        chat_type: str | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
    ) -> Json:
        chat = self._ensure_chat(chat_id, chat_type, user)
        if thread_id is not None and chat["type"] == "supergroup":
            chat["is_forum"] = True
        sender = (user or self._default_user(chat)).to_dict()
        message = self._new_message(chat, sender, thread_id, reply_to, content)
        kind = "channel_post" if chat["type"] == "channel" else "message"
        return self._queue_update(kind, message, self._bot_can_see(message))

    def _bot_can_see(self, message: Json) -> bool:
        """Privacy mode: in groups only commands, mentions of the bot and replies to it get through."""
        if not self.privacy_mode or message["chat"]["type"] not in ("group", "supergroup"):
            return True
        text = message.get("text") or message.get("caption") or ""
        first, mention = (text.split(maxsplit=1) or [""])[0], "@" + self.bot_username.lower()
        if first.startswith("/") and ("@" not in first or first.lower().endswith(mention)):
            return True
        replied = (message.get("reply_to_message") or {}).get("from", {}).get("id") == self.bot_id
        return replied or mention in text.lower() or "forum_topic_created" in message

    def _queue_update(self, key: str, payload: Json, visible: bool) -> Json:
        """A new update, queued unless privacy mode hides it (``visible`` False); returned either way."""
        update = {"update_id": self._next_update_id, key: copy.deepcopy(payload)}
        self._next_update_id += 1
        if visible:
            self._pending.append(update)
            if self._webhook_session is not None:
                self._deliver_later(update)
        self._notify("updates")
        return update

    # -- webhook delivery

    def _start_webhook(self) -> None:
        """Deliver every queued update to ``webhook_url``, at most ``webhook_max_connections`` at once."""
        connector = aiohttp.TCPConnector(limit=self.webhook_max_connections)
        self._webhook_session = aiohttp.ClientSession(connector=connector)
        self._webhook_slots = asyncio.Semaphore(self.webhook_max_connections)
        for update in self._pending:
            self._deliver_later(update)

    async def _stop_webhook(self) -> None:
        """Cancel the deliveries in flight (their updates stay queued) and wait for them to end."""
        session, self._webhook_session = self._webhook_session, None
        tasks = list(self._webhook_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if session is not None:
            await session.close()

    def _deliver_later(self, update: Json) -> None:
        name = f"webhook delivery {update['update_id']}"
        task = asyncio.get_running_loop().create_task(self._deliver(update), name=name)
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_tasks.discard)

    async def _deliver(self, update: Json) -> None:
        """POST the update until a 2xx, the pause between attempts doubling from ``webhook_retry_seconds``
        up to ``webhook_retry_max_seconds``."""
        session, pause = self._webhook_session, self.webhook_retry_seconds
        assert session is not None
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook_secret_token
        body = json.dumps(update, ensure_ascii=False).encode()
        post = partial(
            session.post, data=body, headers=headers, timeout=aiohttp.ClientTimeout(self.webhook_timeout)
        )
        async with self._webhook_slots:
            for attempt in itertools.count(1):
                try:
                    async with post(self.webhook_url) as response:
                        await response.read()
                        outcome: int | str = response.status
                except (TimeoutError, aiohttp.ClientError) as err:
                    outcome = type(err).__name__
                delivery = WebhookDelivery(update["update_id"], outcome, attempt, time.monotonic())
                self.webhook_deliveries.append(delivery)
                if isinstance(outcome, int) and 200 <= outcome <= 299:
                    with contextlib.suppress(ValueError):  # gone already if drop_pending_updates raced it
                        self._pending.remove(update)
                    self._notify()
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.webhook_retry_max_seconds)
