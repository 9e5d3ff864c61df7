"""Who may use the bot, how much, and what it has been used for.

The access rule and the limit check are pure; `Guard` applies them with Redis counters, so the
limits hold across restarts and processes, and each chat's counters are its own (a flooding
chat is stopped without slowing anyone else).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bot.settings import Settings
from bot.state.store import Store


@dataclass(frozen=True)
class AccessPolicy:
    allowed_users: frozenset[int]
    allowed_chats: frozenset[int]
    admins: frozenset[int]

    def allows(self, user_id: int | None, chat_id: int) -> bool:
        """Admins always; with no allow-list everyone; else a listed user or a listed chat."""
        if user_id is not None and user_id in self.admins:
            return True
        if not self.allowed_users and not self.allowed_chats:
            return True
        return (user_id is not None and user_id in self.allowed_users) or chat_id in self.allowed_chats

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.admins


@dataclass(frozen=True)
class Quota:
    kind: str  # "turns" | "uploads"
    per_user: int  # 0 = unlimited
    per_chat: int
    window_seconds: int

    def counters(self, user_id: int | None, chat_key: str) -> dict[str, int]:
        """The counters an attempt by this user in this chat must fit, with their limits (0 = none)."""
        limits = {f"{self.kind}:chat:{chat_key}": self.per_chat}
        if user_id is not None:
            limits[f"{self.kind}:user:{user_id}"] = self.per_user
        return {name: limit for name, limit in limits.items() if limit > 0}


def overflowing(used: list[int], limits: list[int], amount: int) -> int | None:
    """The first counter that `amount` more would take past its limit, or None: the attempt fits
    every one and may be counted (pure)."""
    for index, (count, limit) in enumerate(zip(used, limits, strict=True)):
        if count + amount > limit:
            return index
    return None


USAGE_KINDS = ("turns", "uploads", "renders", "delivered", "failures")


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


class Guard:
    def __init__(self, settings: Settings, store: Store):
        self.store = store
        self.policy = AccessPolicy(
            settings.allowed_user_ids, settings.allowed_chat_ids, settings.admin_user_ids
        )
        window = settings.limit_window_seconds
        self.quotas = {
            "turns": Quota("turns", settings.turns_per_user, settings.turns_per_chat, window),
            "uploads": Quota("uploads", settings.uploads_per_user, settings.uploads_per_chat, window),
        }

    async def wait_needed(self, kind: str, user_id: int | None, chat_key: str, amount: int = 1) -> int:
        """Seconds until `kind` is allowed again for this user and chat (0: go ahead, and counted).
        A refused attempt counts against neither the user nor the chat."""
        quota = self.quotas[kind]
        return await self.store.take_allowance(
            quota.counters(user_id, chat_key), quota.window_seconds, amount, overflowing
        )

    async def first_refusal(self, user_id: int | None, chat_id: int) -> bool:
        return await self.store.first_refusal(f"u{user_id}" if user_id is not None else f"c{chat_id}")

    async def count(self, kind: str, chat_key: str) -> None:
        await self.store.count_usage(kind, chat_key, today())

    async def report(self) -> tuple[dict[str, int], int]:
        """Today's usage: counts per kind, and how many chats were active."""
        counts, active = await self.store.usage(today())
        return {kind: counts.get(kind, 0) for kind in USAGE_KINDS}, active
