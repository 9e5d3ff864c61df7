"""A chat's running turn in Redis: one slot per project, held by the replica running it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bot.state.base import Section, as_text, decode, encode
from bot.state.chats import ChatAddress

# KEYS: the turn; ARGV: started_at. Deletes the record only while it is that turn's.
END_TURN = """
local raw = redis.call('GET', KEYS[1])
if raw and tostring(cjson.decode(raw)['started_at']) == tostring(tonumber(ARGV[1])) then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: the turn; ARGV: started_at, the new record. Replaces it only while it is that turn's.
REPLACE_TURN = """
local raw = redis.call('GET', KEYS[1])
if raw and tostring(cjson.decode(raw)['started_at']) == tostring(tonumber(ARGV[1])) then
    return redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
return 0
"""


@dataclass
class TurnRecord:
    started_at: float
    text_preview: str  # first characters of the request, to tell the user what was interrupted
    chat_id: int = 0
    thread_id: int | None = None
    language: str = "en"
    session_language: str = "en"
    before: list[dict[str, Any]] | None = None  # the timeline when the turn began
    owner: str = ""  # the replica running it (bot.state.replicas); "" in records from before replicas
    request_id: int | None = None  # the user's message, whose 👀 becomes 👎 if the turn is cut off

    def address(self, chat_key: str) -> ChatAddress:
        return ChatAddress(self.chat_id, self.thread_id, chat_key, self.language, self.session_language)


class Turns(Section):
    async def start_turn(self, chat_key: str, turn: TurnRecord, ttl_seconds: float) -> bool:
        """Claim the chat's one turn slot; False when a turn is already running."""
        ok = await self.redis.set(
            self.keys.turn(chat_key), encode(asdict(turn)), nx=True, ex=int(ttl_seconds) + 1
        )
        return bool(ok)

    async def note_turn_timeline(self, chat_key: str, turn: TurnRecord) -> None:
        """Keep the timeline a turn started from (`turn.before`) with its record, while it is that
        turn's (same expiry)."""
        await self._script(REPLACE_TURN)(
            client=self.redis, keys=[self.keys.turn(chat_key)], args=[turn.started_at, encode(asdict(turn))]
        )

    async def current_turn(self, chat_key: str) -> TurnRecord | None:
        raw = await self.redis.get(self.keys.turn(chat_key))
        return decode(TurnRecord, raw) if raw else None

    async def turn_starts(self, chat_keys: list[str]) -> dict[str, float | None]:
        """When each chat's running turn started (None: no turn), in one round trip."""
        raws = await self.redis.mget([self.keys.turn(key) for key in chat_keys])
        return {
            key: decode(TurnRecord, raw).started_at if raw else None
            for key, raw in zip(chat_keys, raws, strict=True)
        }

    async def end_turn(self, chat_key: str, started_at: float | None = None) -> bool:
        """Close the chat's turn record; with `started_at`, only if it is still that turn's (it may
        have expired, and a newer turn hold the slot now). True for the one caller that closed it."""
        if started_at is None:
            return bool(await self.redis.delete(self.keys.turn(chat_key)))
        return bool(
            await self._script(END_TURN)(
                client=self.redis, keys=[self.keys.turn(chat_key)], args=[started_at]
            )
        )

    async def running_turns(self) -> list[tuple[str, TurnRecord]]:
        """Every turn recorded as running, by any replica (the caller picks the orphans)."""
        prefix = self.keys.turn("")
        keys = [as_text(key) async for key in self.redis.scan_iter(match=f"{prefix}*", count=500)]
        raws = await self.redis.mget(keys) if keys else []  # one read for all, not one per turn
        return [
            (key[len(prefix) :], decode(TurnRecord, raw)) for key, raw in zip(keys, raws, strict=True) if raw
        ]

    async def turns_running(self) -> int:
        """How many turns are recorded as running, by every replica (counted, not read)."""
        count = 0
        async for _ in self.redis.scan_iter(match=self.keys.turn("*"), count=500):
            count += 1
        return count
