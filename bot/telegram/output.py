"""Sending to one chat (or forum topic): HTML with a plain-text fallback, splitting, buttons, retries.

Every message the bot sends goes through `ChatOutput`, so escaping, the 4096-character limit,
"message is not modified", transient network errors and a user who blocked the bot are handled
in one place. Pacing and flood waits belong to `bot.telegram.flood.FloodLimiter`: what is sent with
`cosmetic=True` may be dropped there under load (`Thinned`), so the caller decides what that means.

Why one module of this length: every kind of message the bot sends (text, media, albums, edits,
buttons) shares the one set of fallbacks and retries here.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    InputMediaPhoto,
    InputMediaVideo,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    WebAppInfo,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import ExtBot

from bot.core.actions import Action
from bot.core.agent_text import split_html
from bot.core.texts import Lang, say, sendable
from bot.telegram.flood import COSMETIC, FloodLimiter, Priority, Thinned, rank

log = logging.getLogger(__name__)
T = TypeVar("T")

# Each action's label (a key of the texts); an action not here is a profile example, labelled by it.
BUTTON_LABELS: dict[str, str] = {
    **{str(action): f"button_{action}" for action in Action},
    Action.TIMELINE: "button_timeline",
}
CALLBACK_PREFIX = "act:"
ROW_MAX = 4  # buttons in a row: more get too narrow on a phone
LONG_LABEL = 16  # a label longer than this (an example sentence) gets a row of its own
TAG = re.compile(r"<[^>]+>")
CAPTION_LIMIT = 1024  # Telegram's, for a media caption once its HTML is parsed
ALBUM_LIMIT = 10  # Telegram's limit for a media group


GONE_REASONS = (
    "chat not found",
    "thread not found",
    "topic_closed",
    "topic closed",
    "not enough rights",
    "have no rights",
    "chat_write_forbidden",
    "need administrator rights",
)


class ChatGone(Exception):
    """Telegram refuses for good: the bot was blocked, kicked, or the chat no longer exists."""


@dataclass(frozen=True)
class Media:
    """A photo or video to show: a Telegram file id, an http(s) URL (Telegram fetches it), or the
    bytes of a small file to upload (a thumbnail)."""

    kind: Literal["photo", "video"]
    source: str | bytes
    filename: str = "preview.jpg"  # the name of uploaded bytes

    def input(self, *, in_group: bool = False) -> str | InputFile:
        """What PTB sends: the id or URL as is, bytes as a file (in a media group, by attach://)."""
        if isinstance(self.source, bytes):
            return InputFile(self.source, filename=self.filename, attach=in_group)
        return self.source


class Link(NamedTuple):
    """A button that opens a link: a web page, or a Mini App inside Telegram (private chats only)."""

    label: str
    url: str  # https
    web_app: bool = False


def keyboard(
    actions: Sequence[str],
    lang: Lang,
    labels: Mapping[str, str] | None = None,
    links: Sequence[Link] = (),
) -> InlineKeyboardMarkup | None:
    """Inline buttons for actions; callback data names the action only, never another chat's ids.

    `labels` gives the text of actions without a fixed label (the profile's examples); `links`
    (the project in the browser, the studio) get the last row to themselves."""
    if not actions and not links:
        return None
    texts = [(labels or {}).get(a) or say(lang, BUTTON_LABELS[a]) for a in actions]
    buttons = [
        InlineKeyboardButton(text, callback_data=CALLBACK_PREFIX + a)
        for text, a in zip(texts, actions, strict=True)
    ]
    rows = [[buttons[i] for i in row] for row in button_rows(texts)]
    if links:
        rows.append([_link_button(link) for link in links])
    return InlineKeyboardMarkup(rows)


def _link_button(link: Link) -> InlineKeyboardButton:
    if link.web_app:
        return InlineKeyboardButton(link.label, web_app=WebAppInfo(link.url))
    return InlineKeyboardButton(link.label, url=link.url)


def button_rows(labels: Sequence[str]) -> list[list[int]]:
    """Which buttons share a row (indices, in order): long labels alone, the rest in rows of at
    most ROW_MAX, as even as can be (8 buttons: 4 + 4; 9: 3 + 3 + 3; 3: one row)."""
    if any(len(label) > LONG_LABEL for label in labels):
        return [[i] for i in range(len(labels))]
    count = len(labels)
    rows = -(-count // ROW_MAX)
    sizes = [count // rows + (1 if r < count % rows else 0) for r in range(rows)] if count else []
    result, start = [], 0
    for size in sizes:
        result.append(list(range(start, start + size)))
        start += size
    return result


def plain(html_text: str) -> str:
    """The text of an HTML message without its markup, for the parse-error fallback."""
    return html.unescape(TAG.sub("", html_text))


@dataclass(frozen=True)
class Transfers:
    """How hard a request to Telegram is tried (each from a setting)."""

    network_attempts: int  # tries of a request that met a network error
    file_seconds: float  # reading or writing a file (a video sent, an upload fetched)


@dataclass(frozen=True)
class Telegram:
    """The way out to Telegram: each chat's output, made with the same transfer settings."""

    bot: ExtBot[Any]
    transfers: Transfers

    def to(
        self, chat_id: int, lang: Lang, *, thread_id: int | None = None, reply_to: int | None = None
    ) -> ChatOutput:
        return ChatOutput(self.bot, self.transfers, chat_id, lang, thread_id=thread_id, reply_to=reply_to)


class ChatOutput:
    def __init__(
        self,
        bot: ExtBot[Any],
        transfers: Transfers,
        chat_id: int,
        lang: Lang,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
    ):
        self.bot = bot
        self.transfers = transfers
        self.chat_id = chat_id
        self.lang = lang
        self.thread_id = thread_id
        self.reply_to = reply_to

    def in_topic(self, thread_id: int) -> ChatOutput:
        """The same chat's topic `thread_id`, in the same language."""
        return ChatOutput(self.bot, self.transfers, self.chat_id, self.lang, thread_id=thread_id)

    async def say(
        self,
        key: str,
        *,
        buttons: Sequence[str] = (),
        cosmetic: bool = False,
        silent: bool = False,
        links: Sequence[Link] = (),
        **values: object,
    ) -> Message | None:
        return await self.send(
            say(self.lang, key, **values),
            buttons=buttons,
            cosmetic=cosmetic,
            silent=silent,
            links=links,
        )

    async def send(
        self,
        html_text: str,
        *,
        buttons: Sequence[str] = (),
        cosmetic: bool = False,
        labels: Mapping[str, str] | None = None,
        silent: bool = False,
        links: Sequence[Link] = (),
        later: bool = False,
    ) -> Message | None:
        """Send HTML, split to Telegram's limit; buttons go under the last part. The last Message.

        Cosmetic text (a notice, not an answer) may be dropped under load: it raises `Thinned`.
        Silent text arrives without a notification sound (progress, previews)."""
        parts = split_html(sendable(html_text)) or [html_text]
        last = None
        for index, part in enumerate(parts):
            markup = keyboard(buttons, self.lang, labels, links) if index == len(parts) - 1 else None
            priority = Priority.LATER if later and not cosmetic else _priority(cosmetic)
            last = await self._send_text(part, markup, priority, silent=silent)
        return last

    async def edit(
        self, message_id: int, html_text: str, *, buttons: Sequence[str] = (), cosmetic: bool = False
    ) -> bool:
        """Replace a message's text; False when it is gone (then the caller may send anew).

        A cosmetic edit (progress) may be dropped under load: it raises `Thinned`."""
        markup = keyboard(buttons, self.lang)
        html_text = sendable(html_text)
        try:
            await self._retry(
                self.bot.edit_message_text,
                chat_id=self.chat_id,
                message_id=message_id,
                text=html_text,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                rate_limit_args=_priority(cosmetic),
            )
        except BadRequest as err:
            text = str(err).lower()
            if "not modified" in text:
                return True
            if "parse entities" in text:
                return await self._edit_plain(message_id, html_text, markup)
            log.info("chat %s: could not edit message %s: %s", self.chat_id, message_id, err)
            return False
        return True

    async def edit_or_send(
        self,
        message_id: int | None,
        html_text: str,
        *,
        buttons: Sequence[str] = (),
        cosmetic: bool = False,
        silent: bool = False,
    ) -> int | None:
        """Edit a progress message, or send a new one (`silent` or not) when it cannot be edited.
        The message id."""
        if message_id is not None and await self.edit(
            message_id, html_text, buttons=buttons, cosmetic=cosmetic
        ):
            return message_id
        message = await self.send(html_text, buttons=buttons, cosmetic=cosmetic, silent=silent)
        return message.message_id if message else None

    @contextlib.asynccontextmanager
    async def reserved(self, *, edit: bool, cosmetic: bool = False) -> AsyncIterator[None]:
        """Wait for the slot of one request to this chat (a new message, or an `edit`), then build
        it: the first request inside goes at once, so it carries the latest state, not the state
        of when it began to wait. Cosmetic: no wait, or `Thinned`."""
        limiter = self.bot.rate_limiter
        if not isinstance(limiter, FloodLimiter):
            yield
            return
        place = rank("editMessageText" if edit else "sendMessage", _priority(cosmetic))
        async with limiter.reserve(self.chat_id, _priority(cosmetic), place):
            yield

    async def delete(self, message_id: int) -> bool:
        """Delete a message (the bot's, or one sent to it where it may); False when Telegram refuses
        (already gone, too old, no right to)."""
        try:
            await self._retry(self.bot.delete_message, chat_id=self.chat_id, message_id=message_id)
        except BadRequest as err:
            log.info("chat %s: could not delete message %s: %s", self.chat_id, message_id, err)
            return False
        return True

    async def react(self, message_id: int, emoji: str | None) -> bool:
        """Set (or, with None, clear) the bot's reaction on a message. Cosmetic: under load it raises
        `Thinned`; a refusal (reactions off in the chat, an old message) is logged and False."""
        try:
            await self.bot.set_message_reaction(
                self.chat_id, message_id, reaction=emoji, rate_limit_args=COSMETIC
            )
        except TelegramError as err:
            log.debug("chat %s: reaction on message %s refused: %s", self.chat_id, message_id, err)
            return False
        return True

    async def typing(self) -> None:
        """Show "typing…" if Telegram's budget has room for it; it is never worth a wait."""
        try:
            await self.bot.send_chat_action(
                self.chat_id, ChatAction.TYPING, message_thread_id=self.thread_id, rate_limit_args=COSMETIC
            )
        except (NetworkError, RetryAfter, Thinned) as err:
            log.debug("chat %s: chat action skipped: %s", self.chat_id, type(err).__name__)
        except Forbidden as err:
            raise ChatGone(str(err)) from err

    async def send_video(
        self,
        video: Path | str,
        filename: str,
        caption_html: str,
        *,
        duration: float | None = None,
        width: int | None = None,
        height: int | None = None,
        thumbnail: bytes | None = None,
        links: Sequence[Link] = (),
    ) -> Message | None:
        """Send a video: a file to upload, or (a str) a Telegram file id it already has, which
        uploads nothing. An upload is not retried on a timeout: it may have arrived, and a second
        copy is worse than the link the caller sends instead. It rings: the one awaited answer."""
        upload = isinstance(video, Path)
        return await self._with_caption(
            self.bot.send_video,
            caption_html,
            retry_timeouts=not upload,
            chat_id=self.chat_id,
            video=video,  # a path: PTB reads it per attempt (and passes a file:// URI in local mode)
            filename=filename if upload else None,
            supports_streaming=True,
            duration=round(duration) if duration else None,
            width=width,
            height=height,
            thumbnail=InputFile(thumbnail, filename="thumbnail.jpg", attach=True) if thumbnail else None,
            reply_markup=keyboard((), self.lang, links=links),
            message_thread_id=self.thread_id,
            reply_parameters=self._reply(),
            read_timeout=self.transfers.file_seconds,
            write_timeout=self.transfers.file_seconds,
        )

    async def send_photo(
        self,
        png: bytes,
        caption_html: str,
        *,
        buttons: Sequence[str] = (),
        links: Sequence[Link] = (),
        filename: str = "timeline.png",
    ) -> Message | None:
        """Send a picture with an HTML caption (at most 1024 characters once parsed: the caller
        keeps it short). Not retried on a timeout (a second copy is worse than the text the caller
        sends instead)."""
        return await self._with_caption(
            self.bot.send_photo,
            caption_html,
            retry_timeouts=False,
            chat_id=self.chat_id,
            photo=png,
            filename=filename,
            message_thread_id=self.thread_id,
            reply_markup=keyboard(buttons, self.lang, links=links),
            reply_parameters=self._reply(),
            read_timeout=self.transfers.file_seconds,
            write_timeout=self.transfers.file_seconds,
        )

    async def send_media(
        self, media: Media, caption_html: str = "", *, silent: bool = False, later: bool = False
    ) -> Message | None:
        """One photo or video (by file id, URL or small bytes), with an HTML caption; `later`: it
        follows the chat's answer, so under load it waits behind other chats' first words."""
        method = self.bot.send_photo if media.kind == "photo" else self.bot.send_video
        field = "photo" if media.kind == "photo" else "video"
        return await self._with_caption(
            method,
            caption_html,
            chat_id=self.chat_id,
            message_thread_id=self.thread_id,
            reply_parameters=self._reply(),
            disable_notification=silent or None,
            read_timeout=self.transfers.file_seconds,
            write_timeout=self.transfers.file_seconds,
            rate_limit_args=Priority.LATER if later else Priority.ANSWER,
            **{field: media.input()},
        )

    async def send_album(
        self, items: Sequence[Media], caption_html: str = "", *, silent: bool = False
    ) -> list[Message]:
        """2-10 photos and videos as one media group, the caption under the first (Telegram shows it
        as the album's)."""
        caption = sendable(caption_html)

        def group(
            caption_text: str | None, parse_mode: str | None
        ) -> list[InputMediaPhoto | InputMediaVideo]:
            media: list[InputMediaPhoto | InputMediaVideo] = []
            for index, item in enumerate(items[:ALBUM_LIMIT]):
                text = caption_text if index == 0 else None
                kind = InputMediaPhoto if item.kind == "photo" else InputMediaVideo
                media.append(
                    kind(item.input(in_group=True), caption=text, parse_mode=parse_mode if text else None)
                )
            return media

        kwargs: dict[str, Any] = {
            "chat_id": self.chat_id,
            "message_thread_id": self.thread_id,
            "reply_parameters": self._reply(),
            "disable_notification": silent or None,
            "read_timeout": self.transfers.file_seconds,
            "write_timeout": self.transfers.file_seconds,
        }
        try:
            sent = await self._retry(
                self.bot.send_media_group, media=group(caption or None, ParseMode.HTML), **kwargs
            )
        except BadRequest as err:
            if not caption or "parse entities" not in str(err).lower():
                raise
            log.warning("chat %s: HTML caption refused (%s), sending plain text", self.chat_id, err)
            sent = await self._retry(self.bot.send_media_group, media=group(plain(caption), None), **kwargs)
        return list(sent)

    # -- internals ------------------------------------------------------------------------------

    def _reply(self) -> ReplyParameters | None:
        if self.reply_to is None:
            return None
        return ReplyParameters(message_id=self.reply_to, allow_sending_without_reply=True)

    async def _with_caption(
        self, method: Callable[..., Awaitable[Message]], caption_html: str, **kwargs: Any
    ) -> Message:
        """Send media with an HTML caption, again with the caption as plain text if Telegram cannot
        parse it."""
        caption = sendable(caption_html)
        try:
            return await self._retry(method, caption=caption or None, parse_mode=ParseMode.HTML, **kwargs)
        except BadRequest as err:
            if not caption or "parse entities" not in str(err).lower():
                raise
            log.warning("chat %s: HTML caption refused (%s), sending plain text", self.chat_id, err)
            return await self._retry(method, caption=plain(caption)[:CAPTION_LIMIT], **kwargs)

    async def _send_text(
        self, text: str, markup: InlineKeyboardMarkup | None, priority: Priority, *, silent: bool = False
    ) -> Message | None:
        kwargs: dict[str, Any] = {
            "chat_id": self.chat_id,
            "message_thread_id": self.thread_id,
            "reply_markup": markup,
            "reply_parameters": self._reply(),
            "link_preview_options": LinkPreviewOptions(is_disabled=True),
            "rate_limit_args": priority,
            "disable_notification": silent or None,
        }
        try:
            message = await self._retry(self.bot.send_message, text=text, parse_mode=ParseMode.HTML, **kwargs)
        except BadRequest as err:
            if "parse entities" not in str(err).lower():
                raise
            log.warning("chat %s: HTML refused (%s), sending plain text", self.chat_id, err)
            message = await self._retry(self.bot.send_message, text=plain(text)[:4096] or "…", **kwargs)
        return message

    async def _edit_plain(self, message_id: int, html_text: str, markup: InlineKeyboardMarkup | None) -> bool:
        try:
            await self._retry(
                self.bot.edit_message_text,
                chat_id=self.chat_id,
                message_id=message_id,
                text=plain(html_text)[:4096] or "…",
                reply_markup=markup,
            )
        except BadRequest:
            return False
        return True

    async def _retry(
        self, method: Callable[..., Awaitable[T]], *, retry_timeouts: bool = True, **kwargs: Any
    ) -> T:
        """Call a Bot method, retrying transient network errors; a chat the bot can no longer
        write to (blocked, kicked, closed topic, migrated group) raises ChatGone. (Flood waits
        were already honoured and retried by the FloodLimiter: a RetryAfter here is final.)"""
        attempts = self.transfers.network_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await method(**kwargs)
            except (Forbidden, ChatMigrated) as err:
                raise ChatGone(str(err)) from err
            except BadRequest as err:
                if any(reason in str(err).lower() for reason in GONE_REASONS):
                    raise ChatGone(str(err)) from err
                raise
            except NetworkError as err:  # TimedOut included
                if attempt == attempts or (isinstance(err, TimedOut) and not retry_timeouts):
                    raise
                await asyncio.sleep(0.5 * attempt)
        raise AssertionError("unreachable")


def _priority(cosmetic: bool) -> Priority:
    return COSMETIC if cosmetic else Priority.ANSWER
