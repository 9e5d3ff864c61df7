"""Webhook mode: a replica's HTTP server and its life from start to a graceful stop.

- `POST <path of TELEGRAM_WEBHOOK_URL>`: an update from Telegram. Without the right
  `X-Telegram-Bot-Api-Secret-Token` it is refused (403) and never read; with it, it is recorded in
  the inbox (Redis) before the 200, so a replica that dies a moment later loses nothing.
- `GET /healthz`: 200 when Redis and the backend answer, else 503 with the reason.
- `GET /metrics`: Prometheus text (see `bot.core.metrics`).
- `/studio`: the studio, a Telegram Mini App (`bot.studio.api`), when MINI_APP_URL is set.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

import httpx
from aiohttp import web
from redis.exceptions import RedisError

from bot.chat.services import Services
from bot.core import metrics
from bot.settings import Settings
from bot.state.inbox import Inbox
from bot.studio.api import routes as studio_routes

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105  # a header name
HEALTH_MEMORY_SECONDS = 2.0  # a burst of probes costs the backend one request
MAX_UPDATE_BYTES = 1024 * 1024  # an update is JSON text: files never come this way


class Health:
    """Whether Redis and the backend answer; the backend's answer is remembered briefly."""

    def __init__(self, services: Services, settings: Settings):
        self.services = services
        self.url = settings.nemo_api_base
        self.timeout = settings.redis_timeout_seconds
        self._backend: tuple[float, str | None] = (-HEALTH_MEMORY_SECONDS, None)

    async def problems(self) -> list[str]:
        found = []
        try:
            await asyncio.wait_for(self.services.store.ping(), self.timeout)
        except (RedisError, OSError, TimeoutError) as err:
            found.append(f"redis: {type(err).__name__}")
        if (problem := await self._backend_problem()) is not None:
            found.append(f"backend: {problem}")
        return found

    async def _backend_problem(self) -> str | None:
        checked_at, problem = self._backend
        if time.monotonic() - checked_at < HEALTH_MEMORY_SECONDS:
            return problem
        try:  # any HTTP answer means it is reachable; only a connection failure is a problem
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                await client.get(self.url)
            problem = None
        except httpx.HTTPError as err:
            problem = type(err).__name__
        self._backend = (time.monotonic(), problem)
        return problem


def make_app(
    settings: Settings,
    inbox: Inbox,
    health: Health,
    gauges: Callable[[], Awaitable[None]],
    extra: list[web.AbstractRouteDef] | None = None,
) -> web.Application:
    secret = (
        settings.telegram_webhook_secret.get_secret_value().encode()
        if settings.telegram_webhook_secret
        else b""
    )
    accepting = {"on": True}

    async def webhook(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not secret or not hmac.compare_digest(given, secret):
            log.warning("webhook post without the right secret refused")
            return web.Response(status=403, text="forbidden")
        if not accepting["on"]:  # stopping: Telegram (or the proxy) tries again elsewhere
            return web.Response(status=503, text="stopping")
        try:
            update = await request.json()
            int(update["update_id"])
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text="not an update")
        try:
            await inbox.record(update)
        except RedisError as err:  # not recorded: a non-2xx makes Telegram post it again
            log.warning("update not recorded, Redis unavailable: %s", type(err).__name__)
            return web.Response(status=503, text="storage unavailable")
        return web.Response(text="ok")

    async def healthz(_: web.Request) -> web.Response:
        problems = await health.problems()
        if problems:
            return web.Response(status=503, text="; ".join(problems))
        return web.Response(text="ok")

    async def metrics_page(_: web.Request) -> web.Response:
        await gauges()
        return web.Response(body=metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE})

    app = web.Application(client_max_size=MAX_UPDATE_BYTES)
    app["accepting"] = accepting
    app.router.add_post(settings.webhook_path or "/telegram", webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    app.add_routes(extra or [])
    return app


async def start_server(services: Services, settings: Settings) -> web.AppRunner:
    """Listen on HTTP_HOST:HTTP_PORT: the webhook (if set), /healthz and /metrics."""
    runner = web.AppRunner(
        make_app(
            settings,
            services.inbox,
            Health(services, settings),
            services.read_gauges,
            studio_routes(services, settings) if settings.mini_app_url else None,
        ),
        access_log=None,
        handle_signals=False,
    )
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.listen_port).start()
    return runner
