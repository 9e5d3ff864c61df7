"""What Redis keeps about accounts: a person's linked (sealed) token, the backend's refusal of
trials, claim tokens for the browser link, and which operator alerts were already sent."""

from __future__ import annotations

from bot.core.accounts import Link
from bot.state.base import Section, as_text


class Accounts(Section):
    async def link(self, user_id: int) -> Link | None:
        raw = await self.redis.hgetall(self.keys.person(user_id))
        if not raw.get("sealed"):
            return None
        return Link(as_text(raw["sealed"]), refused=as_text(raw.get("refused", "")) == "1")

    async def save_link(self, user_id: int, sealed: str) -> None:
        """Keep a person's (encrypted) token; unused for `chat_ttl`, it is forgotten."""
        key = self.keys.person(user_id)
        await self._pipe(
            lambda p: (
                p.delete(key),
                p.hset(key, mapping={"sealed": sealed}),
                p.expire(key, self.retention.chat),
            )
        )

    async def refuse_link(self, user_id: int) -> None:
        """The backend refused the person's token: kept, marked, until they log in again or out."""
        key = self.keys.person(user_id)
        if await self.redis.exists(key):
            await self.redis.hset(key, "refused", "1")

    async def drop_link(self, user_id: int) -> bool:
        return bool(await self.redis.delete(self.keys.person(user_id)))

    async def trials_refused(self) -> bool:
        return bool(await self.redis.exists(self.keys.trials_refused()))

    async def note_trials_refused(self, seconds: float) -> None:
        """The backend refused a trial token: no new trial is asked for during `seconds`."""
        await self.redis.set(self.keys.trials_refused(), "1", ex=max(1, int(seconds)))

    async def claim(self, session_id: str) -> str | None:
        raw = await self.redis.get(self.keys.claim(session_id))
        return as_text(raw) if raw else None

    async def save_claim(self, session_id: str, claim: str, seconds: float) -> None:
        await self.redis.set(self.keys.claim(session_id), claim, ex=max(1, int(seconds)))

    async def first_alert(self, kind: str, *, ttl: int | None = None) -> bool:
        """True once for each alert (`kind`) until `clear_alert` (or `ttl` seconds): admins hear it once."""
        return bool(await self.redis.set(self.keys.alerted(kind), "1", nx=True, ex=ttl))

    async def note_admin_language(self, user_id: int, lang: str) -> None:
        await self.redis.hset(self.keys.admin_languages(), str(user_id), lang)

    async def admin_languages(self) -> dict[int, str]:
        raw = await self.redis.hgetall(self.keys.admin_languages())
        return {int(as_text(k)): as_text(v) for k, v in raw.items()}

    async def clear_alert(self, *kinds: str) -> None:
        await self.redis.delete(*(self.keys.alerted(kind) for kind in kinds))
