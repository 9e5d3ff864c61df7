"""The services the handlers use, built once at start-up, and what a text request asks of them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import httpx
from redis.asyncio import Redis
from telegram import Bot

from bot.flows import ChatContext, Flows
from bot.intents import Intent, links_in, route
from bot.nemo import Attribution, NemoClient, RetryPolicy
from bot.projects import Projects
from bot.renders import Renders, RenderTimings
from bot.settings import Settings
from bot.store import Store
from bot.turns import Turns, TurnTimings
from bot.uploads import UploadLimits, Uploads

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the handlers use, built once at start-up and closed at shutdown."""

    settings: Settings
    store: Store
    http: httpx.AsyncClient
    flows: Flows
    turns: Turns
    renders: Renders
    uploads: Uploads
    background: list[asyncio.Task[None]] = field(default_factory=list)

    async def act_on_text(self, ctx: ChatContext, text: str) -> None:
        """Do what a text (a message or a media caption) asks: a fixed action or a chat turn."""
        intent = route(text)
        if intent is Intent.EXPORT:
            await self.renders.export(ctx)
        elif intent is Intent.CREDITS:
            await self.flows.credits(ctx)
        elif intent is Intent.STATUS:
            await self.flows.status(ctx)
        elif intent is Intent.UPLOAD:
            await self.flows.upload_help(ctx)
        elif intent is Intent.LINKS:
            await self.uploads.upload_links(ctx, links_in(text))
        else:
            await self.turns.start(ctx, text)


def connect_redis(settings: Settings) -> Redis:
    if settings.redis_url:
        # Short timeouts: with Redis down, a user hears "briefly unavailable" at once, not after minutes.
        return Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            health_check_interval=30,
            socket_connect_timeout=settings.redis_timeout_seconds,
            socket_timeout=settings.redis_timeout_seconds,
        )
    import fakeredis

    log.warning(
        "REDIS_URL is not set: using an embedded in-process store. State (sessions, renders in flight) "
        "will NOT survive a restart; set REDIS_URL for production."
    )
    embedded: Redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    return embedded


def build_services(settings: Settings, bot: Bot) -> Services:
    store = Store(connect_redis(settings), f"nvb:{settings.bot_id}", settings.chat_ttl_days * 24 * 3600)
    http = httpx.AsyncClient(
        base_url=settings.nemo_api_base,
        timeout=httpx.Timeout(settings.http_timeout_seconds),
        follow_redirects=True,
        headers={"User-Agent": "nemo-video-bot"},
    )
    attribution = Attribution(settings.nemo_skill, settings.nemo_skill_version, settings.nemo_skill_platform)
    retry = RetryPolicy(settings.http_retries, settings.http_retry_base_seconds)
    client = NemoClient(http, attribution, idle_timeout=settings.sse_idle_seconds, retry=retry)
    operator_token = settings.nemo_token.get_secret_value() if settings.nemo_token else None
    projects = Projects(
        client, store, operator_token=operator_token, rate_limit_wait=settings.rate_limit_wait_seconds
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
        ),
        bot,
    )
    renders = Renders(
        flows,
        bot,
        RenderTimings(
            settings.render_poll_seconds, settings.render_max_seconds, settings.render_lease_seconds
        ),
        upload_limit_mb=settings.telegram_upload_limit_mb,
    )
    uploads = Uploads(
        flows,
        bot,
        UploadLimits(settings.upload_limit_mb, settings.telegram_download_limit_mb),
        album_wait=settings.album_wait_seconds,
    )
    services = Services(settings, store, http, flows, turns, renders, uploads)
    uploads.on_caption = services.act_on_text
    return services
