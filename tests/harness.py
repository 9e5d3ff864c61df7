"""Handler tests: the real Application and handlers, fed updates from the fake Bot API server."""

from __future__ import annotations

import asyncio
from typing import Any

from telegram import Update
from telegram.ext import Application

from bot.app import build_application, on_shutdown, on_start, on_stop
from bot.chat.services import Services
from bot.settings import Settings
from loopback.emulator import NemoEmulator
from loopback.fake_telegram import FakeTelegram, User

FAST_SETTINGS: dict[str, Any] = {
    "render_poll_seconds": 0.05,
    "render_lease_seconds": 1,
    "job_schedule_seconds": 0.02,
    "job_sweep_seconds": 0.3,
    "still_working_seconds": 0.4,
    "typing_interval_seconds": 0.1,
    "album_wait_seconds": 0.2,
    "rate_limit_wait_seconds": 0,
    "dropped_turn_poll_seconds": 0.05,
    "sse_idle_seconds": 2,
    "http_timeout_seconds": 5,
    "turn_busy_grace_seconds": 0.3,
    "http_retry_base_seconds": 0.01,
    "shutdown_grace_seconds": 1,
    "live_edit_seconds": 0.1,
    "live_group_edit_seconds": 0.3,
    # Telegram's per-chat pacing scaled to the intervals above (the load tests use the real limits).
    "telegram_chat_per_second": 100,
    "telegram_limit_margin_seconds": 0.01,
    "telegram_group_per_minute": 1000,
}


class Harness:
    """An Application wired as in production, whose updates come straight from the fake's users."""

    def __init__(self, fake: FakeTelegram, emulator: NemoEmulator, **settings: Any):
        self.fake = fake
        self.emulator = emulator
        self.settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            telegram_bot_token=fake.token,
            telegram_base_url=fake.base_url,
            telegram_base_file_url=fake.base_file_url,
            nemo_api_base=emulator.base_url,
            **{**FAST_SETTINGS, **settings},
        )
        self.app: Application = build_application(self.settings)  # type: ignore[type-arg]

    @property
    def services(self) -> Services:
        services: Services = self.app.bot_data["services"]
        return services

    async def start(self) -> None:
        await self.app.initialize()
        await on_start(self.app)

    async def stop(self) -> None:
        await on_stop(self.app)
        await self.app.shutdown()
        await on_shutdown(self.app)

    async def send(self, update: dict[str, Any]) -> None:
        """Process one update as the polling loop would."""
        await self.app.process_update(Update.de_json(update, self.app.bot))


async def user_says(bot: Harness, chat: int, text: str, user: User) -> int:
    """A user writes `text`; returns the message index to wait after."""
    mark = bot.fake.message_count(chat)
    await bot.send(bot.fake.send_text(chat, text, user=user))
    return mark


async def connect(bot: Harness, chat: int, user: User) -> str:
    """Connect the chat (as /start does) and return its session id."""
    await bot.send(bot.fake.send_command(chat, "/start", user=user))
    await bot.fake.wait_for_message(chat, "Connected and ready")
    return (await bot.services.store.load_chat(str(chat))).session_id


async def turn_over(bot: Harness, chat: int) -> None:
    """Until the chat's running turn has closed (bounded)."""
    for _ in range(100):
        if await bot.services.store.current_turn(str(chat)) is None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the turn did not close")
