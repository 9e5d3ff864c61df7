"""A fake Telegram Bot API server for tests.

`FakeTelegram` is an ``aiohttp.web`` server on 127.0.0.1 (a free port) that speaks the Bot API the way
python-telegram-bot uses it: ``POST <base_url><token>/<method>`` with form-encoded or multipart bodies
(non-string values JSON-encoded), JSON bodies and query strings also accepted, and file downloads
from ``GET <base_file_url><token>/<file_path>``. A test plays the users (``send_text``, ``send_photo``,
``press_button``...), which queues realistic Update JSON for ``getUpdates``; every call the bot makes
is recorded in ``calls`` and the messages it sends are kept per chat (``bot_messages``), with edits,
deletions and uploaded bytes.

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

    async with fake.make_bot() as bot:          # a telegram.Bot pointed at the fake
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
  bot only receives commands, messages mentioning ``@bot_username`` and replies to its own messages.
  Hidden updates are still returned by the user action and listed in ``hidden_updates``. Pass
  ``privacy_mode=False`` to deliver everything.
- Forum topic messages carry ``message_thread_id``, ``is_topic_message`` and, when they are not a reply,
  a ``reply_to_message`` that is the topic's ``forum_topic_created`` service message, as Telegram sends.
- Photo updates have three PhotoSize entries; only the largest serves the real bytes (the two
  thumbnails serve a short placeholder), so a bot that picks the wrong size is caught.
- Local Bot API mode (``telegram-bot-api --local``): ``FakeTelegram(local_mode=True, files_dir=...)``
  or ``use_local_mode()``. getFile then answers an absolute ``file_path`` on this machine (bytes
  registered in memory are written under ``files_dir`` first), the limits are 2000 MB both ways, and
  the bot may send ``file://`` URIs. ``add_file_path`` / ``send_video_path`` register a large file by
  its path, never read into memory (without local mode it is served from disk over HTTP).
- Raw ``&`` that does not start an entity is accepted in HTML, as tdlib (the Bot API server) does;
  set ``strict_html_ampersand = True`` to reject it.
- Like Telegram, ``editMessageText``/``editMessageCaption`` without ``reply_markup`` remove the inline
  keyboard, and an edit that changes nothing is 400 "message is not modified".
- A second concurrent ``getUpdates`` ends the older one with 409 Conflict (two bot instances); polls
  are capped at ``max_poll_timeout`` (1 s) so the bot stops quickly.
- Faults on demand: ``fail_next`` (any code; 429 carries ``retry_after``), ``delay_next``,
  ``block_bot`` (403), and opt-in per-chat flood control with ``set_flood_limit``.
- Telegram's own flood limits, opt-in (``FakeTelegram(flood_limits=True)`` or
  ``enable_flood_limits()``), with the numbers in ``flood`` (a ``FloodLimits``): at most 30 counted
  requests in any 1 s sliding window for the bot; per chat a token bucket of 3 refilled at 1/s; and in
  groups, supergroups and channels (negative ids) at most 20 in any 60 s window. Counted methods are
  ``FLOOD_COUNTED_METHODS`` (sends, copies, forwards, edits, deletes, chat actions, reactions); getUpdates,
  getMe, getFile, answerCallbackQuery and the get*/set* configuration calls never count. A request over
  a limit is 429 "Too Many Requests: retry after N" with ``parameters.retry_after`` N = the whole seconds
  until it would be admitted (at least 1), and a refused request counts toward nothing.
- Load-test counters (kept whether or not limits are on): ``too_many_requests`` (every 429 answered) and
  ``too_many_requests_by_chat``, ``counted_requests`` (admitted counted requests per method),
  ``request_times(chat_id, method)``, ``bot_message_times``, ``first_reply_after``; ``users(n)`` makes
  private users cheaply.
- Update ids start at a random number in [10**8, 10**9) (``first_update_id=`` to choose) and step by
  ``1 + update_id_gap``; ``skip_update_ids(n)`` makes one jump, as Telegram's ids may.
- ``BotCall.at``, ``Message.sent_at`` and flood-control timestamps use ``time.monotonic()``.
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
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

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
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
]

DEFAULT_TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"
MAX_MESSAGE_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # cloud Bot API getFile limit
UPLOAD_LIMIT = 50 * 1024 * 1024  # cloud Bot API multipart upload limit
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
    def result(self) -> Any:
        return (self.response or {}).get("result")

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
    kind: str  # "text" | "photo" | "video" | "document" | "audio" | "animation" | "voice" | ...
    reply_markup: dict[str, Any] | None  # whatever markup was sent (inline, reply keyboard, force_reply)
    thread_id: int | None
    reply_to: int | None
    edits: list[str]  # the text after each text/caption edit, in order
    deleted: bool
    file: UploadedFile | None  # uploaded bytes, or the registered bytes of a re-sent file_id
    parse_mode: str | None
    source: str = ""  # text/caption exactly as the bot sent it (markup included)
    entities: list[dict[str, Any]] = field(default_factory=list)
    file_id: str | None = None  # Telegram file_id of the media
    file_ref: str | None = None  # the URL or file_id string the bot passed instead of uploading bytes
    media_group_id: str | None = None
    reactions: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)  # the Bot API Message object as it is now
    sent_text: str = ""
    sent_at: float = 0.0  # time.monotonic() when the fake stored it

    @property
    def history(self) -> list[str]:
        """Every text the message has shown: as sent, then after each edit."""
        return [self.sent_text, *self.edits]

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


class EntityParseError(ValueError):
    """Raised by the markup parsers; the message is Telegram's detail text."""


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
# Text helpers: UTF-16 offsets, HTML / Markdown parsing like tdlib, user-side entity detection
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


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_TYPES = {
    "*": "bold",
    "_": "italic",
    "__": "underline",
    "~": "strikethrough",
    "||": "spoiler",
    "`": "code",
    "```": "pre",
}


def parse_markdown_v2(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's MarkdownV2 style (the common subset); raises EntityParseError like Telegram."""
    out: list[str] = []
    entities: list[dict[str, Any]] = []
    stack: list[tuple[str, int, int, str | None]] = []  # marker, utf16 start, byte offset, language
    pos, n, u16 = 0, len(text), 0

    def emit(chars: str) -> None:
        nonlocal u16
        out.append(chars)
        u16 += _u16(chars)

    while pos < n:
        char = text[pos]
        in_code = bool(stack) and stack[-1][0] in ("`", "```")
        if char == "\\" and pos + 1 < n and 0 < ord(text[pos + 1]) < 127:
            emit(text[pos + 1])
            pos += 2
            continue
        if in_code:
            marker = stack[-1][0]
            if text.startswith(marker, pos):
                _, start, _, language = stack.pop()
                if u16 > start:
                    entity = {"type": _MDV2_TYPES[marker], "offset": start, "length": u16 - start}
                    if language:
                        entity["language"] = language
                    entities.append(entity)
                pos += len(marker)
            else:
                emit(char)
                pos += 1
            continue
        if text.startswith("```", pos):
            newline = text.find("\n", pos + 3)
            language = text[pos + 3 : newline].strip() if newline != -1 else ""
            stack.append(("```", u16, len(text[:pos].encode()), language or None))
            pos = newline + 1 if newline != -1 and " " not in language else pos + 3
            continue
        marker = None
        if text.startswith("||", pos):
            marker = "||"
        elif text.startswith("__", pos) and not (stack and stack[-1][0] == "_"):
            marker = "__"
        elif char in "*_~`":
            marker = char
        if marker:
            if stack and stack[-1][0] == marker:
                _, start, _, _ = stack.pop()
                if u16 > start:
                    entities.append({"type": _MDV2_TYPES[marker], "offset": start, "length": u16 - start})
            else:
                stack.append((marker, u16, len(text[:pos].encode()), None))
            pos += len(marker)
            continue
        if char == "[":
            stack.append(("[", u16, len(text[:pos].encode()), None))
            pos += 1
            continue
        if char == "]" and stack and stack[-1][0] == "[":
            _, start, offset, _ = stack.pop()
            if not text.startswith("(", pos + 1):
                raise EntityParseError(f"Can't find end of a URL at byte offset {offset}")
            close = pos + 2
            url_chars: list[str] = []
            while close < n and text[close] != ")":
                if text[close] == "\\" and close + 1 < n:
                    close += 1
                url_chars.append(text[close])
                close += 1
            if close >= n:
                raise EntityParseError(f"Can't find end of a URL at byte offset {offset}")
            if u16 > start:
                entities.append(
                    {"type": "text_link", "offset": start, "length": u16 - start, "url": "".join(url_chars)}
                )
            pos = close + 1
            continue
        if char == ">" and (pos == 0 or text[pos - 1] == "\n"):
            pos += 1  # blockquote marker; the quote entity itself is not modelled
            continue
        if char in _MDV2_RESERVED:
            raise EntityParseError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        emit(char)
        pos += 1
    if stack:
        marker, _, offset, _ = stack[-1]
        name = {"[": "TextUrl", "```": "Pre", "`": "Code"}.get(marker, _MDV2_TYPES.get(marker, "").title())
        raise EntityParseError(f"Can't find end of {name} entity at byte offset {offset}")
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def parse_markdown(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's legacy Markdown style: *bold* _italic_ `code` ```pre``` [text](url), no nesting."""
    out: list[str] = []
    entities: list[dict[str, Any]] = []
    pos, n, u16 = 0, len(text), 0
    kinds = {"*": "bold", "_": "italic", "`": "code", "```": "pre"}
    while pos < n:
        char = text[pos]
        if char == "\\" and pos + 1 < n and text[pos + 1] in "_*`[":
            out.append(text[pos + 1])
            u16 += 1
            pos += 2
            continue
        marker = "```" if text.startswith("```", pos) else char if char in "*_`[" else None
        if marker is None:
            out.append(char)
            u16 += _u16(char)
            pos += 1
            continue
        offset = len(text[:pos].encode())
        if marker == "[":
            close = text.find("]", pos + 1)
            if close == -1 or not text.startswith("(", close + 1) or text.find(")", close) == -1:
                raise EntityParseError(f"Can't find end of the entity starting at byte offset {offset}")
            label, url = text[pos + 1 : close], text[close + 2 : text.find(")", close)]
            if label:
                entities.append({"type": "text_link", "offset": u16, "length": _u16(label), "url": url})
            out.append(label)
            u16 += _u16(label)
            pos = text.find(")", close) + 1
            continue
        close = text.find(marker, pos + len(marker))
        if close == -1:
            raise EntityParseError(f"Can't find end of the entity starting at byte offset {offset}")
        inner = text[pos + len(marker) : close]
        if inner:
            entities.append({"type": kinds[marker], "offset": u16, "length": _u16(inner)})
        out.append(inner)
        u16 += _u16(inner)
        pos = close + len(marker)
    return "".join(out), entities


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
    """Width and height of a PNG, GIF, JPEG or WebP image, if recognisable."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", data[6:10])
            return width, height
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
            if chunk == b"VP8 ":
                width, height = struct.unpack("<HH", data[26:30])
                return width & 0x3FFF, height & 0x3FFF
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
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
        "description",
        "short_description",
        "name",
        "language_code",
        "emoji",
        "action",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
        "title",
        "performer",
        "file_name",
        "secret_token",
        "photo",
        "video",
        "document",
        "audio",
        "voice",
        "video_note",
        "animation",
        "sticker",
        "thumbnail",
        "cover",
        "query",
        "custom_title",
        "ip_address",
    }
)

_METHODS = [
    "getMe",
    "logOut",
    "close",
    "getUpdates",
    "setWebhook",
    "deleteWebhook",
    "getWebhookInfo",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "setMyDescription",
    "getMyDescription",
    "setMyShortDescription",
    "getMyShortDescription",
    "setMyName",
    "getMyName",
    "setChatMenuButton",
    "getChatMenuButton",
    "sendMessage",
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
    "editMessageMedia",
    "deleteMessage",
    "deleteMessages",
    "sendChatAction",
    "sendPhoto",
    "sendVideo",
    "sendDocument",
    "sendAudio",
    "sendAnimation",
    "sendVoice",
    "sendVideoNote",
    "sendSticker",
    "sendMediaGroup",
    "answerCallbackQuery",
    "getFile",
    "setMessageReaction",
    "getChat",
    "getChatMember",
    "pinChatMessage",
    "unpinChatMessage",
]
_CANONICAL = {name.lower(): name for name in _METHODS}
_MEDIA_METHODS = {
    "sendPhoto": "photo",
    "sendVideo": "video",
    "sendDocument": "document",
    "sendAudio": "audio",
    "sendAnimation": "animation",
    "sendVoice": "voice",
    "sendVideoNote": "video_note",
    "sendSticker": "sticker",
}
_FOLDERS = {
    "photo": "photos",
    "video": "videos",
    "document": "documents",
    "audio": "music",
    "animation": "animations",
    "voice": "voice",
    "video_note": "video_notes",
    "sticker": "stickers",
}
_DEFAULT_EXT = {
    "photos": "jpg",
    "videos": "mp4",
    "music": "mp3",
    "animations": "mp4",
    "voice": "oga",
    "video_notes": "mp4",
    "stickers": "webp",
    "documents": "",
}
_DEFAULT_MIME = {
    "video": "video/mp4",
    "animation": "video/mp4",
    "video_note": "video/mp4",
    "audio": "audio/mpeg",
    "voice": "audio/ogg",
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
_SENDING_PREFIXES = ("send", "edit", "copy", "forward")
# Requests Telegram's flood limits count (canonical spelling); every other method never gets a flood 429.
FLOOD_COUNTED_METHODS = frozenset(
    {
        "sendMessage",
        *_MEDIA_METHODS,
        "sendMediaGroup",
        "copyMessage",
        "forwardMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "editMessageReplyMarkup",
        "deleteMessage",
        "sendChatAction",
        "setMessageReaction",
    }
)
_UPDATES_KEY = "updates"  # the wait key of getUpdates long polls (chat waits are keyed by chat id)

Handler = Callable[[str, dict[str, Any], dict[str, UploadedFile]], Awaitable[Any]]


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
        self.strict_html_ampersand = False
        self.host = "127.0.0.1"
        self.port = 0

        self.calls: list[BotCall] = []
        self.updates: list[dict[str, Any]] = []  # every update ever queued (delivered or not yet)
        self.hidden_updates: list[dict[str, Any]] = []  # updates privacy mode kept from the bot
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (scope JSON, language) -> commands
        self.descriptions: dict[tuple[str, str], str] = {}  # (kind, language) -> text
        self.callback_answers: dict[str, dict[str, Any] | None] = {}  # query id -> answer params (None: open)
        self.webhook_url = ""
        self.reactions: dict[tuple[int, int], list[dict[str, Any]]] = {}  # (chat, message) -> bot's reaction

        self.flood_limits = flood_limits  # Telegram's flood limits on/off (enable_flood_limits)
        self.flood = flood if flood is not None else FloodLimits()  # their numbers, changeable any time
        self.update_id_gap = update_id_gap  # ids step by 1 + gap
        self.too_many_requests = 0  # every 429 answered (flood limits, set_flood_limit, fail_next)
        self.too_many_requests_by_chat: Counter[int] = Counter()
        self.counted_requests: Counter[str] = Counter()  # admitted requests of FLOOD_COUNTED_METHODS

        self._pending: list[dict[str, Any]] = []
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
        self._files: dict[str, _StoredFile] = {}
        self._paths: dict[str, _StoredFile] = {}
        self._file_counter = 0
        self._path_counter = 0
        self._media_group_counter = 0
        self._callback_counter = 0
        self._failures: dict[str, list[_Failure]] = {}
        self._delays: dict[str, list[float]] = {}
        self._blocked: set[int] = set()
        self._flood: tuple[int, float, int] | None = None
        self._flood_log: dict[int, list[float]] = {}
        self._global_log: deque[float] = deque()  # admitted counted requests in the global window
        self._buckets: dict[int, tuple[float, float]] = {}  # chat -> (tokens, monotonic of last refill)
        self._group_logs: dict[int, deque[float]] = {}  # negative chat -> admitted in the group window
        self._request_log: dict[int, list[tuple[float, str]]] = {}  # chat -> (monotonic, method) admitted
        self._bot_message_index: dict[tuple[int, int], Message] = {}
        self._next_user_id = 7_000_000_001  # users(n)
        self._keyed_events: dict[object, asyncio.Event] = {}  # chat id / _UPDATES_KEY -> waiters' event
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._request: web.Request | None = None
        self._handlers: dict[str, Handler] = self._build_handlers()
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
        app.router.add_route("*", "/{tail:.*}", self._serve_not_found)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._closing = False

    async def stop(self) -> None:
        """Wake pending long polls and shut the server down."""
        self._closing = True
        self._notify()
        self._wake(_UPDATES_KEY)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._own_files_dir is not None:
            shutil.rmtree(self._own_files_dir, ignore_errors=True)
            self._own_files_dir = self.files_dir = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

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

    def make_bot(self, **kwargs: Any) -> Any:
        """A ``telegram.Bot`` pointed at this server (use ``async with``)."""
        from telegram import Bot

        return Bot(self.token, base_url=self.base_url, base_file_url=self.base_file_url, **kwargs)

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
        ``enable_flood_limits(global_limit=2, global_window=0.2)``. Counters are not reset.
        """
        self.flood_limits = enabled
        if limits:
            self.flood = replace(self.flood, **limits)
        self._global_log.clear()
        self._buckets.clear()
        self._group_logs.clear()

    def reset_counters(self) -> None:
        """Zero ``too_many_requests``, ``counted_requests`` and the ``request_times`` logs."""
        self.too_many_requests = 0
        self.too_many_requests_by_chat.clear()
        self.counted_requests.clear()
        self._request_log.clear()

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
        username: str | None = None,
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
            if username:
                chat["username"] = username
            if is_forum and chat_type == "supergroup":
                chat["is_forum"] = True
        self._chats[chat_id] = chat
        return dict(chat)

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        """What getChatMember answers: "creator", "administrator", "member", "left" or "kicked"."""
        self._members[(chat_id, user_id)] = status

    def add_file(
        self,
        data: bytes,
        *,
        size: int | None = None,
        kind: str = "document",
        file_name: str | None = None,
        mime_type: str | None = None,
    ) -> tuple[str, str]:
        """Register bytes the bot may fetch with getFile; returns (file_id, file_unique_id).

        ``size`` claims a file_size other than len(data) (e.g. 30 MB, to trigger "file is too big").
        """
        stored = self._store_file(
            data, _FOLDERS.get(kind, kind), size=size, file_name=file_name, mime_type=mime_type
        )
        return stored.file_id, stored.file_unique_id

    def file_bytes(self, file_id: str) -> bytes | None:
        stored = self._files.get(file_id)
        return stored.data if stored else None

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

    def add_file_path(
        self,
        path: str | os.PathLike[str],
        *,
        kind: str = "document",
        file_name: str | None = None,
        mime_type: str | None = None,
    ) -> tuple[str, str]:
        """Register a file on disk by its path (never read into memory); returns (file_id,
        file_unique_id). In local mode getFile answers this absolute path; otherwise the file is
        served from disk at its file URL. ``file_name`` defaults to the file's own name."""
        stored = self._store_path(path, _FOLDERS.get(kind, kind), file_name, mime_type)
        return stored.file_id, stored.file_unique_id

    def send_video_path(
        self,
        chat_id: int,
        path: str | os.PathLike[str],
        *,
        file_name: str | None = None,
        duration: int = 2,
        mime_type: str | None = "video/mp4",
        width: int = 1280,
        height: int = 720,
        caption: str | None = None,
        media_group_id: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """``send_video`` for a (large) file on disk: its size is the file's, its bytes never loaded."""
        stored = self._store_path(path, "videos", file_name, mime_type)
        video = self._media_object("video", stored, duration=duration, width=width, height=height)
        return self._user_media(chat_id, {"video": video}, caption, media_group_id, **kw)

    def _store_path(
        self, path: str | os.PathLike[str], folder: str, file_name: str | None, mime_type: str | None
    ) -> _StoredFile:
        local = Path(path).absolute()
        stored = self._store_file(
            None, folder, size=local.stat().st_size, file_name=file_name or local.name, mime_type=mime_type
        )
        stored.local_path = str(local)
        return stored

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

    def _local_upload(self, uri: str, kind: str) -> UploadedFile:
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
        mime = mimetypes.guess_type(path.name)[0] or _DEFAULT_MIME.get(kind, "application/octet-stream")
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
        performer: str | None = None,
        title: str | None = None,
        caption: str | None = None,
        media_group_id: str | None = None,
        size: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        stored = self._store_file(data, "music", size=size, file_name=file_name, mime_type=mime_type)
        audio = self._media_object("audio", stored, duration=duration, performer=performer, title=title)
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

    def send_video_note(
        self,
        chat_id: int,
        data: bytes,
        *,
        duration: int = 2,
        length: int = 240,
        size: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        stored = self._store_file(data, "video_notes", size=size)
        note = self._media_object("video_note", stored, duration=duration, length=length)
        return self._user_media(chat_id, {"video_note": note}, None, None, **kw)

    def send_animation(
        self,
        chat_id: int,
        data: bytes,
        *,
        file_name: str | None = "animation.mp4",
        mime_type: str | None = "video/mp4",
        duration: int = 1,
        width: int = 320,
        height: int = 240,
        caption: str | None = None,
        size: int | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """A GIF/animation: Telegram sends both ``animation`` and a ``document`` copy."""
        stored = self._store_file(data, "animations", size=size, file_name=file_name, mime_type=mime_type)
        content = {
            "animation": self._media_object(
                "animation", stored, duration=duration, width=width, height=height
            ),
            "document": self._media_object("document", stored),
        }
        return self._user_media(chat_id, content, caption, None, **kw)

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

    def bot_message_times(self, chat_id: int) -> list[float]:
        """``Message.sent_at`` (``time.monotonic()``) of each bot message in the chat, oldest first."""
        return [message.sent_at for message in self._bot_messages.get(chat_id, [])]

    def first_reply_after(self, chat_id: int, mark: int) -> float | None:
        """When (monotonic) the bot sent its first message in the chat with index >= ``mark`` (a
        ``message_count`` taken before the user acted); None while there is none. To wait for it, use
        ``wait_for_message(chat_id, after=mark)`` and read ``sent_at``."""
        messages = self._bot_messages.get(chat_id, [])
        return messages[mark].sent_at if len(messages) > mark else None

    def request_times(self, chat_id: int, method: str | None = None) -> list[float]:
        """Arrival times (monotonic) of the admitted counted requests (``FLOOD_COUNTED_METHODS``) for the
        chat, only ``method``'s if given: the bot's cadence, e.g. of ``sendChatAction``."""
        log = self._request_log.get(chat_id, [])
        if method is None:
            return [at for at, _ in log]
        name = _CANONICAL.get(method.lower(), method)
        return [at for at, logged in log if logged == name]

    def chat_message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """Any message of the chat (user's or bot's) as Bot API JSON."""
        message = self._messages.get((chat_id, message_id))
        return copy.deepcopy(message) if message else None

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Queued updates the bot has not confirmed yet."""
        return list(self._pending)

    def calls_to(self, method: str) -> list[BotCall]:
        name = _CANONICAL.get(method.lower(), method)
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
        """Until the bot has confirmed (offset past) every queued update."""
        deadline = time.monotonic() + timeout
        while self._pending:
            if not await self._wait_change(deadline):
                raise TimeoutError(f"{len(self._pending)} updates still unconfirmed.\n{self.dump_calls()}")

    def dump_calls(self, last: int = 25) -> str:
        recent = self.calls[-last:]
        first = len(self.calls) - len(recent)
        lines = [f"  [{first + i}] {call}" for i, call in enumerate(recent)]
        return f"Last {len(recent)} of {len(self.calls)} Bot API calls:\n" + ("\n".join(lines) or "  (none)")

    # ---------------------------------------------------------------- HTTP layer

    async def _serve_not_found(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

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
        method = _CANONICAL.get(requested.lower(), requested)
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
            handler = self._handlers.get(method.lower())
            if handler is None:
                raise _ApiError(404, "Not Found")
            self._check_blocked_and_flood(method, params)
            self._request = request  # read synchronously by _get_updates, before its first await
            result = await handler(method, params, files)
            status, payload = 200, {"ok": True, "result": result}
        except _ApiError as err:
            status, payload = err.code, err.payload()
        call.status, call.response = status, payload
        chat_key = self._chat_key(params)
        if status == 429:
            self.too_many_requests += 1
            if chat_key is not None:
                self.too_many_requests_by_chat[chat_key] += 1
        self._notify()
        if chat_key is not None:
            self._wake(chat_key)  # wait_for_message waits per chat: 1,000 waiters do not all wake
        return web.json_response(payload, status=status)

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
        raw: dict[str, Any] = dict(request.query)
        typed: dict[str, Any] = {}
        files: dict[str, UploadedFile] = {}
        if request.body_exists:
            content_type = request.content_type
            if content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError as err:
                    raise _bad("can't parse JSON object") from err
                if isinstance(body, dict):
                    typed.update(body)
            elif content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
                try:
                    form = await request.post()
                except web.HTTPRequestEntityTooLarge as err:
                    raise _ApiError(413, "Request Entity Too Large") from err
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        files[key] = UploadedFile(value.filename, value.content_type, value.file.read())
                    else:
                        raw[key] = value
        params = {key: _decode_param(key, value) for key, value in raw.items()}
        params.update(typed)
        return params, files

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
        if not counted:
            return
        if self.flood_limits:  # admitted: count it in every window
            self._global_log.append(now)
            if chat_id is not None:
                self._buckets[chat_id] = (tokens - 1, now)
                if chat_id < 0:
                    self._group_logs.setdefault(chat_id, deque()).append(now)
        self.counted_requests[method] += 1
        if chat_id is not None:
            self._request_log.setdefault(chat_id, []).append((now, method))

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
        """The request's chat id as an int, cheaply; None when absent or unknown."""
        value = params.get("chat_id")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value:
            with contextlib.suppress(_ApiError, ValueError):
                return self._chat_id(params) if value.startswith("@") else int(value)
        return None

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
        families: list[tuple[Handler, list[str]]] = [
            (self._h_bot_info, ["getMe", "logOut", "close", "setChatMenuButton", "getChatMenuButton"]),
            (self._h_updates, ["getUpdates", "setWebhook", "deleteWebhook", "getWebhookInfo"]),
            (self._h_commands, ["setMyCommands", "getMyCommands", "deleteMyCommands"]),
            (
                self._h_descriptions,
                [
                    "setMyDescription",
                    "getMyDescription",
                    "setMyShortDescription",
                    "getMyShortDescription",
                    "setMyName",
                    "getMyName",
                ],
            ),
            (self._h_send_message, ["sendMessage"]),
            (
                self._h_edit,
                ["editMessageText", "editMessageCaption", "editMessageReplyMarkup", "editMessageMedia"],
            ),
            (self._h_delete, ["deleteMessage", "deleteMessages"]),
            (self._h_send_media, list(_MEDIA_METHODS)),
            (self._h_send_media_group, ["sendMediaGroup"]),
            (self._h_chat_action, ["sendChatAction"]),
            (self._h_callback, ["answerCallbackQuery"]),
            (self._h_files, ["getFile"]),
            (self._h_reaction, ["setMessageReaction"]),
            (self._h_chat, ["getChat", "getChatMember", "pinChatMessage", "unpinChatMessage"]),
        ]
        return {name.lower(): handler for handler, names in families for name in names}

    # ---------------------------------------------------------------- method families

    async def _h_bot_info(self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        if method == "getMe":
            return {
                **self.bot_user,
                "can_join_groups": True,
                "can_read_all_group_messages": not self.privacy_mode,
                "supports_inline_queries": False,
                "can_connect_to_business": False,
                "has_main_web_app": False,
            }
        if method == "getChatMenuButton":
            return {"type": "commands"}
        return True  # logOut, close, setChatMenuButton

    async def _h_updates(self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        if method == "setWebhook":
            self.webhook_url = str(params.get("url") or "")
            return True
        if method == "deleteWebhook":
            self.webhook_url = ""
            if params.get("drop_pending_updates"):
                self._pending.clear()
            return True
        if method == "getWebhookInfo":
            return {
                "url": self.webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._pending),
            }
        return await self._get_updates(params)

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = min(max(float(params.get("timeout") or 0), 0.0), self.max_poll_timeout)
        if "allowed_updates" in params:
            allowed = params["allowed_updates"] or []
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_ALLOWED_UPDATES
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
            self._pending = [u for u in self._pending if _update_kind(u) in self._allowed_updates]
            if self._pending or self._closing:
                return copy.deepcopy(self._pending[:limit])
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

    async def _h_commands(self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        scope = params.get("scope") or {"type": "default"}
        key = (json.dumps(scope, sort_keys=True), str(params.get("language_code") or ""))
        if method == "getMyCommands":
            return self.commands.get(key, [])
        if method == "deleteMyCommands":
            self.commands.pop(key, None)
            return True
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
        if commands:
            self.commands[key] = [
                {"command": c["command"].removeprefix("/"), "description": c["description"]} for c in commands
            ]
        else:
            self.commands.pop(key, None)
        return True

    async def _h_descriptions(
        self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        kind = {"description": "description", "shortdescription": "short_description", "name": "name"}[
            method.lower().removeprefix("setmy").removeprefix("getmy")
        ]
        key = (kind, str(params.get("language_code") or ""))
        if method.startswith("get"):
            default = self.bot_first_name if kind == "name" else ""
            return {kind: self.descriptions.get(key, default)}
        limit = {"description": 512, "short_description": 120, "name": 64}[kind]
        value = str(params.get(kind) or "")
        if len(value) > limit:
            raise _bad(f"{kind} is too long")
        self.descriptions[key] = value
        return True

    async def _h_send_message(
        self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        chat = self._target_chat(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad("message text is empty")
        parse_mode = params.get("parse_mode") or None
        plain, entities = self._format(text, parse_mode, params.get("entities"))
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
            chat,
            params,
            kind="text",
            content=content,
            text=plain,
            source=text,
            entities=entities,
            parse_mode=parse_mode,
        )
        return copy.deepcopy(message.raw)

    async def _h_edit(self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        if params.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")
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
        parse_mode = params.get("parse_mode") or None
        new_file: UploadedFile | None = None
        if method == "editMessageText":
            if message.kind != "text":
                raise _bad("there is no text in the message to edit")
            text = params.get("text")
            if not isinstance(text, str) or not text.strip():
                raise _bad("message text is empty")
            plain, entities = self._format(text, parse_mode, params.get("entities"))
            if len(plain) > MAX_MESSAGE_LENGTH:
                raise _bad("MESSAGE_TOO_LONG")
            if not plain:
                raise _bad("message text is empty")
            if plain == message.text and entities == message.entities and markup == message.reply_markup:
                raise _bad(NOT_MODIFIED[len("Bad Request: ") :])
            self._apply_text_edit(message, "text", plain, entities, text, parse_mode)
        elif method == "editMessageCaption":
            if message.kind == "text":
                raise _bad("there is no caption in the message to edit")
            source = str(params.get("caption") or "")
            plain, entities = (
                self._format(source, parse_mode, params.get("caption_entities")) if source else ("", [])
            )
            if len(plain) > MAX_CAPTION_LENGTH:
                raise _bad("message caption is too long")
            if plain == message.text and entities == message.entities and markup == message.reply_markup:
                raise _bad(NOT_MODIFIED[len("Bad Request: ") :])
            self._apply_text_edit(message, "caption", plain, entities, source, parse_mode)
        elif method == "editMessageReplyMarkup":
            if markup == message.reply_markup:
                raise _bad(NOT_MODIFIED[len("Bad Request: ") :])
        else:  # editMessageMedia
            media = params.get("media")
            if not isinstance(media, dict) or media.get("type") not in _FOLDERS:
                raise _bad("can't parse InputMedia JSON object")
            kind = media["type"]
            stored, new_file = self._resolve_input_file(media.get("media"), files, kind)
            source = str(media.get("caption") or "")
            plain, entities = (
                self._format(source, media.get("parse_mode"), media.get("caption_entities"))
                if source
                else ("", [])
            )
            for key in [*_FOLDERS, "caption", "caption_entities"]:
                message.raw.pop(key, None)
            message.raw.update(self._media_content(kind, stored, media))
            message.kind, message.file, message.file_id = kind, new_file, stored.file_id
            message.file_ref = _file_ref(media.get("media"))
            self._apply_text_edit(message, "caption", plain, entities, source, media.get("parse_mode"))
        message.reply_markup = markup
        if markup is not None:
            message.raw["reply_markup"] = markup
        else:
            message.raw.pop("reply_markup", None)
        message.raw["edit_date"] = int(time.time())
        return copy.deepcopy(message.raw)

    async def _h_delete(self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat_id = self._chat_id(params)
        ids = params.get("message_ids") if method == "deleteMessages" else [params.get("message_id")]
        if not isinstance(ids, list) or not ids or any(i is None for i in ids):
            raise _bad("message identifier is not specified")
        found = False
        for raw_id in ids:
            message_id = int(raw_id)
            stored = self._messages.pop((chat_id, message_id), None)
            bot_message = self._find_bot_message(chat_id, message_id)
            if bot_message is not None and not bot_message.deleted:
                bot_message.deleted = True
                found = True
            elif stored is not None:
                found = True
        if not found:
            raise _bad("message to delete not found")
        return True

    async def _h_send_media(self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        kind = _MEDIA_METHODS[method]
        chat = self._target_chat(params)
        stored, upload = self._resolve_input_file(params.get(kind), files, kind)
        content = self._media_content(kind, stored, params)
        source = str(params.get("caption") or "") if kind not in ("sticker", "video_note") else ""
        parse_mode = params.get("parse_mode") or None
        plain, entities = (
            self._format(source, parse_mode, params.get("caption_entities")) if source else ("", [])
        )
        if len(plain) > MAX_CAPTION_LENGTH:
            raise _bad("message caption is too long")
        if plain:
            content["caption"] = plain
            if entities:
                content["caption_entities"] = entities
        message = self._store_bot_message(
            chat,
            params,
            kind=kind,
            content=content,
            text=plain,
            source=source,
            entities=entities,
            parse_mode=parse_mode,
            file=upload,
            file_id=stored.file_id,
            file_ref=_file_ref(params.get(kind)),
        )
        return copy.deepcopy(message.raw)

    async def _h_send_media_group(
        self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        chat = self._target_chat(params)
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad("wrong number of messages in the media group (must be 2-10)")
        resolved = []
        for item in media:
            if not isinstance(item, dict) or item.get("type") not in ("photo", "video", "document", "audio"):
                raise _bad("can't parse InputMedia JSON object")
            resolved.append((item, *self._resolve_input_file(item.get("media"), files, item["type"])))
        self._media_group_counter += 1
        group_id = f"2{self._media_group_counter:017d}"
        results = []
        for item, stored, upload in resolved:
            kind = item["type"]
            content = self._media_content(kind, stored, item)
            content["media_group_id"] = group_id
            source = str(item.get("caption") or "")
            plain, entities = (
                self._format(source, item.get("parse_mode"), item.get("caption_entities"))
                if source
                else ("", [])
            )
            if plain:
                content["caption"] = plain
                if entities:
                    content["caption_entities"] = entities
            message = self._store_bot_message(
                chat,
                {**params, "reply_markup": None},
                kind=kind,
                content=content,
                text=plain,
                source=source,
                entities=entities,
                parse_mode=item.get("parse_mode"),
                file=upload,
                file_id=stored.file_id,
                file_ref=_file_ref(item.get("media")),
                media_group_id=group_id,
            )
            results.append(copy.deepcopy(message.raw))
        return results

    async def _h_chat_action(
        self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        self._target_chat(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    async def _h_callback(self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self.callback_answers or self.callback_answers[query_id] is not None:
            raise _bad(QUERY_TOO_OLD[len("Bad Request: ") :])
        if len(str(params.get("text") or "")) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = dict(params)
        return True

    async def _h_files(self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
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

    async def _h_reaction(self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
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
        bot_message = self._find_bot_message(chat_id, message["message_id"])
        if bot_message is not None:
            bot_message.reactions = list(reactions)
        return True

    async def _h_chat(self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat = self._target_chat(params)
        if method == "getChat":
            return {
                **chat,
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": False,
                    "limited_gifts": False,
                    "unique_gifts": False,
                    "premium_subscription": False,
                    "gifts_from_channels": False,
                },
            }
        if method == "getChatMember":
            user_id = int(params.get("user_id") or 0)
            return self._chat_member(chat, user_id)
        return True  # pin/unpin

    # ---------------------------------------------------------------- bot-side helpers

    def _chat_id(self, params: dict[str, Any]) -> int:
        value = params.get("chat_id")
        if value is None or value == "":
            raise _bad("chat_id is empty")
        if isinstance(value, str) and value.startswith("@"):
            for chat_id, chat in self._chats.items():
                if str(chat.get("username", "")).lower() == value[1:].lower():
                    return chat_id
            raise _bad("chat not found")
        try:
            return int(value)
        except (TypeError, ValueError) as err:
            raise _bad("chat not found") from err

    def _target_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._ensure_chat(self._chat_id(params), None, None)

    def _format(self, text: str, parse_mode: str | None, entities: Any) -> tuple[str, list[dict[str, Any]]]:
        mode = (parse_mode or "").lower()
        try:
            if mode == "html":
                plain, found = parse_html(text, strict_ampersand=self.strict_html_ampersand)
            elif mode == "markdownv2":
                plain, found = parse_markdown_v2(text)
            elif mode == "markdown":
                plain, found = parse_markdown(text)
            elif mode:
                raise _bad(f"unsupported parse_mode {parse_mode}")
            else:
                plain, found = text, list(entities) if isinstance(entities, list) else []
        except EntityParseError as err:
            raise _bad(f"can't parse entities: {err}") from err
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
        parse_mode: str | None,
        file: UploadedFile | None = None,
        file_id: str | None = None,
        file_ref: str | None = None,
        media_group_id: str | None = None,
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
            parse_mode=parse_mode,
            source=source,
            entities=entities,
            file_id=file_id,
            file_ref=file_ref,
            media_group_id=media_group_id,
            raw=raw,
            sent_text=text,
            sent_at=time.monotonic(),
        )
        self._bot_messages.setdefault(chat_id, []).append(message)
        self._bot_message_index.setdefault((chat_id, message_id), message)
        return message

    def _reply_target(self, chat_id: int, params: dict[str, Any]) -> int | None:
        reply = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        if isinstance(reply, dict):
            target = reply.get("message_id")
            allow_missing = bool(reply.get("allow_sending_without_reply", allow_missing))
            if reply.get("chat_id") not in (None, chat_id, str(chat_id)):
                return None  # replies across chats are not modelled
        else:
            target = params.get("reply_to_message_id")
        if target in (None, ""):
            return None
        target = int(target)
        if (chat_id, target) not in self._messages:
            if allow_missing:
                return None
            raise _bad("message to be replied not found")
        return target

    def _apply_text_edit(
        self,
        message: Message,
        field_name: str,
        plain: str,
        entities: list[dict[str, Any]],
        source: str,
        parse_mode: str | None,
    ) -> None:
        entities_key = "entities" if field_name == "text" else "caption_entities"
        message.raw.pop(entities_key, None)
        if plain or field_name == "text":
            message.raw[field_name] = plain
        else:
            message.raw.pop(field_name, None)
        if entities:
            message.raw[entities_key] = entities
        if plain != message.text or source != message.source:
            message.edits.append(plain)
        message.text, message.entities, message.source, message.parse_mode = (
            plain,
            entities,
            source,
            parse_mode,
        )

    def _resolve_input_file(
        self, value: Any, files: dict[str, UploadedFile], kind: str
    ) -> tuple[_StoredFile, UploadedFile | None]:
        """An InputFile param: an uploaded part, ``attach://name``, a known file_id or an HTTP URL."""
        upload = None
        if isinstance(value, str) and value.startswith("attach://"):
            upload = files.get(value.removeprefix("attach://"))
            if upload is None:
                raise _bad(f"file of type {kind} not found in the request")
        elif value is None or value == "":
            upload = files.get(kind)
            if upload is None:
                raise _bad(f"there is no {kind} in the request")
        if upload is not None:
            if not upload.data:
                raise _bad("file must be non-empty")
            if len(upload.data) > self.upload_limit:
                raise _ApiError(413, "Request Entity Too Large")
            mime = upload.content_type
            if not mime or mime == "application/octet-stream":  # Telegram sniffs the real type
                mime = mimetypes.guess_type(upload.filename)[0] or _DEFAULT_MIME.get(kind, mime)
            stored = self._store_file(upload.data, _FOLDERS[kind], file_name=upload.filename, mime_type=mime)
            return stored, upload
        assert isinstance(value, str)
        if self.local_mode and value.startswith("file://"):
            local = self._local_upload(value, kind)
            size = len(local.data) if local.path is None else os.path.getsize(local.path)
            stored = self._store_file(
                local.data or None,
                _FOLDERS[kind],
                size=size,
                file_name=local.filename,
                mime_type=local.content_type,
            )
            stored.local_path = local.path
            return stored, local
        if value in self._files:
            stored = self._files[value]
            data = stored.data or b""
            return stored, UploadedFile(stored.file_name or "", stored.mime_type or "", data)
        if re.match(r"https?://", value):
            name = value.rsplit("/", 1)[-1].split("?", 1)[0] or None
            stored = self._store_file(
                None, _FOLDERS[kind], file_name=name, mime_type=mimetypes.guess_type(value)[0]
            )
            return stored, None
        raise _bad("wrong file identifier/HTTP URL specified")

    def _media_content(self, kind: str, stored: _StoredFile, params: dict[str, Any]) -> dict[str, Any]:
        """The Message fields for a media kind the bot sent (sizes from params, else defaults)."""
        if kind == "photo":
            return {"photo": self._photo_sizes(stored)}
        dims = _image_size(stored.data or b"") if kind == "sticker" else None
        obj = self._media_object(
            kind,
            stored,
            duration=_int(params.get("duration"), 0),
            width=_int(params.get("width"), dims[0] if dims else (512 if kind == "sticker" else 1280)),
            height=_int(params.get("height"), dims[1] if dims else (512 if kind == "sticker" else 720)),
            length=_int(params.get("length"), 240),
            performer=params.get("performer"),
            title=params.get("title"),
            emoji=params.get("emoji") or "🙂",
        )
        content: dict[str, Any] = {kind: obj}
        if kind == "animation":
            content["document"] = self._media_object("document", stored)
        return content

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
        length: int = 240,
        performer: str | None = None,
        title: str | None = None,
        emoji: str = "🙂",
    ) -> dict[str, Any]:
        obj: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
        if kind in ("video", "animation"):
            obj.update(width=width, height=height, duration=duration)
        elif kind in ("audio", "voice"):
            obj["duration"] = duration
            if performer:
                obj["performer"] = performer
            if title:
                obj["title"] = title
        elif kind == "video_note":
            obj.update(length=length, duration=duration)
        elif kind == "sticker":
            obj.update(
                type="regular", width=width, height=height, is_animated=False, is_video=False, emoji=emoji
            )
        if kind in ("video", "animation", "audio", "document") and stored.file_name:
            obj["file_name"] = stored.file_name
        if kind in ("video", "animation", "audio", "document", "voice") and stored.mime_type:
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
        update = {"update_id": self._next_update_id, key: copy.deepcopy(payload)}
        self._next_update_id += 1 + max(0, self.update_id_gap)
        if visible:
            self._pending.append(update)
            self.updates.append(update)
        else:
            self.hidden_updates.append(update)
        self._notify()
        self._wake(_UPDATES_KEY)
        return update


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


def _file_ref(value: Any) -> str | None:
    return value if isinstance(value, str) and value and not value.startswith("attach://") else None


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
