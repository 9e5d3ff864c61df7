"""The services the handlers use, built once at start-up, and what a text request asks of them.

Why one module of this length: every user action passes here, each a few lines behind the same gates
(access, limits, the group-admin rule), so the gates are read once for all of them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from redis.exceptions import RedisError
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError

from bot.chat.access import Guard
from bot.chat.flows import Flows
from bot.chat.kit import ChatContext
from bot.chat.logins import Logins
from bot.chat.renders import Renders
from bot.chat.studio import Studio
from bot.chat.switcher import Switcher
from bot.chat.turns import Turns
from bot.chat.uploads import IncomingFile, Uploads
from bot.core import metrics
from bot.core.accounts import tokens_in
from bot.core.actions import INSTRUCTED, PROJECT, QUICK_ACTIONS, Action
from bot.core.aio import cancel_and_wait
from bot.core.intents import Intent, links_in, route
from bot.core.texts import Lang, say, words
from bot.settings import Settings
from bot.state.inbox import Inbox
from bot.state.replicas import Replicas
from bot.state.store import Store
from bot.telegram.output import ChatOutput, Telegram
from bot.work.jobs import JobKind, Jobs

log = logging.getLogger(__name__)
LOGIN_PAYLOAD = "login"  # t.me/<bot>?start=login opens the private chat on the login help


class Services:
    """The one surface the handlers use: each thing a user can ask for, behind the access rules,
    the limits and the group-admin rule. Built once at start-up; `start`, `stop` and `close` are
    the application's lifecycle."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        http: list[httpx.AsyncClient],
        flows: Flows,
        turns: Turns,
        renders: Renders,
        uploads: Uploads,
        logins: Logins,
        guard: Guard,
        telegram: Telegram,
        replicas: Replicas,
        inbox: Inbox,
        jobs: Jobs,
        orphaned: Callable[[set[str]], Awaitable[set[str]]],
        switcher: Switcher,
        studio: Studio,
    ):
        self.settings = settings
        self.store = store
        self._http = http  # closed at shutdown
        self._flows = flows
        self._turns = turns
        self._renders = renders
        self._uploads = uploads
        self._uploads.on_caption = self.act_on_text  # an album's caption is acted on like a message
        self._logins = logins
        self._switcher = switcher  # several projects per chat
        self._studio = studio  # the Mini App's view of a project
        self._guard = guard
        self._telegram = telegram
        self._replicas = replicas
        self._orphaned = orphaned  # which owners of work have stopped
        self.inbox = inbox  # webhook mode: updates recorded for the replicas
        self._jobs = jobs  # durable work: render polls and deliveries
        self._background: list[asyncio.Task[None]] = []
        self._admin_cache: dict[tuple[int, int], tuple[bool, float]] = {}

    # -- who may speak, and whether an update is new ---------------------------------------------

    def output(
        self, chat_id: int, lang: Lang, *, thread_id: int | None = None, reply_to: int | None = None
    ) -> ChatOutput:
        """Where a handler's replies go: the chat (or its topic), in the user's language."""
        return self._telegram.to(chat_id, lang, thread_id=thread_id, reply_to=reply_to)

    def allows(self, user_id: int | None, chat_id: int) -> bool:
        return self._guard.policy.allows(user_id, chat_id)

    async def first_refusal(self, user_id: int | None, chat_id: int) -> bool:
        """True the first time today an outsider is turned away (they hear it once)."""
        return await self._guard.first_refusal(user_id, chat_id)

    async def first_sight(self, update_id: int) -> bool:
        """True the first time any process sees this update."""
        return await self.store.first_sight(update_id)

    # -- what users ask for ----------------------------------------------------------------------

    async def greet(self, ctx: ChatContext, payload: str | None = None) -> None:
        """/start, or a deep link's `/start <payload>` (`ex2`: the profile's second example;
        `login`: how to link one's own account)."""
        await self._flows.alerts.note_admin(ctx.user_id, ctx.lang)
        if payload == LOGIN_PAYLOAD:
            await self._logins.help(ctx)
        else:
            await self._flows.greet(ctx, payload)

    async def login(self, ctx: ChatContext, token: str | None = None, message_id: int | None = None) -> None:
        """/login: its help, or (a token sent in private) the person's own account linked."""
        if token is None:
            await self._logins.help(ctx)
        else:
            await self._logins.login(ctx, token, message_id)

    async def logout(self, ctx: ChatContext) -> None:
        await self._logins.logout(ctx)

    async def token_leaked(self, ctx: ChatContext, message_id: int | None, sender: str) -> None:
        """A token posted in a group or channel: deleted where possible, never used."""
        await self._logins.leaked(ctx, message_id, sender)

    async def open_in_browser(self, ctx: ChatContext) -> None:
        await self._flows.open_in_browser(ctx)

    async def help(self, ctx: ChatContext) -> None:
        await self._flows.help(ctx)

    async def status(self, ctx: ChatContext) -> None:
        await self._flows.status(ctx)

    async def credits(self, ctx: ChatContext) -> None:
        await self._flows.alerts.note_admin(ctx.user_id, ctx.lang)
        await self._flows.credits(ctx)

    async def cancel(self, ctx: ChatContext) -> None:
        """Stop the chat's running turn, and say whether there was one."""
        stopped = await self._turns.cancel(ctx)
        await ctx.out.say("cancelled" if stopped else "nothing_to_cancel")

    async def press(self, ctx: ChatContext, action: str) -> None:
        """A button under a reply: the action it names (anything else is ignored). A quick action
        is a chat turn with its instruction in the user's language; an example (`ex2`) is acted on
        as if the user had typed it. The chat shows what was asked, as the user would have said it."""
        if action in (Action.EXPORT, Action.RETRY):
            await self.export(ctx)
        elif action == Action.TIMELINE:
            await self.status(ctx)
        elif action in INSTRUCTED:
            await self.instruct(ctx, words(ctx.lang, f"do_{action}"))
        elif (example := self._flows.example(action)) is not None:
            await ctx.out.say("you_asked", request=example)
            await self.act_on_text(ctx, example)
        elif action == Action.STOP:  # under a running turn's reply
            await self.cancel(ctx)
        elif action == Action.NEW_PROJECT:  # under /projects
            await self.new_project(ctx)
        elif action.startswith(PROJECT):
            await self.switch_project(ctx, action.removeprefix(PROJECT))

    async def act_on_text(self, ctx: ChatContext, text: str) -> None:
        """Do what a text (a message or a media caption) asks: a fixed action or a chat turn."""
        if tokens_in(text):  # the token guard (handlers.tokens) stops these first; never forwarded
            log.warning("chat %s: a text holding a token was not acted on", ctx.chat.key)
            return
        intent = route(text)
        if intent is Intent.EXPORT:
            await self.export(ctx)
        elif intent is Intent.RESEND:
            await self._renders.resend(ctx)
        elif intent is Intent.CREDITS:
            await self.credits(ctx)
        elif intent is Intent.STATUS:
            await self._flows.status(ctx)
        elif intent is Intent.UPLOAD:
            await self._flows.upload_help(ctx)
        elif intent is Intent.LINKS:
            links = links_in(text)
            if await self._within_limit(ctx, "uploads", len(links)):
                await self._uploads.upload_links(ctx, links)
        elif await self._within_limit(ctx, "turns"):
            await self._chat_turn(ctx, text)

    async def instruct(self, ctx: ChatContext, instruction: str) -> None:
        """A clear instruction to the agent on the user's behalf (a quick action, a studio touch): the
        chat shows what was asked, as the user would have said it, then the turn runs."""
        if await self._within_limit(ctx, "turns"):
            await ctx.out.say("you_asked", request=instruction)
            await self._chat_turn(ctx, instruction)

    async def _chat_turn(self, ctx: ChatContext, text: str) -> None:
        """A chat turn with the agent (the caller checked the limit); counted once it starts."""
        if await self._turns.start(ctx, text) is not None:
            await self._guard.count("turns", ctx.chat.key)
            await self.store.note_changed(ctx.chat.key)

    async def receive_media(
        self, ctx: ChatContext, file: IncomingFile, album: str | None, caption: str | None
    ) -> None:
        if await self._within_limit(ctx, "uploads"):
            await self._guard.count("uploads", ctx.chat.key)
            await self.store.note_changed(ctx.chat.key)
            await self._uploads.receive(ctx, file, album=album, caption=caption)

    async def export(self, ctx: ChatContext) -> None:
        if await self._may_manage(ctx):
            await self._guard.count("renders", ctx.chat.key)
            await self.store.note_changed(ctx.chat.key)
            await self._renders.export(ctx)

    async def new_project(self, ctx: ChatContext) -> None:
        """/new: a fresh project; the others stay in /projects."""
        if await self._may_manage(ctx):
            await self._switcher.start_new(ctx)

    async def projects(self, ctx: ChatContext) -> None:
        """/projects: the chat's projects, each a button that makes it current."""
        await self._switcher.show(ctx)

    async def switch_project(self, ctx: ChatContext, project_id: str) -> bool:
        return await self._may_manage(ctx) and await self._switcher.switch(ctx, project_id)

    async def rename(self, ctx: ChatContext, name: str) -> None:
        """/rename <name>: the current project's name."""
        if await self._may_manage(ctx):
            await self._switcher.rename(ctx, name)

    # -- the studio (a Mini App in the private chat) ---------------------------------------------

    async def studio_view(self, ctx: ChatContext) -> dict[str, Any]:
        return await self._studio.view(ctx)

    async def studio_act(self, ctx: ChatContext, action: str) -> bool:
        """A quick action or Export tapped in the studio, as if tapped under a reply; False for any
        other action."""
        if action not in QUICK_ACTIONS:
            return False
        await self.press(ctx, action)
        return True

    async def studio_segment(
        self, ctx: ChatContext, track: int, segment: int, op: str, digest: str | None = None
    ) -> bool:
        """A change to one segment, sent to the agent as a clear instruction; False when that
        segment or change is not there to make (or the timeline changed since it was drawn)."""
        instruction = await self._studio.instruction(ctx, track, segment, op, digest)
        if instruction is None:
            return False
        await self.instruct(ctx, instruction)
        return True

    async def usage(self, ctx: ChatContext) -> None:
        """Today's activity, for the operator's admins only (anyone else hears nothing)."""
        if not self._guard.policy.is_admin(ctx.user_id):
            return
        await self._flows.alerts.note_admin(ctx.user_id, ctx.lang)
        counts, active = await self._guard.report()
        await ctx.out.send(say(ctx.lang, "usage", active=active, **counts))

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def replica_id(self) -> str:
        return self._replicas.me

    def start(self) -> None:
        """Start the job worker (render polls and deliveries), keep this replica's heartbeat, and
        take over the work of replicas that stopped: once at start with long polling (one process
        per token, so every other owner is gone), every lease period in webhook mode."""
        self._background.append(self._jobs.start())
        self._background.append(asyncio.create_task(self._adopt(), name="adopt"))
        self._background.append(asyncio.create_task(self._replicas.keep_alive(), name="heartbeat"))
        self._background.append(asyncio.create_task(self._sweeps(), name="sweeps"))

    async def _adopt(self) -> None:
        """Make sure the adoption passes run (once, whichever replica takes them): at once, for
        what a stopped process left without a job, then every lease period."""
        try:
            for kind in (JobKind.ADOPT_RENDERS, JobKind.ADOPT_ALBUMS, JobKind.ADOPT_TURNS):
                await self._jobs.schedule(kind, "all")
            if self._flows.alerts.enabled:  # the shared account's balance, read now and then
                await self._jobs.schedule(JobKind.OPERATOR_CREDITS, "all")
        except RedisError as err:  # the next replica to start schedules them
            log.warning("adoption passes not scheduled, Redis unavailable: %s", type(err).__name__)

    async def _sweeps(self) -> None:
        if not self.settings.telegram_webhook_url:
            await self._sweep(self._orphaned)
            return
        self._background.append(
            asyncio.create_task(self._turns.follow_cancels(self._replicas.lease / 3), name="cancels")
        )
        while True:
            await self._sweep(self._orphaned)
            await asyncio.sleep(self._replicas.lease)

    async def _sweep(self, orphaned: Callable[[set[str]], Awaitable[set[str]]]) -> None:
        """Single files a stopped replica received but did not forward (cut turns, albums and
        renders are jobs: see `_adopt`)."""
        try:
            await self._uploads.sweep(orphaned)
        except RedisError as err:
            log.warning("pending uploads not recovered, Redis unavailable: %s", type(err).__name__)

    async def read_gauges(self) -> None:
        """Queue depths for /metrics, read from Redis (shared by every replica)."""
        try:
            metrics.QUEUE_DEPTH.labels("updates_pending").set(await self.inbox.pending())
            depths = {**await self.store.depths(), **await self._jobs.depths()}
            for queue, depth in depths.items():
                metrics.QUEUE_DEPTH.labels(queue).set(depth)
            metrics.REPLICAS.set(await self._replicas.count())
        except RedisError as err:
            log.info("queue depths not read, Redis unavailable: %s", type(err).__name__)

    async def stop(self, grace: float) -> None:
        """Finish or hand over the work in hand (the bot can still send), then leave: the
        heartbeat goes at once, so other replicas take over what is left without waiting. (Albums
        being gathered and renders are jobs in Redis: another replica, or the next process, runs
        them; a step cut by the grace goes back to the queue.)"""
        await self._jobs.stop(grace)
        await self._turns.hand_over(grace)
        await cancel_and_wait(self._background)
        try:
            await self._replicas.leave()
        except RedisError as err:
            log.info("heartbeat not removed, Redis unavailable: %s", type(err).__name__)

    async def close(self) -> None:
        for http in self._http:
            await http.aclose()
        await self._jobs.close()
        await self.store.close()

    # -- the gates -------------------------------------------------------------------------------

    async def _may_manage(self, ctx: ChatContext) -> bool:
        """New projects and exports: anyone, unless GROUP_ADMIN_ONLY keeps them to a group's admins."""
        if not ctx.shared or not self.settings.group_admin_only or self._guard.policy.is_admin(ctx.user_id):
            return True
        if ctx.user_id is not None and await self._group_admin(ctx.chat.chat_id, ctx.user_id):
            return True
        await ctx.out.say("admins_only")
        return False

    async def _group_admin(self, chat_id: int, user_id: int) -> bool:
        key = (chat_id, user_id)
        cached = self._admin_cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            member = await self._telegram.bot.get_chat_member(chat_id, user_id)
            is_admin = member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
        except TelegramError as err:
            log.info("chat %s: admin check failed: %s", chat_id, type(err).__name__)
            return False
        self._admin_cache[key] = (is_admin, time.monotonic() + self.settings.group_admin_cache_seconds)
        return is_admin

    async def _within_limit(self, ctx: ChatContext, kind: str, amount: int = 1) -> bool:
        wait = await self._guard.wait_needed(kind, ctx.user_id, ctx.chat.key, amount)
        if wait:
            await ctx.out.say(f"limit_{kind}", minutes=max(1, math.ceil(wait / 60)))
            return False
        return True
