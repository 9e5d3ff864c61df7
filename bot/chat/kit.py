"""The kit every feature of the chat layer uses: the request's context (`ChatContext`, and
`resume` for durable work), connecting a chat on first use, and explaining a failure in words that
fit the chat's account (`error_text`, pure)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from redis.exceptions import RedisError

from bot.chat.access import today
from bot.chat.alerts import OperatorAlerts
from bot.chat.projects import (
    ChatRef,
    Connection,
    OperatorTokenRejected,
    PersonalTokenRefused,
    Projects,
    TrialsUnavailable,
)
from bot.core.accounts import AccountKind, project_owner
from bot.core.texts import Lang, language_of, say
from bot.nemo.errors import (
    BackendUnavailable,
    ExportNotAllowed,
    NemoError,
    OutOfCredits,
    RateLimited,
    StreamDropped,
    StreamIdle,
)
from bot.state.chats import ChatAddress
from bot.state.store import Store
from bot.telegram.flood import Thinned
from bot.telegram.output import ChatOutput, Link, Telegram

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


def browser_link(web_url: str, claim: str) -> str:
    """The project on the website, opened by its claim token (never by an API token)."""
    return f"{web_url}/workspace/claim?ct={quote(claim, safe='')}"


@dataclass(frozen=True)
class Standing:
    """What the words about a failure depend on: the chat's account and the ways forward it has."""

    account: AccountKind
    user_id: str  # a trial's backend user id: the `bind` id of the registration link
    can_login: bool  # personal accounts are on, and the project has an owner who could link theirs
    private: bool
    login_link: str  # the private chat with the bot, opened on its login help
    register_url: str
    site: str  # the website


def error_text(err: BaseException, lang: Lang, standing: Standing) -> str:
    """What to tell the user about a failure (pure; details go to the log, never to the chat)."""
    if isinstance(err, RedisError):
        return say(lang, "storage_unavailable")
    if isinstance(err, OperatorTokenRejected):
        return say(lang, "operator_token")
    if isinstance(err, TrialsUnavailable):
        return trials_text(lang, standing)
    if isinstance(err, PersonalTokenRefused):
        key = "personal_token_refused" if standing.private else "personal_token_refused_group"
        return say(lang, key, site=standing.site, link=standing.login_link)
    trial, shared = standing.account is AccountKind.TRIAL, standing.account is AccountKind.OPERATOR
    if isinstance(err, OutOfCredits):
        if trial:
            return say(
                lang, "out_of_credits_anonymous", link=register_link(standing.register_url, standing.user_id)
            )
        return say(lang, "out_of_credits_shared" if shared else "out_of_credits")
    if isinstance(err, ExportNotAllowed):
        if trial:
            return say(
                lang, "export_not_allowed", link=register_link(standing.register_url, standing.user_id)
            )
        return (
            say(lang, "export_not_allowed_shared")
            if shared
            else say(lang, "export_not_allowed_plan", link=standing.site)
        )
    if isinstance(err, RateLimited):
        return say(lang, "rate_limited")
    if isinstance(err, BackendUnavailable | StreamDropped | StreamIdle | NemoError):
        return say(lang, "backend_unavailable")
    return say(lang, "unexpected")


def trials_text(lang: Lang, standing: Standing) -> str:
    """No trial for a new chat: the ways forward this bot offers (pure)."""
    ways = []
    if standing.can_login:
        key = "way_login" if standing.private else "way_login_private"
        ways.append(say(lang, key, site=standing.site, link=standing.login_link))
    ways += [say(lang, "way_operator"), say(lang, "way_later")]
    return "\n".join([say(lang, "trials_used_up"), *ways])


class Kit:
    """What every feature shares: connecting a chat, and explaining a failure in the chat's terms."""

    def __init__(
        self,
        projects: Projects,
        store: Store,
        alerts: OperatorAlerts,
        *,
        personal_accounts: bool,
        register_url: str,
        site: str,
    ):
        self.projects = projects
        self.store = store  # failures are counted in the day's usage
        self.alerts = alerts
        self.personal_accounts = personal_accounts  # TOKEN_ENCRYPTION_KEY is set: /login works
        self.register_url = register_url
        self.site = site  # the website

    def can_login(self, chat: ChatRef) -> bool:
        """Whether a person could bring their own account to this project."""
        return self.personal_accounts and project_owner(chat.key) is not None

    async def standing(self, ctx: ChatContext) -> Standing:
        """The chat's account and ways forward (a trial's, when Redis cannot say)."""
        try:
            account, user_id = await self.projects.account(ctx.chat)
        except RedisError:
            account, user_id = AccountKind.TRIAL, ""
        return Standing(
            account=account,
            user_id=user_id,
            can_login=self.can_login(ctx.chat),
            private=not ctx.shared,
            login_link=login_link(username_of(ctx.out.bot)),
            register_url=self.register_url,
            site=self.site,
        )

    async def explain(
        self,
        ctx: ChatContext,
        err: BaseException,
        *,
        message_id: int | None = None,
        buttons: Sequence[str] = (),
    ) -> None:
        """Log a failure without secrets, tell the user what it means for them, and the operator's
        admins what concerns the shared account."""
        with contextlib.suppress(RedisError):
            await self.store.count_usage("failures", ctx.chat.key, today())
        if isinstance(err, NemoError):
            log.warning("chat %s: %s", ctx.chat.key, err.describe())
        elif isinstance(err, RedisError):
            log.warning("chat %s: Redis unavailable: %s", ctx.chat.key, type(err).__name__)
        else:
            log.error("chat %s: unexpected %s", ctx.chat.key, type(err).__name__, exc_info=err)
        standing = await self.standing(ctx)
        if standing.account is AccountKind.OPERATOR and isinstance(err, OutOfCredits):
            await self.alerts.ran_out()
        elif standing.account is AccountKind.OPERATOR and isinstance(err, ExportNotAllowed):
            await self.alerts.export_blocked()
        await ctx.out.edit_or_send(message_id, error_text(err, ctx.lang, standing), buttons=buttons)

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


def studio_link(studio_url: str | None, out: ChatOutput) -> Link | None:
    """The studio's button: the Mini App itself in a private chat; in a group or channel, where
    Telegram opens Mini Apps only by a direct link, the bot's `t.me/<bot>?startapp` link (the studio
    then shows the person's own private project). None without MINI_APP_URL."""
    if studio_url is None:
        return None
    label = say(out.lang, "button_studio")
    if out.chat_id > 0:  # a topic of the private chat (PROJECT_TOPICS) opens on that topic's project
        url = f"{studio_url}?topic={out.thread_id}" if out.thread_id else studio_url
        return Link(label, url, web_app=True)
    username = username_of(out.bot)
    return Link(label, f"https://t.me/{username}?startapp") if username else None


def username_of(bot: Any) -> str | None:
    """The bot's @username (None before it has introduced itself to Telegram)."""
    try:
        return str(bot.username)
    except RuntimeError:
        return None


def login_link(username: str | None) -> str:
    """The private chat with the bot, opened on its login help (a deep link)."""
    return f"https://t.me/{username}?start=login" if username else "https://t.me/"
