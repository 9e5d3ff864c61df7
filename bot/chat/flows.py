"""The short flows (connect, status, credits, new project) and the one map from errors to words."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections import Counter

from telegram.error import TelegramError

from bot.chat.kit import ChatContext, Kit, browser_link, register_link, studio_link
from bot.core.accounts import AccountKind
from bot.core.actions import QUICK_ACTIONS
from bot.core.media import ACCEPTED_LIST
from bot.core.profiles import Profile
from bot.core.texts import amount, say
from bot.core.timeline import duration_ms, format_timeline, layout, tracks
from bot.nemo.client import NemoClient
from bot.telegram.output import CAPTION_LIMIT, Link, plain
from bot.telegram.pictures import clock, render_png

log = logging.getLogger(__name__)
EXAMPLE = re.compile(r"ex([1-9][0-9]{0,2})")
ACCOUNT_LINES = {
    AccountKind.TRIAL: "account_trial",
    AccountKind.PERSONAL: "account_personal",
    AccountKind.OPERATOR: "account_shared",
}


def example_action(index: int) -> str:
    """The button (and deep-link payload) of the profile's example `index` (0-based): `ex1`, `ex2` …"""
    return f"ex{index + 1}"


def example_index(payload: str | None, count: int) -> int | None:
    """The 0-based example a payload or button names (`ex1` is the first), or None when it names none
    (a deep-link payload is `[A-Za-z0-9_-]{1,64}`; anything else, or `ex0`, `ex07`, is no example)."""
    match = EXAMPLE.fullmatch(payload or "")
    index = int(match.group(1)) - 1 if match else -1
    return index if 0 <= index < count else None


class Flows:
    """The short flows: greeting and help, the timeline, credits, the browser link, a new project."""

    def __init__(
        self,
        kit: Kit,
        client: NemoClient,
        *,
        profile: Profile,
        upload_limit_mb: int,
        studio_url: str | None = None,
    ):
        self.kit = kit
        self.projects = kit.projects
        self.client = client
        self.store = kit.store
        self.alerts = kit.alerts
        self.studio_url = studio_url  # MINI_APP_URL: a studio button under the timeline
        self.profile = profile  # greeting and examples
        self.upload_limit_mb = upload_limit_mb  # the largest file the backend takes

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
        await self.kit.ensure_connected(ctx)

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
        if not (connection := await self.kit.ensure_connected(ctx)):
            return
        try:
            state = await self.projects.state(ctx.chat, ctx.session_lang, connection=connection)
        except Exception as err:
            await self.kit.explain(ctx, err)
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
            await ctx.out.send(text, buttons=QUICK_ACTIONS, links=self._studio(ctx))

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
            await ctx.out.send_photo(
                png, caption, buttons=QUICK_ACTIONS if fits else (), links=self._studio(ctx) if fits else ()
            )
        except TelegramError as err:
            log.info("chat %s: timeline picture refused, sending text: %s", ctx.chat.key, err)
            return False
        if not fits:
            await ctx.out.send(text, buttons=QUICK_ACTIONS, links=self._studio(ctx))
        return True

    @staticmethod
    def _short_caption(ctx: ChatContext, draft: object) -> str:
        layouts = layout(draft)
        return say(
            ctx.lang, "timeline_picture", tracks=len(layouts), duration=clock(duration_ms(draft, layouts))
        )

    def _studio(self, ctx: ChatContext) -> list[Link]:
        return [link] if (link := studio_link(self.studio_url, ctx.out)) is not None else []

    async def credits(self, ctx: ChatContext) -> None:
        """The balance of the account the chat runs on, and which account that is."""
        if not (connection := await self.kit.ensure_connected(ctx)):
            return
        try:
            balance = await self.projects.call(
                ctx.chat, ctx.session_lang, lambda c: self.client.credits(c.token), connection=connection
            )
        except Exception as err:
            await self.kit.explain(ctx, err)
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
            link = register_link(self.kit.register_url, connection.user_id)
            lines.append(say(ctx.lang, "register_hint", link=link))
        elif connection.account is AccountKind.OPERATOR:
            await self.alerts.seen(balance)
        if connection.account is not AccountKind.PERSONAL and self.kit.can_login(ctx.chat) and not ctx.shared:
            lines.append(say(ctx.lang, "login_hint"))
        await ctx.out.send("\n".join(lines))

    async def open_in_browser(self, ctx: ChatContext) -> None:
        """/open: the project on the website, by a claim link under a button."""
        if not (connection := await self.kit.ensure_connected(ctx)):
            return
        try:
            claim = await self.projects.claim(ctx.chat, ctx.session_lang, session_id=connection.session_id)
        except Exception as err:
            await self.kit.explain(ctx, err)
            return
        link = browser_link(self.kit.site, claim)
        await ctx.out.say("open_project", links=[Link(say(ctx.lang, "button_open"), link)])
