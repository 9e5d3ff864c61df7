"""Which replicas are alive: each keeps a heartbeat key in Redis that expires a lease after it stops.

Work a replica holds (a running turn, media not yet forwarded) is recorded with its id as owner;
when the owner's heartbeat is gone, another replica takes the work over (`Turns.sweep`,
`Uploads.sweep`). Renders have leases of their own (`Renders`), and updates are held in the
inbox's consumer group (`bot.state.inbox`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.state.keys import Keys

log = logging.getLogger(__name__)


def new_replica_id() -> str:
    """Unique per process, readable in logs: host, pid and a random tail."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Replicas:
    def __init__(self, redis: Redis, keys: Keys, lease_seconds: float, replica_id: str | None = None):
        self.redis = redis
        self.keys = keys
        self.lease = lease_seconds
        self.me = replica_id or new_replica_id()

    async def beat(self) -> None:
        await self.redis.set(self.keys.replica(self.me), "1", px=int(self.lease * 1000))

    async def keep_alive(self) -> None:
        """Renew this replica's heartbeat three times a lease until cancelled."""
        while True:
            try:
                await self.beat()
            except RedisError as err:
                log.warning("heartbeat not renewed, Redis unavailable: %s", type(err).__name__)
            await asyncio.sleep(self.lease / 3)

    async def leave(self) -> None:
        """At a graceful stop: the heartbeat goes at once, so others take over without waiting."""
        await self.redis.delete(self.keys.replica(self.me))

    async def dead(self, owners: set[str]) -> set[str]:
        """The owners among `owners` without a heartbeat ("" is a record from before owners)."""
        named = sorted(owner for owner in owners if owner and owner != self.me)
        if not named:
            return {owner for owner in owners if not owner}
        alive = await self.redis.mget([self.keys.replica(owner) for owner in named])
        gone = {owner for owner, beat in zip(named, alive, strict=True) if beat is None}
        return gone | {owner for owner in owners if not owner}

    async def count(self) -> int:
        found = 0
        async for _ in self.redis.scan_iter(match=self.keys.replica("*"), count=200):
            found += 1
        return found
