"""Counters in Redis: each update seen once, the allowance windows of the access limits, one polite
refusal a day for an outsider, and a day's usage for the operator."""

from __future__ import annotations

from collections.abc import Callable

from redis.exceptions import WatchError

from bot.state.base import Section

ALLOWANCE_ATTEMPTS = 20  # a counter changed by another attempt is read again, this many times at most


class Usage(Section):
    async def first_sight(self, update_id: int) -> bool:
        """True the first time an update id is seen (Telegram keeps unconfirmed updates 24 h)."""
        key = self.keys.update_seen(update_id)
        return bool(await self.redis.set(key, "1", nx=True, ex=self.retention.update))

    async def take_allowance(
        self,
        limits: dict[str, int],
        window_seconds: int,
        amount: int,
        refuse: Callable[[list[int], list[int], int], int | None],
    ) -> int:
        """Count `amount` against every named counter (fixed windows) unless `refuse` (given what
        each has used, their limits and the amount) names a counter it would overflow: then nothing
        is counted, and the answer is the seconds until that counter resets (else 0). Atomic: a
        concurrent attempt on the same counters makes this one read again (WATCH/MULTI)."""
        if not limits:
            return 0
        keys = [self.keys.counter(name) for name in limits]
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(ALLOWANCE_ATTEMPTS):
                try:
                    await pipe.watch(*keys)
                    used = [int(value or 0) for value in await pipe.mget(keys)]
                    full = refuse(used, list(limits.values()), amount)
                    if full is not None:
                        return max(1, int(await pipe.ttl(keys[full])))
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for key in keys:
                        pipe.incrby(key, amount)
                        pipe.expire(key, window_seconds, nx=True)
                    await pipe.execute()
                    return 0
                except WatchError:
                    continue
        raise WatchError("allowance counters kept changing")

    async def first_refusal(self, who: str) -> bool:
        """True once per day per outsider: they hear one polite refusal, not one per message."""
        return bool(await self.redis.set(self.keys.refused(who), "1", nx=True, ex=self.retention.refusal))

    async def count_usage(self, kind: str, chat_key: str, day: str) -> None:
        stats, active = self.keys.stats(day), self.keys.active_chats(day)
        keep = self.retention.usage
        await self._pipe(
            lambda p: (
                p.hincrby(stats, kind, 1),
                p.expire(stats, keep),
                p.sadd(active, chat_key),
                p.expire(active, keep),
            )
        )

    async def usage(self, day: str) -> tuple[dict[str, int], int]:
        counts, active = await self._pipe(
            lambda p: (p.hgetall(self.keys.stats(day)), p.scard(self.keys.active_chats(day)))
        )
        return {k: int(v) for k, v in counts.items()}, int(active)
