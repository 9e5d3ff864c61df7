"""A fake Telegram Bot API server for tests.

`FakeTelegram` is an ``aiohttp.web`` server on 127.0.0.1 (a free port) that speaks the part of the Bot
API this bot uses, the way python-telegram-bot calls it: ``POST <base_url><token>/<method>`` with
form-encoded or multipart bodies (non-string values JSON-encoded), and file downloads from
``GET <base_file_url><token>/<file_path>``. A test plays the users (``send_text``, ``send_photo``,
``press_button``...), which queues realistic Update JSON for ``getUpdates`` or the webhook; every call
the bot makes is recorded in ``calls`` and the messages it sends are kept per chat (``bot_messages``),
with edits, deletions and uploaded bytes.

Methods answered: getMe, getUpdates, setWebhook, deleteWebhook, getWebhookInfo, setMyCommands,
sendMessage, editMessageText, deleteMessage, sendChatAction, sendVideo, sendPhoto, sendMediaGroup,
answerCallbackQuery, getFile, setMessageReaction, getChatMember. Any other method is 404 "Not Found", as Telegram answers an unknown
one: a bot change that needs more fails loudly here rather than against a half-modelled method.

Usage (end to end, with the real bot process)::

    fake = FakeTelegram()
    await fake.start()
    env = {"TELEGRAM_BOT_TOKEN": fake.token, "TELEGRAM_BASE_URL": fake.base_url,
           "TELEGRAM_BASE_FILE_URL": fake.base_file_url}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", env={**os.environ, **env})
    try:
        fake.send_command(42, "/start")
        await fake.wait_for_message(42, "welcome")
        fake.send_video(42, Path("tests/media/clip.mp4").read_bytes(), caption="make it a promo")
        reply = await fake.wait_for_message(42, "working on it")
        fake.press_button(42, reply.message_id, "export")
        video = await fake.wait_for_message(42, kind="video", timeout=30)
        assert video.file is not None and video.file.data == expected_bytes
    finally:
        proc.terminate()
        await proc.wait()
        await fake.stop()

In-process (handler tests)::

    async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as bot:
        update = Update.de_json(fake.send_text(42, "hi"), bot)

Everything runs on the test's event loop: never block it (``time.sleep``, ``subprocess.run``) while the
bot talks to the fake. User actions are plain methods and may be called at any time.

Conventions (documented choices where the brief left room):

- Chats are created on first use. ``chat_type=None`` means "as registered, else inferred from the
  id": ``> 0`` private, ``-100...`` supergroup, other negative ids a basic group. Use ``set_chat`` or
  pass ``chat_type`` ("private", "group", "supergroup", "channel") on the first action to choose.
  A supergroup message with ``thread_id`` makes the chat a forum (``is_forum``).
- Default sender: in a private chat the user whose id is the chat id (``User(chat_id, "User<id>",
  "user<id>")``, as Telegram's private chat id equals the user id); in groups ``DEFAULT_GROUP_USER``
  (id 1000, "Member"). Channel posts have ``sender_chat`` instead of ``from``.
- Privacy mode is ON by default (``getMe`` says ``can_read_all_group_messages: false``): in groups the
  bot only receives commands, messages mentioning ``@bot_username`` and replies to its own messages;
  the user action still returns the hidden update. Pass ``privacy_mode=False`` to deliver everything.
- Forum topic messages carry ``message_thread_id``, ``is_topic_message`` and, when they are not a reply,
  a ``reply_to_message`` that is the topic's ``forum_topic_created`` service message, as Telegram sends.
- Photo updates have three PhotoSize entries; only the largest serves the real bytes (the two
  thumbnails serve a short placeholder), so a bot that picks the wrong size is caught.
- Text and captions: ``parse_mode`` HTML is parsed like tdlib and a malformed message is refused with
  400 "can't parse entities: ..."; raw ``&`` that does not start an entity is accepted, as tdlib does.
  The bot sends HTML only, so Markdown and MarkdownV2 are refused (400) rather than modelled.
- Local Bot API mode (``telegram-bot-api --local``): ``FakeTelegram(local_mode=True, files_dir=...)``
  or ``use_local_mode()``. getFile then answers an absolute ``file_path`` on this machine (bytes
  registered in memory are written under ``files_dir`` first), the limits are 2000 MB both ways, and
  the bot may send ``file://`` URIs. ``send_video_path`` registers a large file by its path, never read
  into memory (without local mode it is served from disk over HTTP).
- Like Telegram, ``editMessageText`` without ``reply_markup`` removes the inline keyboard, and an edit
  that changes nothing is 400 "message is not modified".
- Media the bot sends (sendVideo, sendPhoto, sendMediaGroup) may be an upload (multipart, or
  ``attach://<part>`` inside a media group), a file id the fake issued (one of a photo as a video, or
  the reverse, is 400 "can't use file of type ..."), or an http(s) URL, which the fake fetches as
  Telegram does (an answer other than 200 is 400 "failed to get HTTP URL content"; a photo that is not
  a PNG/JPEG, or a video that is not an MP4, is 400 "wrong type of the web page content"). Every bot
  message records how it was sent (``Message.sent_as``: "upload", "file_id", "url" or "path"), whether
  it was silent (``disable_notification``) and, for a video, the parameters and thumbnail it came with;
  ``uploaded_videos`` counts the video bytes uploaded (file ids and URLs upload nothing).
- A second concurrent ``getUpdates`` ends the older one with 409 Conflict (two bot instances); polls
  are capped at ``max_poll_timeout`` (1 s) so the bot stops quickly.
- Webhook: after ``setWebhook`` every queued update (those queued before included, unless
  ``drop_pending_updates``; of the ``allowed_updates`` kinds, as for getUpdates) is POSTed as JSON to the
  url over a real HTTP connection, with ``X-Telegram-Bot-Api-Secret-Token`` when a secret was set, at
  most ``webhook_max_connections`` at once. An answer other than 2xx, a refused connection or no answer
  within ``webhook_timeout`` is retried after ``webhook_retry_seconds``, doubling up to
  ``webhook_retry_max_seconds``, until a 2xx delivers it. Every attempt is in ``webhook_deliveries``
  (``WebhookDelivery``); ``wait_webhook_delivered`` waits for all. getUpdates is then 409 Conflict, and
  a long poll in progress ends with 409 too. ``deleteWebhook`` (or ``stop``) cancels the deliveries in
  flight; their updates stay queued for getUpdates. Unlike Telegram, ``http://`` urls on any port are
  accepted (the bot under test listens on loopback).
- Faults on demand: ``fail_next`` (any code; 429 carries ``retry_after``), ``delay_next``,
  ``block_bot`` (403), and opt-in per-chat flood control with ``set_flood_limit``.
- Telegram's own flood limits, opt-in (``FakeTelegram(flood_limits=True)`` or
  ``enable_flood_limits()``), with the numbers in ``flood`` (a ``FloodLimits``): at most 30 counted
  requests in any 1 s sliding window for the bot; per chat a token bucket of 3 refilled at 1/s; and in
  groups, supergroups and channels (negative ids) at most 20 in any 60 s window. Counted methods are
  ``FLOOD_COUNTED_METHODS`` (sends, edits, deletes, chat actions, reactions); getUpdates, getMe,
  getFile, answerCallbackQuery and the configuration calls never count. A request over a limit is 429
  "Too Many Requests: retry after N" with ``parameters.retry_after`` N = the whole seconds until it
  would be admitted (at least 1), and a refused request counts toward nothing. ``too_many_requests``
  counts every 429 answered; ``users(n)`` makes private users cheaply (load tests).
- Update ids start at a random number in [10**8, 10**9) (``first_update_id=`` to choose) and step by
  ``1 + update_id_gap``; ``skip_update_ids(n)`` makes one jump, as Telegram's ids may.
- ``BotCall.at``, ``Message.sent_at``, ``WebhookDelivery.at`` and flood-control timestamps use
  ``time.monotonic()``. ``activity(chat_id)`` lists a chat's sends and edits with their times (the
  cadence of a live reply); ``reactions_on(chat_id, message_id)`` every reaction set on a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import mimetypes
import os
import random
import re
import shutil
import socket
import struct
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlparse

import aiohttp
from aiohttp import web

__all__ = [
    "DEFAULT_GROUP_USER",
    "DEFAULT_TOKEN",
    "FLOOD_COUNTED_METHODS",
    "BotCall",
    "EntityParseError",
    "FakeTelegram",
    "FloodLimits",
    "Message",
    "UploadedFile",
    "User",
    "WebhookDelivery",
    "parse_html",
]

DEFAULT_TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"
MAX_MESSAGE_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # cloud Bot API getFile limit
UPLOAD_LIMIT = 50 * 1024 * 1024  # cloud Bot API multipart upload limit
PHOTO_LIMIT = 10 * 1024 * 1024  # sendPhoto: at most 10 MB, width + height at most 10000, ratio at most 20
LOCAL_MODE_LIMIT = 2000 * 1024 * 1024  # local Bot API server (--local): both ways
MAX_POLL_TIMEOUT = 1.0  # server-side cap on getUpdates long polling, so bot shutdown is quick

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
DEFAULT_ALLOWED_UPDATES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)


# --------------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """A Telegram user acting in a test."""

    id: int
    first_name: str
    username: str | None = None
    language_code: str | None = "en"
    is_bot: bool = False
    last_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


DEFAULT_GROUP_USER = User(id=1000, first_name="Member", username="member")


@dataclass
class UploadedFile:
    """A file the bot uploaded (multipart part), or the bytes behind a file_id it re-sent."""

    filename: str
    content_type: str
    data: bytes
    path: str | None = None  # local mode: a file:// upload too large to keep in memory (data is b"")


@dataclass
class BotCall:
    """One Bot API request. ``status``/``response`` are set once the fake has answered."""

    method: str  # canonical spelling, e.g. "sendMessage", whatever case the bot used
    params: dict[str, Any]  # JSON-decoded values (chat_id -> int, reply_markup -> dict, ...)
    files: dict[str, UploadedFile]
    at: float  # time.monotonic() when the request arrived
    status: int | None = None
    response: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return bool(self.response and self.response.get("ok"))

    @property
    def description(self) -> str | None:
        return (self.response or {}).get("description")

    def __str__(self) -> str:
        params = {k: v for k, v in self.params.items() if k not in ("reply_markup",)}
        shown = json.dumps(params, ensure_ascii=False, default=str)
        if len(shown) > 160:
            shown = shown[:157] + "..."
        files = f" files={sorted(self.files)}" if self.files else ""
        outcome = (
            "pending" if self.status is None else ("ok" if self.ok else f"{self.status} {self.description}")
        )
        return f"{self.method} {shown}{files} -> {outcome}"


@dataclass
class Message:
    """A message the bot sent, as the chat shows it now (edits applied)."""

    message_id: int
    chat_id: int
    text: str  # current text, or caption for media ("" when none), entities stripped
    kind: str  # "text" | "video" | "photo"
    reply_markup: dict[str, Any] | None  # whatever markup was sent (inline, reply keyboard, force_reply)
    thread_id: int | None
    reply_to: int | None
    edits: list[str]  # the text after each text/caption edit, in order
    deleted: bool
    file: UploadedFile | None  # the uploaded bytes (a video or a photo)
    source: str = ""  # text/caption exactly as the bot sent it (markup included)
    entities: list[dict[str, Any]] = field(default_factory=list)
    reactions: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)  # the Bot API Message object as it is now
    sent_text: str = ""
    sent_at: float = 0.0  # time.monotonic() when the fake stored it
    disable_notification: bool = False  # sent silently (no sound, no notification)
    sent_as: str = ""  # media: "upload", "file_id", "url" or "path" (local mode)
    media_group_id: str | None = None  # one of a sendMediaGroup album
    thumbnail: UploadedFile | None = None  # a video's uploaded thumbnail
    params: dict[str, Any] = field(default_factory=dict)  # the request's parameters (media: width, ...)
    edited_at: list[float] = field(default_factory=list)  # time.monotonic() of each of `edits`

    @property
    def history(self) -> list[str]:
        """Every text the message has shown: as sent, then after each edit."""
        return [self.sent_text, *self.edits]

    def shown_at(self, contains: str) -> float | None:
        """When the message first showed `contains` (sent with it, or an edit that added it)."""
        times = [self.sent_at, *self.edited_at]
        return next((at for text, at in zip(self.history, times, strict=False) if contains in text), None)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Inline keyboard buttons, flattened."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]


@dataclass
class FloodLimits:
    """Telegram's flood limits as the fake enforces them (when on); every number may be changed."""

    global_limit: int = 30  # counted requests of the whole bot ...
    global_window: float = 1.0  # ... in any window of this many seconds
    chat_burst: int = 3  # per chat: token bucket capacity ...
    chat_rate: float = 1.0  # ... refilled at this many requests per second
    group_limit: int = 20  # groups, supergroups, channels (negative ids): counted requests ...
    group_window: float = 60.0  # ... in any window of this many seconds


class WebhookDelivery(NamedTuple):
    """One webhook POST of an update: its HTTP status, or the name of the exception it ended with
    (e.g. "ClientConnectorError", "TimeoutError"); ``attempt`` counts from 1 per update."""

    update_id: int
    outcome: int | str
    attempt: int
    at: float  # time.monotonic() when the attempt ended


class EntityParseError(ValueError):
    """Raised by ``parse_html``; the message is Telegram's detail text."""


class _ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            data["parameters"] = self.parameters
        return data


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes | None
    size: int
    folder: str
    file_name: str | None = None
    mime_type: str | None = None
    file_path: str | None = None
    local_path: str | None = None  # the bytes live in this file on disk (data is None)


@dataclass
class _Failure:
    error_code: int
    description: str
    parameters: dict[str, Any] | None
    times: int


# --------------------------------------------------------------------------------------------------
# Text helpers: UTF-16 offsets, HTML parsing like tdlib, user-side entity detection
# --------------------------------------------------------------------------------------------------


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_SIMPLE_TAG_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]+));")


def _decode_html_entity(text: str, pos: int) -> tuple[str, int] | None:
    match = _ENTITY_RE.match(text, pos)
    if not match:
        return None
    if match.group(3) is not None:
        char = _NAMED_ENTITIES.get(match.group(3))
        return (char, match.end()) if char else None
    code = int(match.group(1)) if match.group(1) is not None else int(match.group(2), 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code), match.end()


def parse_html(text: str, *, strict_ampersand: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML style: returns (plain text, entities) or raises EntityParseError."""
    out: list[str] = []
    entities: list[dict[str, Any]] = []
    stack: list[tuple[str, str | None, int, int]] = []  # tag, argument, utf16 start, source pos after tag
    pos, n, u16 = 0, len(text), 0

    def byte_offset(index: int) -> int:
        return len(text[:index].encode())

    while pos < n:
        char = text[pos]
        if char == "&":
            decoded = _decode_html_entity(text, pos)
            if decoded:
                out.append(decoded[0])
                u16 += _u16(decoded[0])
                pos = decoded[1]
                continue
            if strict_ampersand:
                raise EntityParseError(f"Unsupported HTML entity at byte offset {byte_offset(pos)}")
        if char != "<":
            out.append(char)
            u16 += _u16(char)
            pos += 1
            continue
        tag_start = pos
        pos += 1
        if pos < n and text[pos] == "/":  # end tag
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {byte_offset(tag_start)}")
            end = pos + 1
            while end < n and not text[end].isspace() and text[end] != ">":
                end += 1
            end_name = text[pos + 1 : end]
            while end < n and text[end].isspace():
                end += 1
            if end >= n or text[end] != ">":
                raise EntityParseError(f"Unclosed end tag at byte offset {byte_offset(tag_start)}")
            tag, argument, start_u16, inner_start = stack.pop()
            if end_name and end_name.lower() != tag:
                raise EntityParseError(
                    f'Unmatched end tag at byte offset {byte_offset(tag_start)}, expected "</{tag}>", '
                    f'found "</{end_name}>"'
                )
            pos = end + 1
            if u16 > start_u16:
                _close_html_entity(
                    entities, tag, argument, start_u16, u16 - start_u16, text[inner_start:tag_start]
                )
            continue
        # start tag
        end = pos
        while end < n and not text[end].isspace() and text[end] != ">":
            end += 1
        if end >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {byte_offset(tag_start)}")
        tag = text[pos:end].lower()
        if tag not in _HTML_TAGS:
            raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {byte_offset(tag_start)}')
        argument, pos = _parse_html_attributes(text, end, tag, byte_offset(tag_start))
        if tag == "span" and argument != "spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset(tag_start)}'
            )
        stack.append((tag, argument, u16, pos))
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    for entity in entities:
        entity.pop("_language", None)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _parse_html_attributes(text: str, pos: int, tag: str, tag_offset: int) -> tuple[str | None, int]:
    """Reads attributes up to and including '>'; returns (entity argument, position after the tag)."""
    n = len(text)
    argument: str | None = None
    unclosed = EntityParseError(f'Unclosed start tag "{tag}" at byte offset {tag_offset}')
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            raise unclosed
        if text[pos] == ">":
            return argument, pos + 1
        name_start = pos
        while pos < n and not text[pos].isspace() and text[pos] not in "=>/\"'":
            pos += 1
        name = text[name_start:pos].lower()
        if not name:
            raise EntityParseError(f'Empty attribute name in the tag "{tag}" at byte offset {tag_offset}')
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            raise unclosed
        if text[pos] != "=":
            if tag == "blockquote" and name == "expandable":
                argument = "expandable"
            continue
        pos += 1
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            raise unclosed
        if text[pos] in "\"'":
            quote = text[pos]
            pos += 1
            value_chars: list[str] = []
            while pos < n and text[pos] != quote:
                decoded = _decode_html_entity(text, pos) if text[pos] == "&" else None
                if decoded:
                    value_chars.append(decoded[0])
                    pos = decoded[1]
                else:
                    value_chars.append(text[pos])
                    pos += 1
            if pos >= n:
                raise unclosed
            pos += 1
            value = "".join(value_chars)
        else:
            value_start = pos
            while pos < n and (text[pos].isascii() and (text[pos].isalnum() or text[pos] in ".-")):
                pos += 1
            value = text[value_start:pos].lower()
            if pos >= n:
                raise unclosed
            if not text[pos].isspace() and text[pos] != ">":
                raise EntityParseError(
                    f"Unexpected end of name token at byte offset {len(text[:pos].encode())}"
                )
        if tag == "a" and name == "href":
            argument = value
        elif tag == "code" and name == "class" and value.startswith("language-"):
            argument = value.removeprefix("language-")
        elif tag == "span" and name == "class" and value.startswith("tg-"):
            argument = value.removeprefix("tg-")
        elif tag == "tg-emoji" and name == "emoji-id":
            argument = value


def _close_html_entity(
    entities: list[dict[str, Any]], tag: str, argument: str | None, offset: int, length: int, inner: str
) -> None:
    if tag in _SIMPLE_TAG_TYPES:
        entities.append({"type": _SIMPLE_TAG_TYPES[tag], "offset": offset, "length": length})
    elif tag == "a":
        url = (argument if argument is not None else inner).strip()
        if url.startswith("tg://user?id="):
            return  # text_mention needs a full User object; tdlib also drops unknown users
        if url and "://" not in url:
            url = "http://" + url
        if url:
            entities.append({"type": "text_link", "offset": offset, "length": length, "url": url})
    elif tag == "tg-emoji":
        if not (argument or "").isdigit():
            raise EntityParseError("Invalid custom emoji identifier specified")
        entities.append(
            {"type": "custom_emoji", "offset": offset, "length": length, "custom_emoji_id": argument}
        )
    elif tag == "blockquote":
        kind = "expandable_blockquote" if argument == "expandable" else "blockquote"
        entities.append({"type": kind, "offset": offset, "length": length})
    elif tag == "code":
        entity: dict[str, Any] = {"type": "code", "offset": offset, "length": length}
        if argument:
            entity["_language"] = argument
        entities.append(entity)
    elif tag == "pre":
        last = entities[-1] if entities else None
        if last and last["type"] == "code" and last["offset"] == offset and last["length"] == length:
            last["type"] = "pre"
            if last.get("_language"):
                last["language"] = last["_language"]
        else:
            entities.append({"type": "pre", "offset": offset, "length": length})


def _strip_text(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Telegram trims leading/trailing whitespace of a message; shift and clip entities to match."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    shift = _u16(text[: len(text) - len(text.lstrip())])
    limit = _u16(stripped)
    result = []
    for entity in entities:
        start = max(0, entity["offset"] - shift)
        end = min(limit, entity["offset"] + entity["length"] - shift)
        if end > start:
            result.append({**entity, "offset": start, "length": end - start})
    return stripped, result


_COMMAND_RE = re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>])")
_MENTION_RE = re.compile(r"(?<!\w)@[A-Za-z0-9_]{2,32}(?!\w)")
_URL_RE = re.compile(r"(?<!\w)https?://[^\s<>\"]+")


def detect_entities(text: str) -> list[dict[str, Any]]:
    """Entities a Telegram client attaches to plain text: bot commands, @mentions and URLs."""
    entities = []
    for kind, regex in (("bot_command", _COMMAND_RE), ("mention", _MENTION_RE), ("url", _URL_RE)):
        for match in regex.finditer(text):
            entities.append(
                {"type": kind, "offset": _u16(text[: match.start()]), "length": _u16(match.group())}
            )
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return entities


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG or JPEG image (the photos users send), if recognisable."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        if data[:2] == b"\xff\xd8":
            pos = 2
            while pos + 9 < len(data):
                if data[pos] != 0xFF:
                    pos += 1
                    continue
                marker = data[pos + 1]
                if marker == 0xFF or marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
                    pos += 1 if marker == 0xFF else 2
                    continue
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                    return width, height
                pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    except (struct.error, IndexError):
        return None
    return None


# Parameters whose values PTB sends as plain strings (never JSON-decode them: text "123" stays a str).
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "file_id",
        "url",
        "language_code",
        "action",
        "secret_token",
        "ip_address",
        "video",
        "photo",
        "thumbnail",
    }
)

# getFile folder -> default file extension
_DEFAULT_EXT = {
    "photos": "jpg",
    "videos": "mp4",
    "music": "mp3",
    "voice": "oga",
    "stickers": "webp",
    "documents": "",
}
_INLINE_BUTTON_KINDS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_SENDING_PREFIXES = ("send", "edit")
# Requests Telegram's flood limits count (canonical spelling, of the methods the fake answers): sends,
# edits, deletions, chat actions, reactions. Every other method never gets a flood 429.
FLOOD_COUNTED_METHODS = frozenset(
    {
        "sendMessage",
        "sendVideo",
        "sendPhoto",
        "sendMediaGroup",
        "editMessageText",
        "deleteMessage",
        "sendChatAction",
        "setMessageReaction",
    }
)
URL_PHOTO_LIMIT = 5 * 1024 * 1024  # Telegram fetches photos of at most 5 MB by URL ...
URL_FILE_LIMIT = 20 * 1024 * 1024  # ... and other files of at most 20 MB
MEDIA_FOLDERS = {"photo": "photos", "video": "videos"}
_UPDATES_KEY = "updates"  # the wait key of getUpdates long polls (chat waits are keyed by chat id)
_WEBHOOK_KEY = "webhook"  # the wait key of the webhook dispatcher
MAX_WEBHOOK_CONNECTIONS = 100  # setWebhook max_connections is clamped to 1..100 ...
LOCAL_MODE_WEBHOOK_CONNECTIONS = 100_000  # ... or 1..100000 by a local Bot API server

Handler = Callable[[dict[str, Any], dict[str, UploadedFile]], Awaitable[Any]]


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


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
        update_id_gap: int = 0,
    ) -> None:
        self.token = token
        self.bot_username = bot_username
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_first_name = "Nemo Test"
        self.privacy_mode = privacy_mode
        self.max_poll_timeout = max_poll_timeout
        self.download_limit = DOWNLOAD_LIMIT
        self.upload_limit = UPLOAD_LIMIT
        self.host = "127.0.0.1"
        self.port = 0

        self.calls: list[BotCall] = []
        self.callback_answers: dict[str, dict[str, Any] | None] = {}  # query id -> answer params (None: open)
        self.reactions: dict[tuple[int, int], list[dict[str, Any]]] = {}  # (chat, message) -> bot's reaction
        # (chat, message) -> every reaction the bot set on it, in order (as emoji; "" when cleared)
        self.reaction_history: dict[tuple[int, int], list[str]] = {}

        self.flood_limits = flood_limits  # Telegram's flood limits on/off (enable_flood_limits)
        self.flood = flood if flood is not None else FloodLimits()  # their numbers, changeable any time
        self.update_id_gap = update_id_gap  # ids step by 1 + gap
        self.too_many_requests = 0  # every 429 answered (flood limits, set_flood_limit, fail_next)
        self.uploaded_videos = 0  # sendVideo / media group videos whose bytes were uploaded
        self.fetched_urls: list[str] = []  # media URLs the fake fetched for the bot, in order

        # Webhook (setWebhook): the settings the bot chose, the knobs a test may change, what happened.
        self.webhook_url = ""  # "" while the bot polls
        self.webhook_secret_token = ""  # sent as X-Telegram-Bot-Api-Secret-Token when not ""
        self.webhook_max_connections = 40  # deliveries in flight at once
        self.webhook_timeout = 5.0  # seconds a delivery may take before it counts as failed
        self.webhook_retry_seconds = 0.05  # first pause before a failed delivery is retried ...
        self.webhook_retry_max_seconds = 1.0  # ... doubling up to this
        self.webhook_deliveries: list[WebhookDelivery] = []  # every attempt, in the order they ended
        self._webhook_error: tuple[int, str] | None = None  # (unix time, message) of the latest failure
        self._webhook_generation = 0  # bumped whenever the webhook is set, deleted or stopped
        self._webhook_session: aiohttp.ClientSession | None = None
        self._webhook_tasks: set[asyncio.Task[None]] = set()  # the dispatcher and deliveries in flight
        self._in_flight: set[int] = set()  # update ids being delivered

        self._pending: list[dict[str, Any]] = []  # polling: not yet confirmed; webhook: not yet delivered
        self._next_update_id = (
            first_update_id if first_update_id is not None else random.randrange(10**8, 10**9)
        )
        self._allowed_updates: frozenset[str] = DEFAULT_ALLOWED_UPDATES
        self._poll_generation = 0
        self._chats: dict[int, dict[str, Any]] = {}
        self._private_users: dict[int, User] = {}
        self._next_message_id: dict[int, int] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}  # every message in every chat (API JSON)
        self._bot_messages: dict[int, list[Message]] = {}
        self._topics: dict[tuple[int, int], dict[str, Any]] = {}
        self._members: dict[tuple[int, int], str] = {}
        self.deleted_user_messages: list[tuple[int, int]] = []  # (chat, message) the bot deleted
        self._files: dict[str, _StoredFile] = {}
        self._paths: dict[str, _StoredFile] = {}
        self._file_counter = 0
        self._path_counter = 0
        self._media_group_counter = 0  # send_album
        self._callback_counter = 0
        self._failures: dict[str, list[_Failure]] = {}
        self._delays: dict[str, list[float]] = {}
        self._blocked: set[int] = set()
        self._flood: tuple[int, float, int] | None = None
        self._flood_log: dict[int, list[float]] = {}
        self._global_log: deque[float] = deque()  # admitted counted requests in the global window
        self._buckets: dict[int, tuple[float, float]] = {}  # chat -> (tokens, monotonic of last refill)
        self._group_logs: dict[int, deque[float]] = {}  # negative chat -> admitted in the group window
        self._bot_message_index: dict[tuple[int, int], Message] = {}
        self._next_user_id = 7_000_000_001  # users(n)
        self._keyed_events: dict[object, asyncio.Event] = {}  # chat id / _UPDATES_KEY... -> waiters' event
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._request: web.Request | None = None
        # The methods the fake answers (what the bot and the tests call); any other is 404 "Not Found".
        self._handlers: dict[str, Handler] = self._build_handlers()
        self._canonical = {name.lower(): name for name in self._handlers}
        self.local_mode = False
        self.files_dir: Path | None = None  # local mode: where getFile puts bytes held in memory
        self._own_files_dir: str | None = None
        if local_mode:
            self.use_local_mode(files_dir)

    # ---------------------------------------------------------------- lifecycle and addresses

    async def start(self) -> None:
        """Serve on 127.0.0.1 at a free port."""
        app = web.Application(client_max_size=self.upload_limit + 16 * 1024 * 1024)
        app.router.add_route("*", "/file/bot{token}/{path:.+}", self._serve_file)
        app.router.add_route("*", "/bot{token}/{method}", self._serve_api)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._closing = False
        if self.webhook_url:
            self._start_webhook()

    async def stop(self) -> None:
        """End webhook deliveries, wake pending long polls and shut the server down."""
        self._closing = True
        await self._stop_webhook()
        self._notify()
        self._wake(_UPDATES_KEY)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._own_files_dir is not None:
            shutil.rmtree(self._own_files_dir, ignore_errors=True)
            self._own_files_dir = self.files_dir = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    # ---------------------------------------------------------------- test controls

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int | None = 1,
        times: int = 1,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error instead of handling them.

        For 429 the body carries ``parameters.retry_after`` (PTB raises RetryAfter) and the description
        defaults to "Too Many Requests: retry after N"; other codes default to their HTTP phrase, e.g.
        ``fail_next("getUpdates", error_code=409, description="Conflict: terminated by other getUpdates
        request; make sure that only one bot instance is running")``, or 502 "Bad Gateway".
        """
        if parameters is None and error_code == 429 and retry_after is not None:
            parameters = {"retry_after": retry_after}
        if description is None:
            if error_code == 429:
                description = f"Too Many Requests: retry after {retry_after or 1}"
            else:
                with contextlib.suppress(ValueError):
                    description = HTTPStatus(error_code).phrase
                description = description or f"Error {error_code}"
        self._failures.setdefault(method.lower(), []).append(
            _Failure(error_code, description, parameters, times)
        )

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` calls of ``method`` for ``seconds`` before answering (for timeouts)."""
        self._delays.setdefault(method.lower(), []).extend([seconds] * times)

    def block_bot(self, chat_id: int) -> None:
        """Later sends/edits to the chat answer 403 (blocked by the user / kicked from the group)."""
        self._blocked.add(chat_id)

    def unblock_bot(self, chat_id: int) -> None:
        self._blocked.discard(chat_id)

    def set_flood_limit(
        self, max_messages: int | None, per_seconds: float = 1.0, retry_after: int = 1
    ) -> None:
        """Opt-in flood control: more than ``max_messages`` sends/edits/actions per chat in the window -> 429."""
        self._flood = None if max_messages is None else (max_messages, per_seconds, retry_after)
        self._flood_log.clear()

    def enable_flood_limits(self, enabled: bool = True, **limits: float) -> None:
        """Switch Telegram's flood limits on (``False``: off), from empty windows and full buckets.

        Keyword arguments change numbers in ``flood`` (see ``FloodLimits``), e.g.
        ``enable_flood_limits(global_limit=2, global_window=0.2)``. ``too_many_requests`` is not reset.
        """
        self.flood_limits = enabled
        if limits:
            self.flood = replace(self.flood, **limits)
        self._global_log.clear()
        self._buckets.clear()
        self._group_logs.clear()

    def skip_update_ids(self, count: int) -> None:
        """The next update id jumps ``count`` ids further (Telegram's update ids may have gaps)."""
        self._next_update_id += count

    def users(self, n: int, *, language_code: str | None = "en") -> list[User]:
        """``n`` new private users with distinct ids, each with its private chat registered (the chat id
        is the user id), cheaply: for load tests, e.g. ``fake.send_text(user.id, "hi", user=user)``."""
        made: list[User] = []
        for _ in range(n):
            while self._next_user_id in self._chats:
                self._next_user_id += 1
            user_id = self._next_user_id
            self._next_user_id += 1
            user = User(user_id, f"Load{user_id}", f"load{user_id}", language_code=language_code)
            self._private_users[user_id] = user
            self.set_chat(user_id, "private")
            made.append(user)
        return made

    def set_chat(
        self,
        chat_id: int,
        chat_type: str,
        *,
        title: str | None = None,
        is_forum: bool = False,
    ) -> dict[str, Any]:
        """Register (or redefine) a chat; returns its Chat JSON."""
        if chat_type not in ("private", "group", "supergroup", "channel"):
            raise ValueError(f"unknown chat type {chat_type!r}")
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            user = self._private_users.get(chat_id) or User(chat_id, f"User{chat_id}", f"user{chat_id}")
            self._private_users[chat_id] = user
            chat.update(
                {k: v for k, v in user.to_dict().items() if k in ("first_name", "last_name", "username")}
            )
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
        """Act as a local Bot API server (``telegram-bot-api --local``) from now on: getFile answers
        absolute paths, the bot may send ``file://`` URIs, and both limits are 2000 MB.

        ``files_dir``: where bytes registered in memory are written for getFile (default: a temporary
        folder removed by ``stop``). Call it before ``start`` for multipart uploads over 66 MB to fit
        the server's request size limit (in local mode PTB sends paths as ``file://`` URIs anyway).
        """
        self.local_mode = True
        self.download_limit = self.upload_limit = LOCAL_MODE_LIMIT
        if files_dir is not None:
            self.files_dir = Path(files_dir)
            self.files_dir.mkdir(parents=True, exist_ok=True)

    def send_video_path(
        self,
        chat_id: int,
        path: str | os.PathLike[str],
        *,
        file_name: str | None = None,
        caption: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """``send_video`` for a (large) file on disk, registered by its path: its size is the file's, its
        bytes are never loaded. In local mode getFile answers this absolute path; otherwise the file is
        served from disk at its file URL. ``file_name`` defaults to the file's own name."""
        local = Path(path).absolute()
        size = local.stat().st_size
        stored = self._store_file(
            None, "videos", size=size, file_name=file_name or local.name, mime_type="video/mp4"
        )
        stored.local_path = str(local)
        video = self._media_object("video", stored, duration=2)
        return self._user_media(chat_id, {"video": video}, caption, None, **kw)

    def _local_dir(self) -> Path:
        if self.files_dir is None:
            self._own_files_dir = tempfile.mkdtemp(prefix="fake-telegram-files-")
            self.files_dir = Path(self._own_files_dir)
        return self.files_dir

    def _local_file_path(self, stored: _StoredFile) -> str:
        """Local mode: the absolute path of a file's bytes (written to ``files_dir`` on first use)."""
        if stored.local_path is None:
            if stored.data is None:
                raise _bad("wrong file_id or the file is temporarily unavailable")
            self._path_counter += 1
            ext = _extension(stored)
            name = f"file_{self._path_counter}{'.' + ext if ext else ''}"
            target = self._local_dir() / stored.folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(stored.data)
            stored.local_path = str(target)
        return stored.local_path

    def _local_upload(self, uri: str) -> UploadedFile:
        """A ``file://`` URI the bot sent in local mode, read as the server would during the request:
        small files into ``data`` (as a multipart upload would be), larger ones copied to disk."""
        path = Path(unquote(urlparse(uri).path))
        if not path.is_file():
            raise _bad("file not found")
        size = path.stat().st_size
        if size == 0:
            raise _bad("file must be non-empty")
        if size > self.upload_limit:
            raise _ApiError(413, "Request Entity Too Large")
        mime = mimetypes.guess_type(path.name)[0] or "video/mp4"
        if size <= UPLOAD_LIMIT:
            return UploadedFile(path.name, mime, path.read_bytes(), path=None)
        self._path_counter += 1
        copy_to = self._local_dir() / "uploads" / f"file_{self._path_counter}_{path.name}"
        copy_to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy_to)
        return UploadedFile(path.name, mime, b"", path=str(copy_to))

    # ---------------------------------------------------------------- users act

    def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        user: User | None = None,
        chat_type: str | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A user writes ``text``; entities default to what a client detects (commands, mentions, URLs)."""
        content: dict[str, Any] = {"text": text}
        found = detect_entities(text) if entities is None else entities
        if found:
            content["entities"] = found
        return self._user_message(
            chat_id, content, user=user, chat_type=chat_type, thread_id=thread_id, reply_to=reply_to
        )

    def send_command(self, chat_id: int, command: str, **kw: Any) -> dict[str, Any]:
        """``/start``, ``/export now``, ``/help@nemo_test_bot``...: text with a bot_command entity at 0."""
        text = command if command.startswith("/") else "/" + command
        name = text.split(maxsplit=1)[0]
        entities = [e for e in detect_entities(text) if e["offset"] > 0 or e["type"] != "bot_command"]
        entities.insert(0, {"type": "bot_command", "offset": 0, "length": _u16(name)})
        return self.send_text(chat_id, text, entities=entities, **kw)

    def send_photo(
        self,
        chat_id: int,
        data: bytes,
        *,
        caption: str | None = None,
        media_group_id: str | None = None,
        size: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """A photo: three PhotoSize entries, the largest serving ``data`` (dimensions sniffed from it)."""
        stored = self._store_file(data, "photos", size=size)
        return self._user_media(chat_id, {"photo": self._photo_sizes(stored)}, caption, media_group_id, **kw)

    def send_document(
        self,
        chat_id: int,
        data: bytes,
        file_name: str | None = "file.bin",
        mime_type: str | None = None,
        *,
        caption: str | None = None,
        media_group_id: str | None = None,
        size: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """A file sent as a document; ``mime_type=None`` leaves the field out, as Telegram sometimes does."""
        stored = self._store_file(data, "documents", size=size, file_name=file_name, mime_type=mime_type)
        return self._user_media(
            chat_id, {"document": self._media_object("document", stored)}, caption, media_group_id, **kw
        )

    def send_video(
        self,
        chat_id: int,
        data: bytes,
        *,
        file_name: str | None = "clip.mp4",
        duration: int = 2,
        mime_type: str | None = "video/mp4",
        width: int = 1280,
        height: int = 720,
        caption: str | None = None,
        media_group_id: str | None = None,
        size: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        stored = self._store_file(data, "videos", size=size, file_name=file_name, mime_type=mime_type)
        video = self._media_object("video", stored, duration=duration, width=width, height=height)
        return self._user_media(chat_id, {"video": video}, caption, media_group_id, **kw)

    def send_audio(
        self,
        chat_id: int,
        data: bytes,
        *,
        file_name: str | None = "track.mp3",
        duration: int = 3,
        mime_type: str | None = "audio/mpeg",
        caption: str | None = None,
        media_group_id: str | None = None,
        size: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        stored = self._store_file(data, "music", size=size, file_name=file_name, mime_type=mime_type)
        audio = self._media_object("audio", stored, duration=duration)
        return self._user_media(chat_id, {"audio": audio}, caption, media_group_id, **kw)

    def send_voice(
        self,
        chat_id: int,
        data: bytes,
        *,
        duration: int = 2,
        mime_type: str = "audio/ogg",
        caption: str | None = None,
        size: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        stored = self._store_file(data, "voice", size=size, mime_type=mime_type)
        return self._user_media(
            chat_id, {"voice": self._media_object("voice", stored, duration=duration)}, caption, None, **kw
        )

    def send_sticker(
        self, chat_id: int, data: bytes, *, emoji: str = "🙂", size: int | None = None, **kw: Any
    ) -> dict[str, Any]:
        stored = self._store_file(data, "stickers", size=size)
        return self._user_media(
            chat_id, {"sticker": self._media_object("sticker", stored, emoji=emoji)}, None, None, **kw
        )

    def send_album(
        self, chat_id: int, items: list[tuple[str, bytes, str]], *, caption: str | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        """2-10 items (kind "photo"|"video"|"document"|"audio", data, file name) as separate updates
        sharing one media_group_id; ``caption`` goes on the first item, as clients do."""
        self._media_group_counter += 1
        group_id = f"1{self._media_group_counter:017d}"
        updates = []
        for index, (kind, data, file_name) in enumerate(items):
            item_caption = caption if index == 0 else None
            mime = mimetypes.guess_type(file_name)[0]
            if kind == "photo":
                update = self.send_photo(chat_id, data, caption=item_caption, media_group_id=group_id, **kw)
            elif kind == "video":
                update = self.send_video(
                    chat_id,
                    data,
                    file_name=file_name,
                    mime_type=mime or "video/mp4",
                    caption=item_caption,
                    media_group_id=group_id,
                    **kw,
                )
            elif kind == "document":
                update = self.send_document(
                    chat_id, data, file_name, mime, caption=item_caption, media_group_id=group_id, **kw
                )
            elif kind == "audio":
                update = self.send_audio(
                    chat_id,
                    data,
                    file_name=file_name,
                    mime_type=mime or "audio/mpeg",
                    caption=item_caption,
                    media_group_id=group_id,
                    **kw,
                )
            else:
                raise ValueError(f"albums hold photo, video, document or audio, not {kind!r}")
            updates.append(update)
        return updates

    def edit_text(
        self, chat_id: int, message_id: int, new_text: str, *, entities: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The user edits their message (its caption, for media): an edited_message update."""
        message = self._messages.get((chat_id, message_id))
        if message is None or message.get("from", {}).get("id") == self.bot_id:
            raise ValueError(f"no user message {message_id} in chat {chat_id}")
        field_name = "caption" if "text" not in message else "text"
        message[field_name] = new_text
        message.pop("entities" if field_name == "text" else "caption_entities", None)
        entities = detect_entities(new_text) if entities is None else entities
        if entities:
            message["entities" if field_name == "text" else "caption_entities"] = entities
        message["edit_date"] = int(time.time())
        key = "edited_channel_post" if message["chat"]["type"] == "channel" else "edited_message"
        return self._queue_update(key, message, self._bot_can_see(message))

    def press_button(
        self, chat_id: int, message_id: int, data: str, *, user: User | None = None, check: bool = True
    ) -> dict[str, Any]:
        """A user presses an inline button of a bot message: a callback_query update.

        With ``check`` (default) the message must exist, not be deleted, and show a button with this
        callback_data; pass ``check=False`` to simulate a stale press.
        """
        message = self._find_bot_message(chat_id, message_id)
        if check:
            if message is None or message.deleted:
                raise ValueError(
                    f"bot message {message_id} in chat {chat_id} does not exist (or was deleted)"
                )
            shown = [b.get("callback_data") for b in message.buttons]
            if data not in shown:
                raise ValueError(
                    f"message {message_id} has no button with callback_data {data!r}; it has {shown}"
                )
        chat = self._ensure_chat(chat_id, None, None)
        sender = user or self._default_user(chat)
        self._callback_counter += 1
        query_id = f"{self.bot_id}{self._callback_counter:08d}"
        self.callback_answers[query_id] = None
        query: dict[str, Any] = {
            "id": query_id,
            "from": sender.to_dict(),
            "chat_instance": str(abs(hash((self.bot_id, chat_id))) % 10**18),
            "data": data,
        }
        if message is not None:
            query["message"] = copy.deepcopy(message.raw)
        return self._queue_update("callback_query", query, True)

    def create_topic(self, chat_id: int, name: str = "Topic", *, user: User | None = None) -> int:
        """Open a forum topic (service message update); returns its message_thread_id."""
        chat = self._ensure_chat(chat_id, "supergroup", None)
        chat["is_forum"] = True
        thread_id = self._allocate_message_id(chat_id)
        root = self._topic_root(chat_id, thread_id, name)
        root["from"] = (user or self._default_user(chat)).to_dict()
        self._messages[(chat_id, thread_id)] = root
        self._queue_update("message", root, True)
        return thread_id

    # ---------------------------------------------------------------- observe

    def bot_messages(self, chat_id: int) -> list[Message]:
        """Messages the bot sent to the chat, oldest first, deleted ones included (``deleted=True``)."""
        return list(self._bot_messages.get(chat_id, []))

    def message_count(self, chat_id: int) -> int:
        """Number of bot messages in the chat so far: pass it as ``after=`` to wait for newer ones."""
        return len(self._bot_messages.get(chat_id, []))

    def activity(
        self, chat_id: int, methods: tuple[str, ...] = ("sendMessage", "editMessageText")
    ) -> list[BotCall]:
        """The bot's answered calls of ``methods`` to the chat, in order of arrival (``BotCall.at``):
        every send and edit by default, to measure their cadence; ``[c for c in ... if c.ok]`` for
        those Telegram accepted."""
        return [
            call
            for call in self.calls
            if call.method in methods and call.status is not None and self._chat_key(call.params) == chat_id
        ]

    def reactions_on(self, chat_id: int, message_id: int) -> list[str]:
        """The reactions the bot set on a message, in order (``["👀", "👍"]``); [] when none."""
        return list(self.reaction_history.get((chat_id, message_id), []))

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Queued updates the bot has not confirmed yet (polling) or not yet received (webhook)."""
        return list(self._pending)

    def calls_to(self, method: str) -> list[BotCall]:
        name = self._canonical.get(method.lower(), method)
        return [call for call in self.calls if call.method == name]

    async def wait_for(
        self,
        predicate: Callable[[BotCall], bool],
        timeout: float = 10.0,  # noqa: ASYNC109
        *,
        since: int = 0,
    ) -> BotCall:
        """The first answered call (index >= ``since``, past or future) matching ``predicate``; a call
        still unanswered (e.g. a held ``getUpdates``) does not hide the answered calls after it."""
        deadline = time.monotonic() + timeout
        scanned = since
        unanswered: list[int] = []  # indices below ``scanned`` to look at again once answered
        while True:
            unanswered.extend(range(scanned, len(self.calls)))
            scanned = len(self.calls)
            still: list[int] = []
            for index in unanswered:
                call = self.calls[index]
                if call.status is None:
                    still.append(index)
                elif predicate(call):
                    return call
            unanswered = still
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
        """A bot message in the chat (index >= ``after``) whose text, as sent or after any edit, contains
        ``contains`` (case-insensitive; the raw markup source is searched too) and of ``kind``."""
        needle = contains.casefold() if contains is not None else None
        deadline = time.monotonic() + timeout
        while True:
            for message in self._bot_messages.get(chat_id, [])[after:]:
                if kind is not None and message.kind != kind:
                    continue
                texts = [*message.history, message.source]
                if needle is None or any(needle in text.casefold() for text in texts):
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
        """Until the bot has every queued update: confirmed by a getUpdates offset past it (polling) or
        answered 2xx to its webhook POST (webhook)."""
        deadline = time.monotonic() + timeout
        while self._pending:
            if not await self._wait_change(deadline):
                raise TimeoutError(
                    f"{len(self._pending)} updates still unconfirmed.\n{self._webhook_summary()}{self.dump_calls()}"
                )

    async def wait_webhook_delivered(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until every queued update got a 2xx from the webhook; RuntimeError when none is set."""
        deadline = time.monotonic() + timeout
        while self._pending:
            if not self.webhook_url:
                raise RuntimeError(f"no webhook is set: {len(self._pending)} updates wait for getUpdates")
            if not await self._wait_change(deadline):
                raise TimeoutError(
                    f"{len(self._pending)} updates not delivered within {timeout}s.\n{self._webhook_summary()}"
                )

    def _webhook_summary(self, last: int = 10) -> str:
        if not self.webhook_url and not self.webhook_deliveries:
            return ""
        recent = "\n".join(f"  {delivery}" for delivery in self.webhook_deliveries[-last:])
        error = f", last error {self._webhook_error[1]!r}" if self._webhook_error else ""
        return (
            f"Webhook {self.webhook_url or '(deleted)'}{error}; last {last} of "
            f"{len(self.webhook_deliveries)} deliveries:\n{recent or '  (none)'}\n"
        )

    def dump_calls(self, last: int = 25) -> str:
        recent = self.calls[-last:]
        first = len(self.calls) - len(recent)
        lines = [f"  [{first + i}] {call}" for i, call in enumerate(recent)]
        return f"Last {len(recent)} of {len(self.calls)} Bot API calls:\n" + ("\n".join(lines) or "  (none)")

    # ---------------------------------------------------------------- HTTP layer

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        stored = self._paths.get(request.match_info["path"])
        if stored is not None and stored.data is None and stored.local_path is not None:
            return web.FileResponse(stored.local_path, headers={"Content-Type": "application/octet-stream"})
        if stored is None or stored.data is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _serve_api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        requested = request.match_info["method"]
        method = self._canonical.get(requested.lower(), requested)
        try:
            params, files = await self._read_params(request)
        except _ApiError as err:
            return web.json_response(err.payload(), status=err.code)
        call = BotCall(method, params, files, time.monotonic())
        self.calls.append(call)
        try:
            delays = self._delays.get(method.lower())
            if delays:
                await asyncio.sleep(delays.pop(0))
            self._raise_planned_failure(method)
            handler = self._handlers.get(method)
            if handler is None:
                raise _ApiError(404, "Not Found")
            self._check_blocked_and_flood(method, params)
            self._request = request  # read synchronously by _h_get_updates, before its first await
            result = await handler(params, files)
            status, payload = 200, {"ok": True, "result": result}
        except _ApiError as err:
            status, payload = err.code, err.payload()
        call.status, call.response = status, payload
        chat_key = self._chat_key(params)
        if status == 429:
            self.too_many_requests += 1
        self._notify()
        if chat_key is not None:
            self._wake(chat_key)  # wait_for_message waits per chat: 1,000 waiters do not all wake
        return web.json_response(payload, status=status)

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
        """The query string and a form-encoded or multipart body (PTB's way), values JSON-decoded."""
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, UploadedFile] = {}
        if request.body_exists and request.content_type in (
            "multipart/form-data",
            "application/x-www-form-urlencoded",
        ):
            try:
                form = await request.post()
            except web.HTTPRequestEntityTooLarge as err:
                raise _ApiError(413, "Request Entity Too Large") from err
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = UploadedFile(value.filename, value.content_type, value.file.read())
                else:
                    raw[key] = value
        return {key: _decode_param(key, value) for key, value in raw.items()}, files

    def _raise_planned_failure(self, method: str) -> None:
        queue = self._failures.get(method.lower())
        if not queue:
            return
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        raise _ApiError(failure.error_code, failure.description, failure.parameters)

    def _check_blocked_and_flood(self, method: str, params: dict[str, Any]) -> None:
        counted = method in FLOOD_COUNTED_METHODS
        sending = method.startswith(_SENDING_PREFIXES) and "chat_id" in params
        if not counted and not sending:
            return
        chat_id = self._chat_id(params) if "chat_id" in params else None
        if sending and chat_id in self._blocked:
            chat_type = self._chats.get(chat_id, {}).get("type", "private")
            raise _ApiError(
                403,
                {
                    "private": "Forbidden: bot was blocked by the user",
                    "group": "Forbidden: bot was kicked from the group chat",
                    "supergroup": "Forbidden: bot was kicked from the supergroup chat",
                }.get(chat_type, "Forbidden: bot is not a member of the channel chat"),
            )
        now = time.monotonic()
        tokens = self._flood_verdict(chat_id, now) if counted and self.flood_limits else 0.0
        if sending and chat_id is not None and self._flood is not None:  # set_flood_limit
            limit, window, retry_after = self._flood
            log = [t for t in self._flood_log.get(chat_id, []) if now - t < window]
            self._flood_log[chat_id] = log
            if len(log) >= limit:
                raise _ApiError(
                    429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
                )
            log.append(now)
        if counted and self.flood_limits:  # admitted: count it in every window
            self._global_log.append(now)
            if chat_id is not None:
                self._buckets[chat_id] = (tokens - 1, now)
                if chat_id < 0:
                    self._group_logs.setdefault(chat_id, deque()).append(now)

    def _flood_verdict(self, chat_id: int | None, now: float) -> float:
        """Telegram's limits: raise 429 (counting nothing) if a limit refuses the request now, else return
        the chat's bucket tokens before it is admitted."""
        limits = self.flood
        wait = _window_wait(self._global_log, limits.global_limit, limits.global_window, now)
        tokens = 0.0
        if chat_id is not None:
            tokens, last = self._buckets.get(chat_id, (float(limits.chat_burst), now))
            tokens = min(float(limits.chat_burst), tokens + (now - last) * limits.chat_rate)
            if tokens < 1 - 1e-9:
                wait = max(wait, (1 - tokens) / limits.chat_rate)
            group_log = self._group_logs.get(chat_id) if chat_id < 0 else None
            if group_log is not None:
                wait = max(wait, _window_wait(group_log, limits.group_limit, limits.group_window, now))
        if wait > 0:
            retry_after = max(1, math.ceil(wait - 1e-9))
            raise _ApiError(
                429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
            )
        return tokens

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _wake(self, key: object) -> None:
        """Wake the waiters on one key: a chat id (its bot messages may have changed) or _UPDATES_KEY."""
        event = self._keyed_events.pop(key, None)
        if event is not None:
            event.set()

    def _chat_key(self, params: dict[str, Any]) -> int | None:
        """The request's chat id as an int, cheaply; None when absent or not a number."""
        value = params.get("chat_id")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    async def _wait_change(self, deadline: float, key: object = None) -> bool:
        """Wait for a state change until ``deadline`` (any change, or only those woken for ``key``);
        False once the deadline has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        event = self._changed if key is None else self._keyed_events.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), remaining)
        return True

    def _build_handlers(self) -> dict[str, Handler]:
        return {
            "getMe": self._h_get_me,
            "getUpdates": self._h_get_updates,
            "setWebhook": self._h_set_webhook,
            "deleteWebhook": self._h_delete_webhook,
            "getWebhookInfo": self._h_webhook_info,
            "setMyCommands": self._h_set_commands,
            "sendMessage": self._h_send_message,
            "editMessageText": self._h_edit_text,
            "deleteMessage": self._h_delete,
            "sendChatAction": self._h_chat_action,
            "sendVideo": self._h_send_video,
            "sendPhoto": self._h_send_photo,
            "sendMediaGroup": self._h_send_media_group,
            "answerCallbackQuery": self._h_callback,
            "getFile": self._h_files,
            "setMessageReaction": self._h_reaction,
            "getChatMember": self._h_chat_member,
        }

    # ---------------------------------------------------------------- methods

    async def _h_get_me(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _h_get_updates(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        if self.webhook_url:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = min(max(float(params.get("timeout") or 0), 0.0), self.max_poll_timeout)
        self._set_allowed_updates(params)
        if offset > 0:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        elif offset < 0:
            self._pending = self._pending[offset:]
        self._notify()
        self._wake(_UPDATES_KEY)  # an older poll ends (409)
        self._poll_generation += 1
        generation = self._poll_generation
        request = self._request
        deadline = time.monotonic() + timeout
        while True:
            self._drop_disallowed()
            if self._pending or self._closing:
                return copy.deepcopy(self._pending[:limit])
            if self.webhook_url:
                raise _ApiError(409, "Conflict: terminated by setWebhook request")
            if generation != self._poll_generation:
                transport = request.transport if request is not None else None
                if transport is None or transport.is_closing():
                    return []  # the client gave up on this poll (e.g. PTB cancelled it on shutdown)
                raise _ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            if not await self._wait_change(deadline, _UPDATES_KEY):  # not woken by every bot call
                return []

    def _set_allowed_updates(self, params: dict[str, Any]) -> None:
        """Telegram keeps allowed_updates between getUpdates/setWebhook calls: a list given changes it
        (an empty one means the default), no list leaves it as it was."""
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(str(kind) for kind in allowed) or DEFAULT_ALLOWED_UPDATES

    def _drop_disallowed(self) -> None:
        """Updates of kinds the bot did not subscribe to are dropped, never sent."""
        kept = [u for u in self._pending if _update_kind(u) in self._allowed_updates]
        if len(kept) < len(self._pending):
            self._pending = kept
            self._notify()  # wait_updates_consumed may be done

    async def _h_set_webhook(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        url = str(params.get("url") or "")
        if not url:  # an empty url removes the webhook, as deleteWebhook does
            return await self._h_delete_webhook(params, files)
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:  # http: for loopback tests
            raise _bad("invalid webhook URL specified")
        secret = str(params.get("secret_token") or "")
        if len(secret) > 256:
            raise _bad("secret token is too long")
        if not re.fullmatch(r"[A-Za-z0-9_-]*", secret):
            raise _bad("secret token contains unallowed characters")
        most = LOCAL_MODE_WEBHOOK_CONNECTIONS if self.local_mode else MAX_WEBHOOK_CONNECTIONS
        connections = min(max(_int(params.get("max_connections"), 40), 1), most)
        drop = bool(params.get("drop_pending_updates"))
        self._set_allowed_updates(params)
        unchanged = (url, secret, connections) == (
            self.webhook_url,
            self.webhook_secret_token,
            self.webhook_max_connections,
        )
        if unchanged and not drop:  # "Webhook is already set": deliveries in flight go on
            self._wake(_WEBHOOK_KEY)
            return True
        await self._stop_webhook()
        if drop:
            self._pending.clear()
        self.webhook_url, self.webhook_secret_token, self.webhook_max_connections = url, secret, connections
        self._webhook_error = None
        self._wake(_UPDATES_KEY)  # a long poll in progress ends with 409
        self._start_webhook()
        return True

    async def _h_delete_webhook(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        await self._stop_webhook()
        self.webhook_url = self.webhook_secret_token = ""
        self.webhook_max_connections = 40
        self._webhook_error = None
        if params.get("drop_pending_updates"):
            self._pending.clear()
        self._notify()
        return True

    async def _h_webhook_info(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self._webhook_error is not None:
            info["last_error_date"], info["last_error_message"] = self._webhook_error
        if self.webhook_url:
            info["max_connections"] = self.webhook_max_connections
        if self._allowed_updates != DEFAULT_ALLOWED_UPDATES:
            info["allowed_updates"] = sorted(self._allowed_updates)
        return info

    async def _h_set_commands(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("can't parse commands JSON object")
        for command in commands:
            name = str(command.get("command", "")) if isinstance(command, dict) else ""
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name.removeprefix("/")):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad(
                    "command description is empty"
                    if not command.get("description")
                    else "BOT_COMMAND_DESCRIPTION_INVALID"
                )
        return True

    async def _h_send_message(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat = self._target_chat(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad("message text is empty")
        plain, entities = self._format(text, params.get("parse_mode"), params.get("entities"))
        if not plain:
            raise _bad("message text is empty")
        if len(plain) > MAX_MESSAGE_LENGTH:
            raise _bad("message is too long")
        content: dict[str, Any] = {"text": plain}
        if entities:
            content["entities"] = entities
        if params.get("link_preview_options"):
            content["link_preview_options"] = params["link_preview_options"]
        message = self._store_bot_message(
            chat, params, kind="text", content=content, text=plain, source=text, entities=entities
        )
        return copy.deepcopy(message.raw)

    async def _h_edit_text(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        if "chat_id" not in params or "message_id" not in params:
            raise _bad("message identifier is not specified")
        chat_id = self._chat_id(params)
        message_id = int(params["message_id"])
        message = self._find_bot_message(chat_id, message_id)
        if message is None or message.deleted:
            if (chat_id, message_id) in self._messages and message is None:
                raise _bad("message can't be edited")
            raise _bad("message to edit not found")
        markup = self._check_markup(params.get("reply_markup"))
        if markup is not None and "inline_keyboard" not in markup:
            raise _bad("reply markup must be an inline keyboard")
        if message.kind != "text":
            raise _bad("there is no text in the message to edit")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad("message text is empty")
        plain, entities = self._format(text, params.get("parse_mode"), params.get("entities"))
        if len(plain) > MAX_MESSAGE_LENGTH:
            raise _bad("MESSAGE_TOO_LONG")
        if not plain:
            raise _bad("message text is empty")
        if plain == message.text and entities == message.entities and markup == message.reply_markup:
            raise _bad(NOT_MODIFIED[len("Bad Request: ") :])
        if plain != message.text or text != message.source:
            message.edits.append(plain)
            message.edited_at.append(time.monotonic())
        message.text, message.entities, message.source, message.reply_markup = plain, entities, text, markup
        message.raw["text"] = plain
        for key, value in (("entities", entities), ("reply_markup", markup)):  # without it: removed
            if value:
                message.raw[key] = value
            else:
                message.raw.pop(key, None)
        message.raw["edit_date"] = int(time.time())
        return copy.deepcopy(message.raw)

    async def _h_delete(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat_id = self._chat_id(params)
        if params.get("message_id") in (None, ""):
            raise _bad("message identifier is not specified")
        message_id = int(params["message_id"])
        bot_message = self._find_bot_message(chat_id, message_id)
        stored = self._messages.get((chat_id, message_id))
        admin = self._members.get((chat_id, self.bot_id)) in ("administrator", "creator")
        if bot_message is None and stored is not None and chat_id < 0 and not admin:
            raise _bad("message can't be deleted")  # someone else's, in a group: admins only
        self._messages.pop((chat_id, message_id), None)
        if bot_message is not None and not bot_message.deleted:
            bot_message.deleted = True
        elif stored is None:
            raise _bad("message to delete not found")
        else:
            self.deleted_user_messages.append((chat_id, message_id))
        return True

    async def _h_send_video(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat = self._target_chat(params)
        message = await self._send_media(chat, params, files, "video", params.get("video"), None)
        return copy.deepcopy(message.raw)

    async def _h_send_photo(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat = self._target_chat(params)
        message = await self._send_media(chat, params, files, "photo", params.get("photo"), None)
        return copy.deepcopy(message.raw)

    async def _h_send_media_group(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        """2-10 photos and videos (``media``: InputMediaPhoto / InputMediaVideo), one message each,
        sharing a media_group_id; each item's caption is its own."""
        chat = self._target_chat(params)
        items = params.get("media")
        if not isinstance(items, list) or not items:
            raise _bad("media must be a non-empty array")
        if not 2 <= len(items) <= 10:
            raise _bad(
                "Too few media in the group" if len(items) < 2 else "Too much messages to send as an album"
            )
        kinds = []
        for item in items:
            if not isinstance(item, dict) or item.get("type") not in MEDIA_FOLDERS:
                raise _bad("media group may contain only photos and videos here")
            kinds.append(item["type"])
        self._media_group_counter += 1
        group_id = f"2{self._media_group_counter:017d}"
        # Resolved first, all of them: a refused item refuses the whole album, as Telegram does.
        resolved = [
            await self._resolve_media(kind, item.get("media"), files, attach=True)
            for kind, item in zip(kinds, items, strict=True)
        ]
        sent = []
        for kind, item, (stored, upload, how) in zip(kinds, items, resolved, strict=True):
            item_params = {**params, **{k: v for k, v in item.items() if k != "media"}}
            message = self._store_media_message(chat, item_params, files, kind, stored, upload, how, group_id)
            sent.append(copy.deepcopy(message.raw))
        return sent

    async def _send_media(
        self,
        chat: dict[str, Any],
        params: dict[str, Any],
        files: dict[str, UploadedFile],
        kind: str,
        value: Any,
        group_id: str | None,
    ) -> Message:
        stored, upload, how = await self._resolve_media(kind, value, files)
        return self._store_media_message(chat, params, files, kind, stored, upload, how, group_id)

    def _store_media_message(
        self,
        chat: dict[str, Any],
        params: dict[str, Any],
        files: dict[str, UploadedFile],
        kind: str,
        stored: _StoredFile,
        upload: UploadedFile | None,
        how: str,
        group_id: str | None,
    ) -> Message:
        thumbnail = None
        if kind == "video":
            reference = params.get("thumbnail")
            if isinstance(reference, str) and reference.startswith("attach://"):
                thumbnail = files.get(reference.removeprefix("attach://"))
                if thumbnail is None:
                    raise _bad("thumbnail: file not found in the request")
            media = self._media_object(
                "video",
                stored,
                duration=_int(params.get("duration"), 0),
                width=_int(params.get("width"), 1280),
                height=_int(params.get("height"), 720),
            )
            if thumbnail is not None:
                size = _image_size(thumbnail.data)
                if size is None or thumbnail.data[:2] != b"\xff\xd8":
                    raise _bad("thumbnail must be a JPEG")
                if max(size) > 320 or len(thumbnail.data) > 200 * 1000:
                    raise _bad("thumbnail too large: at most 320x320 and 200 kB")
                media["thumbnail"] = {
                    "file_id": f"THUMB{stored.file_id}",
                    "file_unique_id": f"THUMB{stored.file_unique_id}",
                    "file_size": len(thumbnail.data),
                    "width": size[0],
                    "height": size[1],
                }
            content: dict[str, Any] = {"video": media}
        else:
            content = {"photo": self._photo_sizes(stored)}
        if group_id is not None:
            content["media_group_id"] = group_id
        plain, entities, source = self._caption(params, content)
        message = self._store_bot_message(
            chat,
            params,
            kind=kind,
            content=content,
            text=plain,
            source=source,
            entities=entities,
            file=upload,
        )
        if kind == "video" and how in ("upload", "path"):
            self.uploaded_videos += 1  # counted once it is accepted
        message.sent_as, message.media_group_id, message.thumbnail = how, group_id, thumbnail
        message.params = {k: v for k, v in params.items() if k not in ("media", "reply_markup")}
        return message

    def _caption(
        self, params: dict[str, Any], content: dict[str, Any]
    ) -> tuple[str, list[dict[str, Any]], str]:
        """A media message's caption (parsed like a text, at most 1024 characters once parsed) put
        into ``content``: (plain text, entities, source)."""
        source = str(params.get("caption") or "")
        plain, entities = (
            self._format(source, params.get("parse_mode"), params.get("caption_entities"))
            if source
            else ("", [])
        )
        if _u16(plain) > MAX_CAPTION_LENGTH:
            raise _bad("message caption is too long")
        if plain:
            content["caption"] = plain
            if entities:
                content["caption_entities"] = entities
        return plain, entities, source

    async def _h_chat_action(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        self._target_chat(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    async def _h_callback(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self.callback_answers or self.callback_answers[query_id] is not None:
            raise _bad(QUERY_TOO_OLD[len("Bad Request: ") :])
        if len(str(params.get("text") or "")) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = dict(params)
        return True

    async def _h_files(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        stored = self._files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise _bad("invalid file_id")
        if stored.size > self.download_limit:
            raise _bad("file is too big")
        if self.local_mode:  # an absolute path on this machine, which PTB copies instead of downloading
            return {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_size": stored.size,
                "file_path": self._local_file_path(stored),
            }
        if stored.file_path is None:
            self._path_counter += 1
            ext = _extension(stored)
            stored.file_path = f"{stored.folder}/file_{self._path_counter}{'.' + ext if ext else ''}"
            self._paths[stored.file_path] = stored
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.file_path,
        }

    async def _h_reaction(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        from telegram.constants import ReactionEmoji

        chat_id = self._chat_id(params)
        message = self._messages.get((chat_id, int(params.get("message_id") or 0)))
        if message is None:
            raise _bad("message to react not found")
        reactions = params.get("reaction") or []
        if not isinstance(reactions, list):
            raise _bad("can't parse reaction types JSON object")
        allowed = {e.value for e in ReactionEmoji}
        for reaction in reactions:
            if not isinstance(reaction, dict) or (
                reaction.get("type") == "emoji" and reaction.get("emoji") not in allowed
            ):
                raise _bad("REACTION_INVALID")
        self.reactions[(chat_id, message["message_id"])] = list(reactions)
        shown = "".join(str(r.get("emoji") or r.get("custom_emoji_id") or "") for r in reactions)
        self.reaction_history.setdefault((chat_id, message["message_id"]), []).append(shown)
        bot_message = self._find_bot_message(chat_id, message["message_id"])
        if bot_message is not None:
            bot_message.reactions = list(reactions)
        return True

    async def _h_chat_member(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return self._chat_member(self._target_chat(params), int(params.get("user_id") or 0))

    # ---------------------------------------------------------------- bot-side helpers

    def _chat_id(self, params: dict[str, Any]) -> int:
        value = params.get("chat_id")
        if value is None or value == "":
            raise _bad("chat_id is empty")
        try:
            return int(value)
        except (TypeError, ValueError) as err:
            raise _bad("chat not found") from err

    def _target_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._ensure_chat(self._chat_id(params), None, None)

    def _format(self, text: str, parse_mode: str | None, entities: Any) -> tuple[str, list[dict[str, Any]]]:
        """(plain text, entities) of a text or caption: HTML parsed like tdlib (a malformed one is 400
        "can't parse entities"), or plain text with the entities given. The bot sends HTML only, so the
        fake refuses Markdown and MarkdownV2 instead of modelling them."""
        mode = (parse_mode or "").lower()
        if mode == "html":
            try:
                plain, found = parse_html(text)
            except EntityParseError as err:
                raise _bad(f"can't parse entities: {err}") from err
        elif mode:
            raise _bad(f"unsupported parse_mode {parse_mode} (the fake parses HTML only)")
        else:
            plain, found = text, list(entities) if isinstance(entities, list) else []
        return _strip_text(plain, found)

    def _check_markup(self, markup: Any) -> dict[str, Any] | None:
        if markup is None or markup == "":
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise _bad(
                    "can't parse inline keyboard button: InlineKeyboardMarkup must be an Array of Arrays"
                )
            for button in (b for row in rows for b in row):
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad('can\'t parse inline keyboard button: Field "text" must be of type String')
                kinds = [k for k in _INLINE_BUTTON_KINDS if k in button]
                if not kinds:
                    raise _bad(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                    )
                if "callback_data" in button and not 1 <= len(str(button["callback_data"]).encode()) <= 64:
                    raise _bad("BUTTON_DATA_INVALID")
                if "url" in button and not re.match(r"(https?|tg)://\S+$", str(button["url"])):
                    raise _bad(f"inline keyboard button URL '{button['url']}' is invalid: Wrong HTTP URL")
        elif not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
            raise _bad("can't parse reply keyboard markup JSON object")
        return markup

    def _store_bot_message(
        self,
        chat: dict[str, Any],
        params: dict[str, Any],
        *,
        kind: str,
        content: dict[str, Any],
        text: str,
        source: str,
        entities: list[dict[str, Any]],
        file: UploadedFile | None = None,
    ) -> Message:
        chat_id = chat["id"]
        markup = self._check_markup(params.get("reply_markup"))
        reply_to = self._reply_target(chat_id, params)
        thread_id = params.get("message_thread_id")
        thread_id = int(thread_id) if thread_id not in (None, "") else None
        message_id = self._allocate_message_id(chat_id)
        raw: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": dict(chat)}
        if chat["type"] == "channel":
            raw["sender_chat"] = dict(chat)
        else:
            raw["from"] = self.bot_user
        if thread_id is not None:
            raw["message_thread_id"] = thread_id
            if chat.get("is_forum"):
                raw["is_topic_message"] = True
        if reply_to is not None:
            raw["reply_to_message"] = self._embed(chat_id, reply_to)
        elif thread_id is not None and chat.get("is_forum"):
            raw["reply_to_message"] = self._topic_root(chat_id, thread_id)
        raw.update(content)
        if markup is not None and "inline_keyboard" in markup:
            raw["reply_markup"] = markup
        self._messages[(chat_id, message_id)] = raw
        message = Message(
            message_id=message_id,
            chat_id=chat_id,
            text=text,
            kind=kind,
            reply_markup=markup,
            thread_id=thread_id,
            reply_to=reply_to,
            edits=[],
            deleted=False,
            file=file,
            source=source,
            entities=entities,
            raw=raw,
            sent_text=text,
            sent_at=time.monotonic(),
            disable_notification=bool(params.get("disable_notification")),
        )
        self._bot_messages.setdefault(chat_id, []).append(message)
        self._bot_message_index.setdefault((chat_id, message_id), message)
        return message

    def _reply_target(self, chat_id: int, params: dict[str, Any]) -> int | None:
        """The message ``reply_parameters`` (PTB's only way) points at in this chat, if any."""
        reply = params.get("reply_parameters")
        if not isinstance(reply, dict) or reply.get("chat_id") not in (None, chat_id, str(chat_id)):
            return None  # no reply; replies across chats are not modelled
        target = reply.get("message_id")
        allow_missing = bool(reply.get("allow_sending_without_reply"))
        if target in (None, ""):
            return None
        target = int(target)
        if (chat_id, target) not in self._messages:
            if allow_missing:
                return None
            raise _bad("message to be replied not found")
        return target

    async def _resolve_media(
        self, kind: str, value: Any, files: dict[str, UploadedFile], *, attach: bool = False
    ) -> tuple[_StoredFile, UploadedFile | None, str]:
        """A photo or video the bot sends, and how it came: an uploaded part ("upload"; in a media
        group by ``attach://``), a file id the fake issued ("file_id"), an http(s) URL the fake
        fetches ("url"), or in local mode a ``file://`` URI ("path")."""
        folder = MEDIA_FOLDERS[kind]
        if isinstance(value, str) and value.startswith("attach://"):
            upload = files.get(value.removeprefix("attach://"))
            if upload is None:
                raise _bad(f"{kind}: file not found in the request")
            return self._stored_upload(kind, upload), upload, "upload"
        if value is None or value == "":
            upload = None if attach else files.get(kind)
            if upload is None:
                raise _bad(f"there is no {kind} in the request")
            return self._stored_upload(kind, upload), upload, "upload"
        if not isinstance(value, str):
            raise _bad("wrong file identifier/HTTP URL specified")
        if self.local_mode and value.startswith("file://"):
            stored, local = self._stored_local(value, folder)
            return stored, local, "path"
        if value.startswith(("http://", "https://")):
            return await self._fetch_media(kind, value), None, "url"
        stored = self._files.get(value)
        if stored is None:
            raise _bad("wrong file identifier/HTTP URL specified")
        if stored.folder != folder:
            have = {"photos": "Photo", "videos": "Video"}.get(stored.folder, "Document")
            raise _bad(f"can't use file of type {have} as {kind.title()}")
        return stored, None, "file_id"

    def _stored_local(self, uri: str, folder: str) -> tuple[_StoredFile, UploadedFile]:
        local = self._local_upload(uri)
        size = len(local.data) if local.path is None else os.path.getsize(local.path)
        stored = self._store_file(
            local.data or None, folder, size=size, file_name=local.filename, mime_type=local.content_type
        )
        stored.local_path = local.path
        return stored, local

    def _stored_upload(self, kind: str, upload: UploadedFile) -> _StoredFile:
        if not upload.data:
            raise _bad("file must be non-empty")
        if len(upload.data) > self.upload_limit:
            raise _ApiError(413, "Request Entity Too Large")
        if kind == "photo":  # as Telegram checks an uploaded photo
            if len(upload.data) > PHOTO_LIMIT:
                raise _bad("PHOTO_SAVE_FILE_INVALID")
            size = _image_size(upload.data)
            if size is None:
                raise _bad("IMAGE_PROCESS_FAILED")
            width, height = size
            if width + height > 10000 or max(width, height) > 20 * max(1, min(width, height)):
                raise _bad("PHOTO_INVALID_DIMENSIONS")
            mime = "image/png" if upload.data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
            return self._store_file(upload.data, "photos", file_name=upload.filename, mime_type=mime)
        mime = upload.content_type
        if not mime or mime == "application/octet-stream":  # Telegram sniffs the real type
            mime = mimetypes.guess_type(upload.filename)[0] or "video/mp4"
        return self._store_file(upload.data, "videos", file_name=upload.filename, mime_type=mime)

    async def _fetch_media(self, kind: str, url: str) -> _StoredFile:
        """Fetch a photo or video by URL, as Telegram's servers do, and check what came."""
        self.fetched_urls.append(url)
        limit = URL_PHOTO_LIMIT if kind == "photo" else URL_FILE_LIMIT
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
                if response.status != 200:
                    raise _bad("failed to get HTTP URL content")
                data = await response.content.read(limit + 1)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise _bad("failed to get HTTP URL content") from err
        if len(data) > limit:
            raise _bad("failed to get HTTP URL content")
        if kind == "photo":
            if _image_size(data) is None:
                raise _bad("wrong type of the web page content")
            return self._store_file(data, "photos")
        if data[4:8] != b"ftyp":
            raise _bad("wrong type of the web page content")
        name = unquote(urlparse(url).path.rsplit("/", 1)[-1]) or "video.mp4"
        return self._store_file(data, "videos", file_name=name, mime_type="video/mp4")

    # ---------------------------------------------------------------- shared model helpers

    def _store_file(
        self,
        data: bytes | None,
        folder: str,
        *,
        size: int | None = None,
        file_name: str | None = None,
        mime_type: str | None = None,
    ) -> _StoredFile:
        self._file_counter += 1
        number = self._file_counter
        code = folder[:3].upper()
        stored = _StoredFile(
            file_id=f"FAKE{code}{number:06d}AAQCAgADfake{self.bot_id}",
            file_unique_id=f"AQAD{number:06d}",
            data=data,
            size=size if size is not None else len(data or b""),
            folder=folder,
            file_name=file_name,
            mime_type=mime_type,
        )
        self._files[stored.file_id] = stored
        return stored

    def _photo_sizes(self, stored: _StoredFile) -> list[dict[str, Any]]:
        width, height = _image_size(stored.data or b"") or (1280, 720)
        sizes = []
        for side in (90, 320):
            scale = min(1.0, side / max(width, height, 1))
            w, h = max(1, round(width * scale)), max(1, round(height * scale))
            thumb = self._store_file(f"fake thumbnail {w}x{h}".encode(), "photos")
            sizes.append(
                {
                    "file_id": thumb.file_id,
                    "file_unique_id": thumb.file_unique_id,
                    "width": w,
                    "height": h,
                    "file_size": thumb.size,
                }
            )
        sizes.append(
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "width": width,
                "height": height,
                "file_size": stored.size,
            }
        )
        return sizes

    def _media_object(
        self,
        kind: str,
        stored: _StoredFile,
        *,
        duration: int = 0,
        width: int = 1280,
        height: int = 720,
        emoji: str = "🙂",
    ) -> dict[str, Any]:
        """The Video/Audio/Voice/Document/Sticker object of a stored file."""
        obj: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
        if kind == "video":
            obj.update(width=width, height=height, duration=duration)
        elif kind in ("audio", "voice"):
            obj["duration"] = duration
        elif kind == "sticker":
            obj.update(
                type="regular", width=width, height=height, is_animated=False, is_video=False, emoji=emoji
            )
        if kind in ("video", "audio", "document") and stored.file_name:
            obj["file_name"] = stored.file_name
        if kind in ("video", "audio", "document", "voice") and stored.mime_type:
            obj["mime_type"] = stored.mime_type
        obj["file_size"] = stored.size
        return obj

    def _allocate_message_id(self, chat_id: int) -> int:
        number = self._next_message_id.get(chat_id, 1)
        while (chat_id, number) in self._messages or (chat_id, number) in self._topics:
            number += 1
        self._next_message_id[chat_id] = number + 1
        return number

    def _ensure_chat(self, chat_id: int, chat_type: str | None, user: User | None) -> dict[str, Any]:
        chat = self._chats.get(chat_id)
        if chat is not None and (chat_type is None or chat_type == chat["type"]):
            return chat
        if chat_type is None:
            chat_type = (
                "private" if chat_id > 0 else "supergroup" if str(chat_id).startswith("-100") else "group"
            )
        if chat_type == "private" and user is not None and chat_id not in self._private_users:
            self._private_users[chat_id] = user
        self.set_chat(chat_id, chat_type)
        return self._chats[chat_id]

    def _default_user(self, chat: dict[str, Any]) -> User:
        if chat["type"] == "private":
            return self._private_users.get(chat["id"]) or User(
                chat["id"], f"User{chat['id']}", f"user{chat['id']}"
            )
        return DEFAULT_GROUP_USER

    def _find_bot_message(self, chat_id: int, message_id: int) -> Message | None:
        return self._bot_message_index.get((chat_id, message_id))

    def _embed(self, chat_id: int, message_id: int) -> dict[str, Any]:
        stored = self._messages.get((chat_id, message_id))
        if stored is None:
            raise ValueError(f"no message {message_id} in chat {chat_id} to reply to")
        embedded = copy.deepcopy(stored)
        embedded.pop("reply_to_message", None)
        return embedded

    def _topic_root(self, chat_id: int, thread_id: int, name: str | None = None) -> dict[str, Any]:
        key = (chat_id, thread_id)
        if key not in self._topics:
            chat = self._chats.get(chat_id) or {
                "id": chat_id,
                "type": "supergroup",
                "title": f"Supergroup {chat_id}",
            }
            self._topics[key] = {
                "message_id": thread_id,
                "date": int(time.time()),
                "chat": dict(chat),
                "from": DEFAULT_GROUP_USER.to_dict(),
                "message_thread_id": thread_id,
                "forum_topic_created": {"name": name or f"Topic {thread_id}", "icon_color": 7322096},
                "is_topic_message": True,
            }
        return copy.deepcopy(self._topics[key])

    def _chat_member(self, chat: dict[str, Any], user_id: int) -> dict[str, Any]:
        if user_id == self.bot_id:
            user = self.bot_user
        elif chat["type"] == "private" and user_id == chat["id"]:
            user = self._default_user(chat).to_dict()
        else:
            user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        status = self._members.get((chat["id"], user_id), "member")
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                {
                    key: True
                    for key in (
                        "can_be_edited",
                        "can_manage_chat",
                        "can_delete_messages",
                        "can_manage_video_chats",
                        "can_restrict_members",
                        "can_promote_members",
                        "can_change_info",
                        "can_invite_users",
                        "can_post_stories",
                        "can_edit_stories",
                        "can_delete_stories",
                        "can_pin_messages",
                    )
                },
                is_anonymous=False,
            )
            member["can_be_edited"] = False
        elif status == "kicked":
            member["until_date"] = 0
        return member

    # ---------------------------------------------------------------- user-side helpers

    def _user_media(
        self,
        chat_id: int,
        content: dict[str, Any],
        caption: str | None,
        media_group_id: str | None,
        *,
        caption_entities: list[dict[str, Any]] | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        if caption:
            content["caption"] = caption
            found = detect_entities(caption) if caption_entities is None else caption_entities
            if found:
                content["caption_entities"] = found
        if media_group_id:
            content["media_group_id"] = media_group_id
        return self._user_message(chat_id, content, **kw)

    def _user_message(
        self,
        chat_id: int,
        content: dict[str, Any],
        *,
        user: User | None = None,
        chat_type: str | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        chat = self._ensure_chat(chat_id, chat_type, user)
        if thread_id is not None and chat["type"] == "supergroup":
            chat["is_forum"] = True
        message_id = self._allocate_message_id(chat_id)
        message: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": dict(chat)}
        if chat["type"] == "channel":
            message["sender_chat"] = dict(chat)
            key = "channel_post"
        else:
            message["from"] = (user or self._default_user(chat)).to_dict()
            key = "message"
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            if chat.get("is_forum"):
                message["is_topic_message"] = True
        if reply_to is not None:
            message["reply_to_message"] = self._embed(chat_id, reply_to)
        elif thread_id is not None and chat.get("is_forum"):
            message["reply_to_message"] = self._topic_root(chat_id, thread_id)
        message.update(content)
        self._messages[(chat_id, message_id)] = message
        return self._queue_update(key, message, self._bot_can_see(message))

    def _bot_can_see(self, message: dict[str, Any]) -> bool:
        """Privacy mode: in groups only commands, mentions of the bot and replies to the bot get through."""
        if not self.privacy_mode or message["chat"]["type"] not in ("group", "supergroup"):
            return True
        text = message.get("text") or message.get("caption") or ""
        if message.get("forum_topic_created") is not None:
            return True
        first = text.split(maxsplit=1)[0] if text.strip() else ""
        if first.startswith("/") and (
            "@" not in first or first.lower().endswith("@" + self.bot_username.lower())
        ):
            return True
        if "@" + self.bot_username.lower() in text.lower():
            return True
        replied = message.get("reply_to_message") or {}
        return replied.get("from", {}).get("id") == self.bot_id

    def _queue_update(self, key: str, payload: dict[str, Any], visible: bool) -> dict[str, Any]:
        """A new update: queued for getUpdates or the webhook unless privacy mode hides it (``visible``
        False); returned either way."""
        update = {"update_id": self._next_update_id, key: copy.deepcopy(payload)}
        self._next_update_id += 1 + max(0, self.update_id_gap)
        if visible:
            self._pending.append(update)
        self._notify()
        self._wake(_UPDATES_KEY)
        self._wake(_WEBHOOK_KEY)
        return update

    # ---------------------------------------------------------------- webhook delivery

    def _start_webhook(self) -> None:
        """Start delivering to ``webhook_url``: one dispatcher task, which starts the deliveries."""
        self._webhook_generation += 1
        self._webhook_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.webhook_max_connections)
        )
        self._spawn(self._dispatch_webhook(self._webhook_generation), "webhook dispatcher")

    async def _stop_webhook(self) -> None:
        """Cancel the dispatcher and every delivery in flight (their updates stay queued) and wait for
        them to end; close the HTTP session."""
        self._webhook_generation += 1
        tasks = list(self._webhook_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._webhook_tasks.difference_update(tasks)
        self._in_flight.clear()
        if self._webhook_session is not None:
            await self._webhook_session.close()
            self._webhook_session = None

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_tasks.discard)

    async def _dispatch_webhook(self, generation: int) -> None:
        """Until the webhook is deleted or replaced: start a delivery for each queued update, oldest
        first, at most ``webhook_max_connections`` in flight."""
        while generation == self._webhook_generation and not self._closing:
            self._drop_disallowed()
            for update in self._pending:
                if len(self._in_flight) >= self.webhook_max_connections:
                    break
                update_id = update["update_id"]
                if update_id not in self._in_flight:
                    self._in_flight.add(update_id)
                    self._spawn(self._deliver(update, generation), f"webhook delivery {update_id}")
            # woken by a new update or a finished delivery; the timeout only bounds each wait
            await self._wait_change(time.monotonic() + 1.0, _WEBHOOK_KEY)

    async def _deliver(self, update: dict[str, Any], generation: int) -> None:
        """POST the update until the webhook answers 2xx, pausing between attempts (the pause doubles
        from ``webhook_retry_seconds`` up to ``webhook_retry_max_seconds``); ends early when the webhook
        is deleted or replaced."""
        update_id = update["update_id"]
        body = json.dumps(update, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook_secret_token
        pause = self.webhook_retry_seconds
        attempt = 0
        try:
            while generation == self._webhook_generation and self._webhook_session is not None:
                attempt += 1
                outcome, error = await self._post_update(self._webhook_session, body, headers)
                self.webhook_deliveries.append(WebhookDelivery(update_id, outcome, attempt, time.monotonic()))
                if error is None:
                    with contextlib.suppress(ValueError):  # gone already if drop_pending_updates raced it
                        self._pending.remove(update)
                    return
                self._webhook_error = (int(time.time()), error)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.webhook_retry_max_seconds)
        finally:
            self._in_flight.discard(update_id)
            self._notify()
            self._wake(_WEBHOOK_KEY)

    async def _post_update(
        self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]
    ) -> tuple[int | str, str | None]:
        """One attempt: (HTTP status or exception name, None on a 2xx else Telegram's error text)."""
        try:
            async with session.post(
                self.webhook_url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
            ) as response:
                await response.read()
                if 200 <= response.status <= 299:
                    return response.status, None
                return (
                    response.status,
                    f"Wrong response from the webhook: {response.status} {response.reason}",
                )
        except TimeoutError as err:
            return type(err).__name__, "Read timeout expired"
        except aiohttp.ClientConnectorError as err:
            refused = isinstance(err.os_error, ConnectionRefusedError)
            error = "Connection refused" if refused else f"Failed to connect: {err.os_error}"
            return type(err).__name__, error
        except aiohttp.ClientError as err:
            return type(err).__name__, f"Webhook connection closed: {err}"


def _window_wait(log: deque[float], limit: int, window: float, now: float) -> float:
    """Seconds until a sliding window of ``limit`` requests per ``window`` s admits one more (0: now).
    ``log`` holds admitted times, oldest first; those out of the window are dropped."""
    while log and now - log[0] >= window:
        log.popleft()
    limit = max(1, limit)
    if len(log) < limit:
        return 0.0
    return log[len(log) - limit] + window - now


def _update_kind(update: dict[str, Any]) -> str:
    return next(key for key in update if key != "update_id")


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


def _extension(stored: _StoredFile) -> str:
    if stored.file_name and "." in stored.file_name:
        return stored.file_name.rsplit(".", 1)[1].lower()
    if stored.mime_type:
        guessed = mimetypes.guess_extension(stored.mime_type)
        if guessed:
            return guessed.lstrip(".")
    return _DEFAULT_EXT.get(stored.folder, "")
