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
from typing import Any
from urllib.parse import quote

from redis.exceptions import RedisError
from telegram.error import TelegramError

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
from bot.core.agent_text import QUICK_ACTIONS
from bot.core.media import ACCEPTED_LIST
from bot.core.profiles import Profile
from bot.core.texts import Lang, amount, language_of, say
from bot.core.timeline import duration_ms, format_timeline, layout, tracks
from bot.nemo.client import NemoClient
from bot.nemo.errors import (
    BackendUnavailable,
    ExportNotAllowed,
    NemoError,
    OutOfCredits,
    RateLimited,
    StreamDropped,
    StreamIdle,
)
from bot.settings import Settings
from bot.state.chats import ChatAddress
from bot.state.store import Store
from bot.telegram.flood import Thinned
from bot.telegram.output import CAPTION_LIMIT, ChatOutput, Telegram, plain
from bot.telegram.pictures import clock, render_png

log = logging.getLogger(__name__)
EXAMPLE = re.compile(r"ex([1-9][0-9]{0,2})")
ACCOUNT_LINES = {
    AccountKind.TRIAL: "account_trial",
    AccountKind.PERSONAL: "account_personal",
    AccountKind.OPERATOR: "account_shared",
}


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


class Flows:
    """The short flows, and what every longer one shares: connecting a chat and explaining failures."""

    def __init__(
        self,
        settings: Settings,
        projects: Projects,
        client: NemoClient,
        store: Store,
        alerts: OperatorAlerts,
        *,
        personal_accounts: bool,
        profile: Profile,
        upload_limit_mb: int,
    ):
        self.settings = settings
        self.projects = projects
        self.client = client
        self.store = store  # failures are counted in the day's usage
        self.alerts = alerts
        self.personal_accounts = personal_accounts  # TOKEN_ENCRYPTION_KEY is set: /login works
        self.profile = profile  # greeting and examples
        self.upload_limit_mb = upload_limit_mb  # the largest file the backend takes

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
            register_url=self.settings.nemo_register_url,
            site=self.settings.nemo_web_url,
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

    async def greet(self, ctx: ChatContext, payload: str | None = None) -> None:
        """The profile's greeting and "try saying" examples, each a button that says it, then the
        connection. A deep link's payload `ex<N>` (`/start ex2`) offers only that example."""
        profile = self.profile
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
        examples = self.profile.examples
        index = example_index(action, len(examples))
        return examples[index] if index is not None else None

    async def help(self, ctx: ChatContext) -> None:
        await ctx.out.say("help", formats=ACCEPTED_LIST, limit=self.upload_limit_mb)

    async def upload_help(self, ctx: ChatContext) -> None:
        await ctx.out.say("upload_help", formats=ACCEPTED_LIST, limit=self.upload_limit_mb)

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
        """The balance of the account the chat runs on, and which account that is."""
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
                available=amount(balance.available),
                frozen=amount(balance.frozen),
                total=amount(balance.total),
            ),
            say(ctx.lang, ACCOUNT_LINES[connection.account]),
        ]
        if connection.account is AccountKind.TRIAL:
            link = register_link(self.settings.nemo_register_url, connection.user_id)
            lines.append(say(ctx.lang, "register_hint", link=link))
        elif connection.account is AccountKind.OPERATOR:
            await self.alerts.seen(balance)
        if connection.account is not AccountKind.PERSONAL and self.can_login(ctx.chat) and not ctx.shared:
            lines.append(say(ctx.lang, "login_hint"))
        await ctx.out.send("\n".join(lines))

    async def open_in_browser(self, ctx: ChatContext) -> None:
        """/open: the project on the website, by a claim link under a button."""
        if not (connection := await self.ensure_connected(ctx)):
            return
        try:
            claim = await self.projects.claim(ctx.chat, ctx.session_lang, session_id=connection.session_id)
        except Exception as err:
            await self.explain(ctx, err)
            return
        link = browser_link(self.settings.nemo_web_url, claim)
        await ctx.out.say("open_project", url_button=(say(ctx.lang, "button_open"), link))

    async def new_project(self, ctx: ChatContext) -> None:
        try:
            await self.projects.new_project(ctx.chat, ctx.session_lang)
        except Exception as err:
            await self.explain(ctx, err)
            return
        await ctx.out.say("new_project")


def username_of(bot: Any) -> str | None:
    """The bot's @username (None before it has introduced itself to Telegram)."""
    try:
        return str(bot.username)
    except RuntimeError:
        return None


def login_link(username: str | None) -> str:
    """The private chat with the bot, opened on its login help (a deep link)."""
    return f"https://t.me/{username}?start=login" if username else "https://t.me/"
