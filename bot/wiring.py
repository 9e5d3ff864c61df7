"""The composition root: every service built from the settings and wired here, and nowhere else.

Each setting reaches the object that uses it in this module; the rest of the bot takes plain values.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import fakeredis
import httpx
from redis.asyncio import BlockingConnectionPool, Redis
from telegram.ext import ExtBot

from bot.chat.access import Guard
from bot.chat.alerts import OperatorAlerts
from bot.chat.flows import Flows
from bot.chat.kit import Kit
from bot.chat.logins import Logins
from bot.chat.projects import Projects
from bot.chat.renders import Renders, RenderTimings
from bot.chat.services import Services
from bot.chat.studio import Studio
from bot.chat.switcher import Switcher
from bot.chat.turns import Turns, TurnTimings
from bot.chat.uploads import UploadLimits, Uploads
from bot.core.accounts import Vault
from bot.core.profiles import PROFILES, Profile
from bot.nemo.client import Attribution, NemoClient, RetryPolicy
from bot.settings import Settings
from bot.state.base import Retention
from bot.state.inbox import Inbox
from bot.state.replicas import Replicas
from bot.state.store import Store
from bot.telegram.flood import FloodLimiter, FloodLimits
from bot.telegram.output import Telegram, Transfers
from bot.work.jobs import JobKind, Jobs, JobTimings

log = logging.getLogger(__name__)


# -- settings read into the objects that use them ------------------------------------------------


def profile(settings: Settings) -> Profile:
    return PROFILES[settings.nemo_skill]


def upload_limit_mb(settings: Settings) -> int:
    """The largest file the backend takes, from the setting or the profile."""
    return settings.max_upload_mb or profile(settings).max_upload_mb


def retention(settings: Settings) -> Retention:
    hour, day = 3600, 24 * 3600
    return Retention(
        chat=settings.chat_ttl_days * day,
        update=settings.update_memory_hours * hour,
        refusal=settings.refusal_memory_hours * hour,
        finished_render=settings.finished_render_days * day,
        usage=settings.usage_days * day,
    )


async def _everyone(owners: set[str]) -> set[str]:
    """With long polling only one process runs: every other owner has stopped."""
    return owners


def stopped_owners(settings: Settings, replicas: Replicas) -> Callable[[set[str]], Awaitable[set[str]]]:
    """Which owners of work have stopped: with long polling only one process runs (one per
    token), so every other owner is gone; replicas tell by their heartbeats."""
    return replicas.dead if settings.telegram_webhook_url else _everyone


def connect_redis(
    settings: Settings,
    *,
    decode: bool = True,
    connections: int | None = None,
    embedded: fakeredis.FakeServer | None = None,
) -> Redis:
    """The Redis client: `decode` for the store (text), not for the job queue (SAQ reads bytes);
    `connections`, the pool's size when not REDIS_MAX_CONNECTIONS. Without REDIS_URL, a client of
    the `embedded` in-process server (a new one unless given, to share it between clients)."""
    if settings.redis_url:
        # A blocking pool: past its size a command waits for a free connection (redis-py's default
        # pool refuses at once with MaxConnectionsError). Short socket timeouts: with Redis down, a
        # user hears "briefly unavailable" at once, not after minutes.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=connections or settings.redis_max_connections,
            timeout=settings.redis_pool_timeout_seconds,
            decode_responses=decode,
            health_check_interval=30,
            socket_connect_timeout=settings.redis_timeout_seconds,
            socket_timeout=settings.redis_timeout_seconds,
        )
        return Redis.from_pool(pool)
    if decode:  # said once, for the store
        log.warning(
            "REDIS_URL is not set: using an embedded in-process store. State (sessions, renders in flight) "
            "will NOT survive a restart; set REDIS_URL for production."
        )
    client: Redis = fakeredis.FakeAsyncRedis(
        server=embedded or fakeredis.FakeServer(), decode_responses=decode
    )
    return client


def backend_client(settings: Settings, connections: int) -> httpx.AsyncClient:
    """An HTTP client for the NemoVideo API whose pool waits (bounded) rather than refuses."""
    return httpx.AsyncClient(
        base_url=settings.nemo_api_base,
        timeout=httpx.Timeout(settings.http_timeout_seconds, pool=settings.nemo_pool_timeout_seconds),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=min(connections, 100)),
        follow_redirects=True,
        headers={"User-Agent": "nemo-video-bot"},
    )


def job_queue(settings: Settings, embedded: fakeredis.FakeServer | None) -> Jobs:
    """The job queue for durable work, on a Redis pool of its own: each worker slot holds a
    connection while it waits for a job, and must not starve the store's commands."""
    timings = JobTimings(
        concurrency=settings.render_poll_concurrency,
        heartbeat_seconds=settings.render_lease_seconds,
        sweep_seconds=settings.job_sweep_seconds,
        schedule_seconds=settings.job_schedule_seconds,
        retries=settings.job_retries,
        retry_seconds=settings.job_retry_seconds,
        dequeue_seconds=min(1.0, settings.redis_timeout_seconds / 2),
    )
    redis = connect_redis(
        settings, decode=False, connections=settings.render_poll_concurrency + 16, embedded=embedded
    )
    return Jobs(redis, f"nvb:{settings.bot_id}:work", timings, blocking=embedded is None)


def build_services(settings: Settings, bot: ExtBot[Any]) -> Services:
    embedded = None if settings.redis_url else fakeredis.FakeServer()
    redis = connect_redis(settings, embedded=embedded)
    store = Store(redis, f"nvb:{settings.bot_id}", retention(settings))
    jobs = job_queue(settings, embedded)
    http = backend_client(settings, settings.nemo_max_connections)
    # Chat turns hold a connection for minutes each: they get a pool of their own, sized to the
    # number of turns that may stream at once, so they never starve the short calls.
    streams = backend_client(settings, settings.max_live_turns)
    attribution = Attribution(settings.nemo_skill, settings.nemo_skill_version, settings.nemo_skill_platform)
    retry = RetryPolicy(settings.http_retries, settings.http_retry_base_seconds)
    client = NemoClient(
        http,
        attribution,
        idle_timeout=settings.sse_idle_seconds,
        retry=retry,
        streams=streams,
        streaming=settings.agent_streaming,
    )
    operator_token = settings.nemo_token.get_secret_value() if settings.nemo_token else None
    key = settings.token_encryption_key
    vault = Vault(key.get_secret_value()) if key else None
    projects = Projects(
        client,
        store,
        operator_token=operator_token,
        rate_limit_wait=settings.rate_limit_wait_seconds,
        trial_refusal_seconds=settings.trial_refusal_memory_seconds,
        vault=vault,
        setups_at_once=settings.setups_at_once,
    )
    telegram = Telegram(bot, Transfers(settings.telegram_network_attempts, settings.telegram_file_seconds))
    alerts = OperatorAlerts(
        store,
        telegram,
        client,
        operator_token=operator_token,
        admins=settings.admin_user_ids,
        low_warning=settings.credits_low_warning,
        check_seconds=settings.credits_check_seconds,
    )
    jobs.register(JobKind.OPERATOR_CREDITS, alerts.check)
    kit = Kit(
        projects,
        store,
        alerts,
        personal_accounts=vault is not None,
        register_url=settings.nemo_register_url,
        site=settings.nemo_web_url,
    )
    flows = Flows(
        kit,
        client,
        profile=profile(settings),
        upload_limit_mb=upload_limit_mb(settings),
        studio_url=settings.mini_app_url,
    )
    logins = Logins(
        kit,
        client,
        store,
        vault,
        per_user_groups=settings.group_projects == "per_user",
        site=settings.nemo_web_url,
    )
    replicas = Replicas(redis, store.keys, settings.replica_lease_seconds)
    orphaned = stopped_owners(settings, replicas)
    inbox = Inbox(
        redis,
        store.keys,
        replicas.me,
        keep_seconds=store.retention.update,
        lease_seconds=settings.replica_lease_seconds,
        block_seconds=settings.inbox_block_seconds,
        vault=vault,
    )
    turns = Turns(
        kit,
        projects,
        store,
        TurnTimings(
            still_working=settings.still_working_seconds,
            max_seconds=settings.sse_max_seconds,
            typing_interval=settings.typing_interval_seconds,
            dropped_poll_seconds=settings.dropped_turn_poll_seconds,
            dropped_polls=settings.dropped_turn_polls,
            busy_grace=settings.turn_busy_grace_seconds,
            merge_seconds=settings.group_merge_seconds,
            max_live=settings.max_live_turns,
            live_edit=settings.live_edit_seconds,
            live_group_edit=settings.live_group_edit_seconds,
            reactions=settings.reactions,
        ),
        telegram,
        owner=replicas.me,
        jobs=jobs,
        orphaned=orphaned,
        watch_seconds=settings.replica_lease_seconds,
    )
    renders = Renders(
        kit,
        projects,
        client,
        store,
        telegram,
        jobs,
        RenderTimings(
            poll_seconds=settings.render_poll_seconds,
            max_seconds=settings.render_max_seconds,
            lease_seconds=settings.render_lease_seconds,
            delivery_attempts=settings.render_delivery_attempts,
            download_seconds=settings.render_download_seconds,
        ),
        upload_limit_mb=settings.telegram_upload_limit_mb,
        delivery_concurrency=settings.render_delivery_concurrency,
        web_url=settings.nemo_web_url,
        studio_url=settings.mini_app_url,
    )
    uploads = Uploads(
        kit,
        projects,
        client,
        store,
        telegram,
        UploadLimits(
            upload_limit_mb(settings),
            settings.telegram_download_limit_mb,
            progress_min_mb=settings.upload_progress_min_mb,
            progress_seconds=settings.upload_progress_seconds,
        ),
        album_wait=settings.album_wait_seconds,
        owner=replicas.me,
        jobs=jobs,
        adopt_seconds=settings.replica_lease_seconds,
    )
    switcher = Switcher(kit, owner=replicas.me, most=settings.max_projects, topics=settings.project_topics)
    return Services(
        settings,
        store,
        [http, streams],
        flows,
        turns,
        renders,
        uploads,
        logins,
        Guard(settings, store),
        telegram,
        replicas,
        inbox,
        jobs,
        orphaned,
        switcher,
        Studio(kit, client, switcher, refresh_seconds=settings.mini_app_refresh_seconds),
    )


def flood_limits(settings: Settings) -> FloodLimits:
    return FloodLimits(
        global_per_second=settings.telegram_global_per_second,
        global_burst=settings.telegram_global_burst,
        chat_burst=settings.telegram_chat_burst,
        chat_per_second=settings.telegram_chat_per_second,
        group_per_minute=settings.telegram_group_per_minute,
        margin_seconds=settings.limit_margin_seconds,
        retries=settings.telegram_flood_retries,
        slowdown_factor=settings.telegram_slowdown_factor,
        slowdown_seconds=settings.telegram_slowdown_seconds,
    )


def flood_limiter(settings: Settings) -> FloodLimiter:
    """The pacer: its windows kept in Redis in webhook mode, so the replicas share Telegram's limits
    (one process with long polling keeps them in memory)."""
    if not settings.telegram_webhook_url or not settings.redis_url:
        return FloodLimiter(flood_limits(settings))
    return FloodLimiter(
        flood_limits(settings), redis=connect_redis(settings), prefix=f"nvb:{settings.bot_id}:flood:"
    )
