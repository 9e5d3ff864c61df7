"""The services the handlers use, built once at start-up, and what a text request asks of them."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import BlockingConnectionPool, Redis
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError
from telegram.ext import ExtBot

from bot.access import Guard
from bot.flows import ChatContext, Flows
from bot.intents import Intent, links_in, route
from bot.nemo import Attribution, NemoClient, RetryPolicy
from bot.projects import Projects
from bot.renders import Renders, RenderTimings
from bot.settings import Settings
from bot.store import Store
from bot.turns import Turns, TurnTimings
from bot.uploads import IncomingFile, UploadLimits, Uploads

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the handlers use, built once at start-up and closed at shutdown."""

    settings: Settings
    store: Store
    http: list[httpx.AsyncClient]  # closed at shutdown
    flows: Flows
    turns: Turns
    renders: Renders
    uploads: Uploads
    guard: Guard
    bot: ExtBot[Any]
    background: list[asyncio.Task[None]] = field(default_factory=list)
    _admin_cache: dict[tuple[int, int], tuple[bool, float]] = field(default_factory=dict)

    async def act_on_text(self, ctx: ChatContext, text: str) -> None:
        """Do what a text (a message or a media caption) asks: a fixed action or a chat turn."""
        intent = route(text)
        if intent is Intent.EXPORT:
            await self.export(ctx)
        elif intent is Intent.CREDITS:
            await self.flows.credits(ctx)
        elif intent is Intent.STATUS:
            await self.flows.status(ctx)
        elif intent is Intent.UPLOAD:
            await self.flows.upload_help(ctx)
        elif intent is Intent.LINKS:
            links = links_in(text)
            if await self._within_limit(ctx, "uploads", len(links)):
                await self.uploads.upload_links(ctx, links)
        elif await self._within_limit(ctx, "turns") and await self.turns.start(ctx, text) is not None:
            await self.guard.count("turns", ctx.chat.key)

    async def receive_media(
        self, ctx: ChatContext, file: IncomingFile, album: str | None, caption: str | None
    ) -> None:
        if await self._within_limit(ctx, "uploads"):
            await self.guard.count("uploads", ctx.chat.key)
            await self.uploads.receive(ctx, file, album=album, caption=caption)

    async def export(self, ctx: ChatContext) -> None:
        if await self.may_manage(ctx):
            await self.guard.count("renders", ctx.chat.key)
            await self.renders.export(ctx)

    async def new_project(self, ctx: ChatContext) -> None:
        if await self.may_manage(ctx):
            await self.flows.new_project(ctx)

    async def may_manage(self, ctx: ChatContext) -> bool:
        """New projects and exports: anyone, unless GROUP_ADMIN_ONLY keeps them to a group's admins."""
        if not ctx.shared or not self.settings.group_admin_only or self.guard.policy.is_admin(ctx.user_id):
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
            member = await self.bot.get_chat_member(chat_id, user_id)
            is_admin = member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
        except TelegramError as err:
            log.info("chat %s: admin check failed: %s", chat_id, type(err).__name__)
            return False
        self._admin_cache[key] = (is_admin, time.monotonic() + self.settings.group_admin_cache_seconds)
        return is_admin

    async def _within_limit(self, ctx: ChatContext, kind: str, amount: int = 1) -> bool:
        wait = await self.guard.wait_needed(kind, ctx.user_id, ctx.chat.key, amount)
        if wait:
            await ctx.out.say(f"limit_{kind}", minutes=max(1, math.ceil(wait / 60)))
            return False
        return True


def connect_redis(settings: Settings) -> Redis:
    if settings.redis_url:
        # A blocking pool: past its size a command waits for a free connection (redis-py's default
        # pool refuses at once with MaxConnectionsError). Short socket timeouts: with Redis down, a
        # user hears "briefly unavailable" at once, not after minutes.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_pool_timeout_seconds,
            decode_responses=True,
            health_check_interval=30,
            socket_connect_timeout=settings.redis_timeout_seconds,
            socket_timeout=settings.redis_timeout_seconds,
        )
        return Redis.from_pool(pool)
    import fakeredis

    log.warning(
        "REDIS_URL is not set: using an embedded in-process store. State (sessions, renders in flight) "
        "will NOT survive a restart; set REDIS_URL for production."
    )
    embedded: Redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    return embedded


def backend_client(settings: Settings, connections: int) -> httpx.AsyncClient:
    """An HTTP client for the NemoVideo API whose pool waits (bounded) rather than refuses."""
    return httpx.AsyncClient(
        base_url=settings.nemo_api_base,
        timeout=httpx.Timeout(settings.http_timeout_seconds, pool=settings.nemo_pool_timeout_seconds),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=min(connections, 100)),
        follow_redirects=True,
        headers={"User-Agent": "nemo-video-bot"},
    )


def build_services(settings: Settings, bot: ExtBot[Any]) -> Services:
    store = Store(connect_redis(settings), f"nvb:{settings.bot_id}", settings.retention)
    http = backend_client(settings, settings.nemo_max_connections)
    # Chat turns hold a connection for minutes each: they get a pool of their own, sized to the
    # number of turns that may stream at once, so they never starve the short calls.
    streams = backend_client(settings, settings.max_live_turns)
    attribution = Attribution(settings.nemo_skill, settings.nemo_skill_version, settings.nemo_skill_platform)
    retry = RetryPolicy(settings.http_retries, settings.http_retry_base_seconds)
    client = NemoClient(
        http, attribution, idle_timeout=settings.sse_idle_seconds, retry=retry, streams=streams
    )
    operator_token = settings.nemo_token.get_secret_value() if settings.nemo_token else None
    projects = Projects(
        client,
        store,
        operator_token=operator_token,
        rate_limit_wait=settings.rate_limit_wait_seconds,
        setups_at_once=settings.setups_at_once,
    )
    flows = Flows(settings, projects)
    turns = Turns(
        flows,
        TurnTimings(
            still_working=settings.still_working_seconds,
            max_seconds=settings.sse_max_seconds,
            typing_interval=settings.typing_interval_seconds,
            dropped_poll_seconds=settings.dropped_turn_poll_seconds,
            dropped_polls=settings.dropped_turn_polls,
            busy_grace=settings.turn_busy_grace_seconds,
            merge_seconds=settings.group_merge_seconds,
            max_live=settings.max_live_turns,
        ),
        bot,
    )
    renders = Renders(
        flows,
        bot,
        RenderTimings(
            poll_seconds=settings.render_poll_seconds,
            max_seconds=settings.render_max_seconds,
            lease_seconds=settings.render_lease_seconds,
            delivery_attempts=settings.render_delivery_attempts,
            download_seconds=settings.render_download_seconds,
        ),
        upload_limit_mb=settings.telegram_upload_limit_mb,
        poll_concurrency=settings.render_poll_concurrency,
        delivery_concurrency=settings.render_delivery_concurrency,
    )
    uploads = Uploads(
        flows,
        bot,
        UploadLimits(settings.upload_limit_mb, settings.telegram_download_limit_mb),
        album_wait=settings.album_wait_seconds,
    )
    services = Services(
        settings, store, [http, streams], flows, turns, renders, uploads, Guard(settings, store), bot
    )
    uploads.on_caption = services.act_on_text
    return services
