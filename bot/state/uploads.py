"""Media received but not yet forwarded, and albums being gathered: noted in Redis with the replica
holding each item, so a restarted or surviving replica forwards it all the same."""

from __future__ import annotations

import json
from typing import Any, cast

from bot.state.base import Section, as_text, encode

# KEYS: the pending uploads, their owners; ARGV: the new owner, then the dead ones ("" for records
# without an owner). Re-owns each item a dead replica held; returns them.
TAKE_OVER_UPLOADS = """
local dead = {}
for i = 2, #ARGV do dead[ARGV[i]] = true end
local taken = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
    local owner = redis.call('HGET', KEYS[2], all[i]) or ''
    if dead[owner] then
        redis.call('HSET', KEYS[2], all[i], ARGV[1])
        table.insert(taken, all[i + 1])
    end
end
return taken
"""


class Uploads(Section):
    async def add_pending_upload(
        self, chat_key: str, message_id: int, payload: dict[str, Any], owner: str
    ) -> None:
        """Note media received and not yet forwarded, held by replica `owner`."""
        item = f"{chat_key}|{message_id}"
        await self._pipe(
            lambda p: (
                p.hset(self.keys.pending_uploads(), item, encode(payload)),
                p.hset(self.keys.pending_owners(), item, owner),
            )
        )

    async def remove_pending_uploads(self, chat_key: str, message_ids: list[int]) -> None:
        if message_ids:
            items = [f"{chat_key}|{m}" for m in message_ids]
            await self._pipe(
                lambda p: (
                    p.hdel(self.keys.pending_uploads(), *items),
                    p.hdel(self.keys.pending_owners(), *items),
                )
            )

    async def schedule_album(self, chat_key: str, album: str, due_at: float) -> None:
        """An album is flushed once it has been quiet until `due_at` (each item moves it later)."""
        await self.redis.zadd(self.keys.albums_due(), {f"{chat_key}|{album}": due_at})

    async def album_due(self, chat_key: str, album: str) -> float | None:
        """When an album being gathered falls quiet; None once it has been sent on."""
        due = await self.redis.zscore(self.keys.albums_due(), f"{chat_key}|{album}")
        return None if due is None else float(due)

    async def albums(self) -> list[tuple[str, str, float]]:
        """Every album being gathered: (chat key, album id, when it falls quiet)."""
        found = cast(
            list[tuple[str, float]], await self.redis.zrange(self.keys.albums_due(), 0, -1, withscores=True)
        )
        albums = []
        for member, due in found:
            chat_key, album = member.rsplit("|", 1)
            albums.append((chat_key, album, float(due)))
        return albums

    async def album_done(self, chat_key: str, album: str) -> None:
        await self.redis.zrem(self.keys.albums_due(), f"{chat_key}|{album}")

    async def album_items(self, chat_key: str, album: str) -> list[dict[str, Any]]:
        """The pending media of one album, whichever replica received each item."""
        items = await self.pending_uploads()
        return [item for item in items if item.get("album") == album and item.get("chat_key") == chat_key]

    async def pending_upload_owners(self) -> set[str]:
        """The replicas holding media not yet forwarded ("" for items recorded without one)."""
        items, owners = await self._pipe(
            lambda p: (p.hkeys(self.keys.pending_uploads()), p.hgetall(self.keys.pending_owners()))
        )
        return {as_text(owners.get(item, "")) for item in items}

    async def take_over_uploads(self, dead: set[str], me: str) -> list[dict[str, Any]]:
        """The pending media of replicas that died, now recorded as `me`'s (atomically: of two
        replicas taking over at once, each item goes to one)."""
        taken = await self._script(TAKE_OVER_UPLOADS)(
            client=self.redis,
            keys=[self.keys.pending_uploads(), self.keys.pending_owners()],
            args=[me, *sorted(dead)],
        )
        return [json.loads(as_text(raw)) for raw in taken]

    async def pending_uploads(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.keys.pending_uploads())
        return [json.loads(value) for _, value in sorted(raw.items())]
