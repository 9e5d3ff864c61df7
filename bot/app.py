"""Wiring: settings in, a ready python-telegram-bot Application out. The only module importing handlers."""

from __future__ import annotations

import contextlib
import logging

from telegram import BotCommand, BotCommandScopeAllGroupChats, BotCommandScopeAllPrivateChats
from telegram.ext import Application, ApplicationBuilder

from bot.chat.services import Services, build_services, connect_redis
from bot.settings import Settings
from bot.telegram.flood import FloodLimiter, FloodLimits

log = logging.getLogger(__name__)

PRIVATE_ONLY = frozenset({"start", "login", "logout"})  # a token is given in private, never in a group
COMMANDS = {
    "en": [
        ("start", "Start: greeting and examples"),
        ("help", "How to use the bot"),
        ("status", "Show the timeline"),
        ("credits", "Show your credits"),
        ("export", "Render and send the 1080p MP4"),
        ("new", "Start a fresh project"),
        ("cancel", "Stop the running request"),
        ("open", "Open the project in the browser"),
        ("login", "Use your own NemoVideo account"),
        ("logout", "Stop using your own account"),
    ],
    "zh": [
        ("start", "开始：问候与示例"),
        ("help", "使用方法"),
        ("status", "查看时间线"),
        ("credits", "查看积分"),
        ("export", "渲染并发送 1080p MP4"),
        ("new", "开始新项目"),
        ("cancel", "停止当前请求"),
        ("open", "在浏览器中打开项目"),
        ("login", "使用你自己的 NemoVideo 账户"),
        ("logout", "停止使用你自己的账户"),
    ],
}


async def register_commands(application: Application) -> None:  # type: ignore[type-arg]
    for lang, commands in COMMANDS.items():
        language = None if lang == "en" else lang
        menu = [BotCommand(name, description) for name, description in commands]
        await application.bot.set_my_commands(menu, language_code=language)
        await application.bot.set_my_commands(
            menu, scope=BotCommandScopeAllPrivateChats(), language_code=language
        )
        group_menu = [c for c in menu if c.command not in PRIVATE_ONLY]
        await application.bot.set_my_commands(
            group_menu, scope=BotCommandScopeAllGroupChats(), language_code=language
        )


async def on_start(application: Application) -> None:  # type: ignore[type-arg]
    settings: Settings = application.bot_data["settings"]
    services = build_services(settings, application.bot)
    application.bot_data["services"] = services
    try:
        await services.store.ping()
    except Exception as err:
        log.error(
            "Redis is not reachable (%s); the bot will answer that it is briefly unavailable",
            type(err).__name__,
        )
    with contextlib.suppress(Exception):
        await register_commands(application)
    services.start()
    if settings.listen_port and not settings.telegram_webhook_url:  # polling: /healthz and /metrics
        from bot.web import start_server

        application.bot_data["http"] = await start_server(services, settings)
    log.info("bot ready as profile %s", settings.nemo_skill)


async def on_stop(application: Application) -> None:  # type: ignore[type-arg]
    """Graceful stop (the bot can still send): finish or hand over the work in hand."""
    services: Services | None = application.bot_data.get("services")
    if services is None:
        return
    await services.stop(services.settings.shutdown_grace_seconds)


async def on_shutdown(application: Application) -> None:  # type: ignore[type-arg]
    services: Services | None = application.bot_data.get("services")
    if services is None:
        return
    if (runner := application.bot_data.get("http")) is not None:
        await runner.cleanup()
    await services.close()


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


def build_application(settings: Settings) -> Application:  # type: ignore[type-arg]
    from handlers import register

    limiter = flood_limiter(settings)
    application = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_base_url)
        .base_file_url(settings.telegram_base_file_url)
        .local_mode(settings.telegram_local_mode)
        .rate_limiter(limiter)
        .concurrent_updates(settings.concurrent_updates)
        # Requests wait for the FloodLimiter before they take a connection, so the pool holds only
        # requests in flight; waiting for one is bounded generously (a busy pool is not an error).
        .connection_pool_size(settings.telegram_connections)
        .pool_timeout(settings.telegram_pool_timeout_seconds)
        # Two connections for getUpdates: at shutdown PTB confirms the last updates with one more call
        # while the cancelled long poll may still hold the first; with one, updates would come again.
        .get_updates_connection_pool_size(2)
        .post_init(on_start)
        .post_stop(on_stop)
        .post_shutdown(on_shutdown)
        .build()
    )
    application.bot_data["settings"] = settings
    register(application, settings)
    return application
