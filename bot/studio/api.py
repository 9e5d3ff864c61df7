"""The studio's HTTP side, on the bot's own server: the page at `/studio`, its files, and its API.

Every API call must carry Telegram's signed `initData` (`bot.studio.auth`): missing, forged or stale,
it is answered 401 and nothing is read or done. The caller acts only on their own private chat with
the bot, through `Services`, behind the same access rules and limits as a message they type.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError
from telegram.error import TelegramError

from bot.chat.kit import ChatContext
from bot.chat.projects import ChatRef
from bot.chat.services import Services
from bot.core.texts import language_of, session_language, words
from bot.nemo.errors import NemoError
from bot.settings import Settings
from bot.studio.auth import Caller, caller_of

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
MAX_BODY_BYTES = 4096  # a studio call is a few fields of JSON
JSON_HEADERS = {"Cache-Control": "no-store"}
# The page runs only its own script and Telegram's; it talks only to this server. Pictures and the
# video come from the backend's CDN (https; http on a loopback test stand).
PAGE_POLICY = (
    "default-src 'self'; script-src 'self' https://telegram.org; style-src 'self'; "
    "img-src 'self' https: data:; media-src 'self' https: http:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'"
)

Handler = Callable[[ChatContext, dict[str, Any]], Awaitable[web.Response]]


def routes(services: Services, settings: Settings) -> list[web.AbstractRouteDef]:
    """The page, its static files and the API, for the bot's HTTP server."""
    token = settings.telegram_bot_token.get_secret_value()
    max_age = settings.mini_app_auth_seconds

    def api(handle: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def endpoint(request: web.Request) -> web.Response:
            caller = caller_of(request.headers.get("Authorization"), token, max_age)
            if caller is None:
                return _error(401, "unauthorized")
            if not services.allows(caller.user_id, caller.user_id):
                return _error(403, "forbidden")
            if (request.content_length or 0) > MAX_BODY_BYTES:
                return _error(413, "too large")
            try:
                body = await request.json() if request.can_read_body else {}
            except (ValueError, UnicodeDecodeError):
                return _error(400, "bad request")
            if not isinstance(body, dict):
                return _error(400, "bad request")
            ctx = _context(services, caller, body.get("topic"))
            try:
                return await handle(ctx, body)
            except TelegramError as err:  # the bot cannot write to the person (never started, or blocked)
                log.info("studio call for %s: the chat refused: %s", caller.user_id, type(err).__name__)
                return _error(409, "chat unavailable", words(ctx.lang, "studio_no_chat"))
            except (NemoError, RedisError) as err:
                log.info("studio call for %s failed: %s", caller.user_id, type(err).__name__)
                return _error(503, "unavailable")

        return endpoint

    async def state(ctx: ChatContext, body: dict[str, Any]) -> web.Response:
        return _json(await services.studio_view(ctx))

    async def act(ctx: ChatContext, body: dict[str, Any]) -> web.Response:
        action = body.get("action")
        if not isinstance(action, str) or not await services.studio_act(ctx, action):
            return _error(400, "unknown action")
        return _json({"ok": True}, status=202)

    async def segment(ctx: ChatContext, body: dict[str, Any]) -> web.Response:
        track, index, op, digest = body.get("track"), body.get("segment"), body.get("op"), body.get("digest")
        if not (_whole(track) and _whole(index) and isinstance(op, str)) or not isinstance(
            digest, str | None
        ):
            return _error(400, "bad request")
        assert isinstance(track, int) and isinstance(index, int)
        if not await services.studio_segment(ctx, track, index, op, digest):
            return _error(409, "segment not found", words(ctx.lang, "studio_changed"))
        return _json({"ok": True}, status=202)

    async def switch(ctx: ChatContext, body: dict[str, Any]) -> web.Response:
        project = body.get("project")
        if not isinstance(project, str) or not await services.switch_project(ctx, project):
            return _error(409, "not switched")
        return _json(await services.studio_view(ctx))

    async def page(_: web.Request) -> web.FileResponse:
        headers = {"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_POLICY}
        return web.FileResponse(STATIC / "index.html", headers=headers)

    return [
        web.get("/studio", page),
        web.static("/studio/static", STATIC),
        web.post("/studio/api/state", api(state)),
        web.post("/studio/api/act", api(act)),
        web.post("/studio/api/segment", api(segment)),
        web.post("/studio/api/switch", api(switch)),
    ]


def _context(services: Services, caller: Caller, topic: object = None) -> ChatContext:
    """The caller's private chat with the bot, or one of its topics (its own chat either way): where
    the studio's requests are answered."""
    lang = language_of(caller.language_code)
    thread = topic if isinstance(topic, int) and not isinstance(topic, bool) and 0 < topic < 2**31 else None
    out = services.output(caller.user_id, lang, thread_id=thread)
    chat = ChatRef.of(caller.user_id, thread)
    return ChatContext(chat, lang, session_language(caller.language_code), out, caller.user_id)


def _json(value: object, status: int = 200) -> web.Response:
    return web.json_response(
        value, status=status, headers=JSON_HEADERS, dumps=lambda v: json.dumps(v, ensure_ascii=False)
    )


def _error(status: int, reason: str, message: str | None = None) -> web.Response:
    """An error: `reason` for programs, and `message` (in the person's language) for the page to show."""
    return _json({"error": reason} | ({"message": message} if message else {}), status=status)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
