"""The Redis store: one object joining every part of the bot's state (`Chats`, `Accounts`, `Turns`,
`Renders`, `Usage`, `Uploads`, `ProjectRecords`, each in its own module with its scripts).

Redis is the one place state lives. Every key is built by `Keys`, under a namespace of the bot's
own id, so two bots can share one Redis.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from bot.state.accounts import Accounts
from bot.state.base import Retention
from bot.state.chats import Chats
from bot.state.keys import Keys
from bot.state.projects import ProjectRecords
from bot.state.renders import Renders
from bot.state.turns import Turns
from bot.state.uploads import Uploads
from bot.state.usage import Usage


class Store(Chats, Accounts, ProjectRecords, Turns, Renders, Usage, Uploads):
    """Typed access to the bot's keys; the Redis client must use `decode_responses=True`."""

    def __init__(self, redis: Redis, namespace: str, retention: Retention):
        self.redis = redis
        self.keys = Keys(namespace)
        self.retention = retention
        self._scripts: dict[str, AsyncScript] = {}

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()

    async def depths(self) -> dict[str, int]:
        """How much work is in hand across replicas, for /metrics (counted, not read)."""
        renders, uploads = await self._pipe(
            lambda p: (p.scard(self.keys.active_renders()), p.hlen(self.keys.pending_uploads()))
        )
        turns = await self.turns_running()
        return {"renders_active": int(renders), "uploads_pending": int(uploads), "turns_running": turns}
