"""The short flows (connect, status, credits, new project) and the one map from errors to words."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from redis.exceptions import RedisError
from telegram.error import TelegramError

from bot.access import today
from bot.agent_text import QUICK_ACTIONS
from bot.errors import (
    BackendUnavailable,
    ExportNotAllowed,
    NemoError,
    OutOfCredits,
    RateLimited,
    StreamDropped,
    StreamIdle,
)
from bot.flood import Thinned
from bot.media import ACCEPTED_LIST
from bot.nemo import NemoClient
from bot.projects import ChatRef, Connection, OperatorTokenRejected, Projects
from bot.settings import Settings
from bot.store import ChatAddress, Store
from bot.telegram_io import CAPTION_LIMIT, ChatOutput, Telegram, plain
from bot.texts import Lang, language_of, say
from bot.timeline import duration_ms, format_timeline, layout, tracks
from bot.timeline_image import clock, render_png

log = logging.getLogger(__name__)
EXAMPLE = re.compile(r"ex([1-9][0-9]{0,2})")


@dataclass(frozen=True)
class ChatContext:
    """One user request: where it came from, the languages to use, and where replies go."""

    chat: ChatRef
    lang: Lang  # the bot's reply language
    session_lang: str  # the agent session's language
    out: ChatOutput
    user_id: int | None = None  # None for channel posts and work resumed after a restart
    shared: bool = False  # a group or channel: quieter, merged output
    message_id: int | None = None  # the user's message being answered (for reactions), when there is one


def resume(address: ChatAddress, telegram: Telegram) -> ChatContext:
    """The chat that durable work (a render, a cut turn, pending media) answers, rebuilt after a
    restart or on another replica from its record's address."""
    lang = language_of(address.language)
    out = telegram.to(address.chat_id, lang, thread_id=address.thread_id)
    return ChatContext(
        ChatRef(address.chat_id, address.thread_id, address.key), lang, address.session_language, out
    )


def example_action(index: int) -> str:
    """The button (and deep-link payload) of the profile's example `index` (0-based): `ex1`, `ex2` …"""
    return f"ex{index + 1}"


def example_index(payload: str | None, count: int) -> int | None:
    """The 0-based example a payload or button names (`ex1` is the first), or None when it names none
    (a deep-link payload is `[A-Za-z0-9_-]{1,64}`; anything else, or `ex0`, `ex07`, is no example)."""
    match = EXAMPLE.fullmatch(payload or "")
    index = int(match.group(1)) - 1 if match else -1
    return index if 0 <= index < count else None


def register_link(base: str, user_id: str) -> str:
    return f"{base}?bind={quote(user_id, safe='')}" if user_id else base


def error_text(err: BaseException, lang: Lang, *, user_id: str, anonymous: bool, register_url: str) -> str:
    """What to tell the user about a failure (details go to the log, never to the chat)."""
    if isinstance(err, RedisError):
        return say(lang, "storage_unavailable")
    if isinstance(err, OperatorTokenRejected):
        return say(lang, "operator_token")
    if isinstance(err, OutOfCredits):
        if anonymous:
            return say(lang, "out_of_credits_anonymous", link=register_link(register_url, user_id))
        return say(lang, "out_of_credits")
    if isinstance(err, ExportNotAllowed):
        return say(lang, "export_not_allowed", link=register_link(register_url, user_id))
    if isinstance(err, RateLimited):
        return say(lang, "rate_limited")
    if isinstance(err, BackendUnavailable | StreamDropped | StreamIdle | NemoError):
        return say(lang, "backend_unavailable")
    return say(lang, "unexpected")


class Flows:
    """The short flows, and what every longer one shares: connecting a chat and explaining failures."""

    def __init__(self, settings: Settings, projects: Projects, client: NemoClient, store: Store):
        self.settings = settings
        self.projects = projects
        self.client = client
        self.store = store  # failures are counted in the day's usage

    async def user_id(self, chat: ChatRef) -> str:
        """The backend user id of the chat's account ("" when unknown or unreadable)."""
        try:
            return await self.projects.user_id(chat)
        except RedisError:
            return ""

    async def explain(
        self,
        ctx: ChatContext,
        err: BaseException,
        *,
        message_id: int | None = None,
        buttons: Sequence[str] = (),
    ) -> None:
        """Log a failure without secrets and tell the user what it means for them."""
        with contextlib.suppress(RedisError):
            await self.store.count_usage("failures", ctx.chat.key, today())
        if isinstance(err, NemoError):
            log.warning("chat %s: %s", ctx.chat.key, err.describe())
        elif isinstance(err, RedisError):
            log.warning("chat %s: Redis unavailable: %s", ctx.chat.key, type(err).__name__)
        else:
            log.error("chat %s: unexpected %s", ctx.chat.key, type(err).__name__, exc_info=err)
        text = error_text(
            err,
            ctx.lang,
            user_id=await self.user_id(ctx.chat),
            anonymous=self.projects.anonymous,
            register_url=self.settings.nemo_register_url,
        )
        await ctx.out.edit_or_send(message_id, text, buttons=buttons)

    async def ensure_connected(self, ctx: ChatContext) -> Connection | None:
        """The chat's connection, set up on first use (saying so briefly); None (after telling the
        user) on failure."""
        try:
            if (connection := await self.projects.connected(ctx.chat, ctx.session_lang)) is not None:
                return connection
        except Exception as err:
            await self.explain(ctx, err)
            return None
        try:  # a notice, not an answer: under load it is dropped, and so is its "ready"
            notice = await ctx.out.say("setting_up", cosmetic=True)
        except Thinned:
            notice = None
        try:
            connection = await self.projects.connect(ctx.chat, ctx.session_lang)
        except Exception as err:
            await self.explain(ctx, err, message_id=notice.message_id if notice else None)
            return None
        if notice is not None:
            await ctx.out.edit_or_send(notice.message_id, say(ctx.lang, "ready"))
        return connection

    async def greet(self, ctx: ChatContext, payload: str | None = None) -> None:
        """The profile's greeting and "try saying" examples, each a button that says it, then the
        connection. A deep link's payload `ex<N>` (`/start ex2`) offers only that example."""
        profile = self.settings.profile
        examples = "\n".join(f"• “{html.escape(example)}”" for example in profile.examples)
        greeting = html.escape(profile.greeting[ctx.lang])
        text = f"{greeting}\n\n{say(ctx.lang, 'try_saying')}\n{examples}\n\n/help"
        chosen = example_index(payload, len(profile.examples))
        offered = [chosen] if chosen is not None else list(range(len(profile.examples)))
        if chosen is not None:
            text += f"\n\n{say(ctx.lang, 'try_this')}"
        actions = [example_action(i) for i in offered]
        labels = {  # a button's text is plain, not HTML
            example_action(i): html.unescape(say(ctx.lang, "button_example", example=profile.examples[i]))
            for i in offered
        }
        await ctx.out.send(text, buttons=actions, labels=labels)
        await self.ensure_connected(ctx)

    def example(self, action: str) -> str | None:
        """The profile's example an `ex<N>` button names (None for anything else)."""
        examples = self.settings.profile.examples
        index = example_index(action, len(examples))
        return examples[index] if index is not None else None

    async def help(self, ctx: ChatContext) -> None:
        await ctx.out.say("help", formats=ACCEPTED_LIST, limit=self.settings.upload_limit_mb)

    async def upload_help(self, ctx: ChatContext) -> None:
        await ctx.out.say("upload_help", formats=ACCEPTED_LIST, limit=self.settings.upload_limit_mb)

    async def status(self, ctx: ChatContext) -> None:
        if not (connection := await self.ensure_connected(ctx)):
            return
        try:
            state = await self.projects.state(ctx.chat, ctx.session_lang, connection=connection)
        except Exception as err:
            await self.explain(ctx, err)
            return
        summary = tracks(state.draft)
        lines = [
            say(ctx.lang, "timeline", timeline=format_timeline(summary))
            if summary
            else say(ctx.lang, "timeline_empty")
        ]
        if state.media:
            kinds = Counter(str(item.get("file_type") or item.get("type") or "file") for item in state.media)
            described = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
            lines.append(say(ctx.lang, "media_count", count=len(state.media), kinds=described))
        text = "\n".join(lines)
        if not summary:  # nothing to draw
            await ctx.out.send(text)
        elif not await self._send_picture(ctx, state.draft, text):
            await ctx.out.send(text, buttons=QUICK_ACTIONS)

    async def _send_picture(self, ctx: ChatContext, draft: object, text: str) -> bool:
        """The timeline as a picture, the summary its caption (or, when too long for one, a short
        caption and the summary after it), with the quick actions under the last message. False
        when the picture could not be drawn or Telegram refused it: the caller sends the text."""
        try:
            png = await asyncio.to_thread(render_png, draft, None, ctx.lang)
        except Exception as err:  # a drawing bug must never cost the user the summary
            log.error("chat %s: timeline picture failed: %s", ctx.chat.key, type(err).__name__, exc_info=err)
            return False
        fits = len(plain(text).encode("utf-16-le")) // 2 <= CAPTION_LIMIT  # Telegram counts UTF-16 units
        caption = text if fits else self._short_caption(ctx, draft)
        try:
            await ctx.out.send_photo(png, caption, buttons=QUICK_ACTIONS if fits else ())
        except TelegramError as err:
            log.info("chat %s: timeline picture refused, sending text: %s", ctx.chat.key, err)
            return False
        if not fits:
            await ctx.out.send(text, buttons=QUICK_ACTIONS)
        return True

    @staticmethod
    def _short_caption(ctx: ChatContext, draft: object) -> str:
        layouts = layout(draft)
        return say(
            ctx.lang, "timeline_picture", tracks=len(layouts), duration=clock(duration_ms(draft, layouts))
        )

    async def credits(self, ctx: ChatContext) -> None:
        if not (connection := await self.ensure_connected(ctx)):
            return
        try:
            balance = await self.projects.call(
                ctx.chat, ctx.session_lang, lambda c: self.client.credits(c.token), connection=connection
            )
        except Exception as err:
            await self.explain(ctx, err)
            return
        lines = [
            say(
                ctx.lang,
                "credits",
                available=_number(balance.available),
                frozen=_number(balance.frozen),
                total=_number(balance.total),
            )
        ]
        if self.projects.anonymous:
            link = register_link(self.settings.nemo_register_url, connection.user_id)
            lines.append(say(ctx.lang, "register_hint", link=link))
        await ctx.out.send("\n".join(lines))

    async def new_project(self, ctx: ChatContext) -> None:
        try:
            await self.projects.new_project(ctx.chat, ctx.session_lang)
        except Exception as err:
            await self.explain(ctx, err)
            return
        await ctx.out.say("new_project")


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"
