"""The short flows (connect, status, credits, new project) and the one map from errors to words."""

from __future__ import annotations

import contextlib
import html
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from redis.exceptions import RedisError

from bot.access import today
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
from bot.telegram_io import ChatOutput, Telegram
from bot.texts import Lang, language_of, say
from bot.timeline import format_timeline, tracks

log = logging.getLogger(__name__)


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

    async def greet(self, ctx: ChatContext) -> None:
        """The profile's greeting and "try saying" examples, then the connection."""
        profile = self.settings.profile
        examples = "\n".join(f"• “{html.escape(example)}”" for example in profile.examples)
        greeting = html.escape(profile.greeting[ctx.lang])
        await ctx.out.send(f"{greeting}\n\n{say(ctx.lang, 'try_saying')}\n{examples}\n\n/help")
        await self.ensure_connected(ctx)

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
        await ctx.out.send("\n".join(lines), buttons=("export",) if summary else ())

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
