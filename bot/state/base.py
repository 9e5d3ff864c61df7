"""What every part of the store shares: the client, the keys, how long things are kept, and how a
record becomes JSON and back."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from bot.state.keys import Keys

T = TypeVar("T")


@dataclass(frozen=True)
class Retention:
    """How long Redis keeps what outlives its use, in seconds (each from a setting)."""

    chat: int  # a silent chat's project
    update: int  # an update's id, so an update Telegram sends again is handled once
    refusal: int  # that an outsider heard their one polite refusal
    finished_render: int  # a finished render's record, for the log
    usage: int  # a day's usage counts


class Section:
    """One part of the store (chats, turns, renders ...); `Store` joins them. The Redis client must
    use `decode_responses=True`."""

    redis: Redis
    keys: Keys
    retention: Retention
    _scripts: dict[str, AsyncScript]

    def _script(self, source: str) -> AsyncScript:
        """A Lua script, registered once (its source sits beside the method that runs it)."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.redis.register_script(source)
        return script

    async def _pipe(self, build: Any) -> list[Any]:
        async with self.redis.pipeline(transaction=True) as pipe:
            build(pipe)
            return list(await pipe.execute())


def encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def decode(cls: type[T], raw: str | bytes) -> T:
    """A record from JSON, ignoring fields this version does not know (records outlive upgrades)."""
    data = json.loads(raw)
    known = {item.name for item in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in known})


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
