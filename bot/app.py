"""The application's life: python-telegram-bot's Application with the handlers (the only module
importing them), its start and stop, and webhook mode's run from start to a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from telegram import Update
from telegram.ext import Application, ApplicationBuilder

from bot.chat.services import Services
from bot.settings import Settings
from bot.telegram.menu import register_commands, register_menu_button
from bot.wiring import build_services, flood_limiter

log = logging.getLogger(__name__)


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
        await register_commands(application.bot)
    with contextlib.suppress(Exception):
        await register_menu_button(application.bot, settings.mini_app_url)
    services.start()
    if settings.listen_port and not settings.telegram_webhook_url:  # polling: /healthz and /metrics
        from bot.web import start_server  # here: aiohttp (9 MB) loads only where a server runs

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


async def serve(settings: Settings) -> None:
    """Run one replica in webhook mode until SIGTERM or SIGINT, then stop within the grace."""
    application = build_application(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with application:  # initialize (getMe) ... shutdown
        await on_start(application)
        services: Services = application.bot_data["services"]
        inbox = services.inbox
        await application.start()
        from bot.web import start_server

        runner = await start_server(services, settings)
        consumer = asyncio.create_task(
            inbox.run(lambda data: handle(application, data), settings.concurrent_updates), name="inbox"
        )
        await register_webhook(application, settings)
        log.info(
            "replica %s serving the webhook on %s:%s",
            services.replica_id,
            settings.http_host,
            settings.listen_port,
        )
        await stop.wait()
        log.info("stopping: no new updates; finishing or handing over the work in hand")
        runner.app["accepting"]["on"] = False
        with contextlib.suppress(asyncio.TimeoutError):
            consumer.cancel()
            await asyncio.wait_for(
                asyncio.gather(consumer, return_exceptions=True), settings.shutdown_grace_seconds
            )
        await application.stop()
        await on_stop(application)
        await runner.cleanup()
    await on_shutdown(application)


async def handle(application: Application, data: dict[str, Any]) -> None:  # type: ignore[type-arg]
    await application.process_update(Update.de_json(data, application.bot))


async def register_webhook(application: Application, settings: Settings) -> None:  # type: ignore[type-arg]
    """Point Telegram at TELEGRAM_WEBHOOK_URL (every replica does; the call is idempotent)."""
    assert settings.telegram_webhook_url and settings.telegram_webhook_secret
    await application.bot.set_webhook(
        url=settings.telegram_webhook_url,
        secret_token=settings.telegram_webhook_secret.get_secret_value(),
        allowed_updates=Update.ALL_TYPES,
        max_connections=settings.telegram_webhook_max_connections,
        drop_pending_updates=False,
    )
