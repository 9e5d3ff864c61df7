"""Outgoing traffic within Telegram's flood limits, answers first.

Every Bot API request passes through PTB's rate-limiter hook, so this is the one place that paces
them. Requests that Telegram counts (sends, edits, deletions, chat actions, reactions) are planned
against three sliding windows: the whole bot (about 30 a second), the chat (about 1 a second, with
short bursts) and, for groups and channels, the chat's minute (20). A chat's requests go out one at
a time, in order, so its window holds the times they really left.

Requests come in two priorities. An answer waits for its turn, however long that is; cosmetic
traffic (typing, "still working", progress edits, set-up notices) goes only when it would not
wait and would leave half of every window free for answers, and is otherwise dropped with
`Thinned`. A 429 that still happens blocks that chat alone for its `retry_after`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import time
import warnings
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NoReturn

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

log = logging.getLogger(__name__)

# The methods Telegram counts against its flood limits; everything else (getFile, getMe,
# answerCallbackQuery, setMyCommands ...) goes straight through.
COUNTED = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendVideo",
        "sendDocument",
        "sendAudio",
        "sendAnimation",
        "sendVoice",
        "sendVideoNote",
        "sendSticker",
        "sendMediaGroup",
        "sendChatAction",
        "copyMessage",
        "forwardMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "editMessageReplyMarkup",
        "deleteMessage",
        "setMessageReaction",
    }
)
CATCH_UP_SECONDS = 0.005  # how late a paced request may be and still count at its planned moment
COSMETIC_SHARE = 0.5  # cosmetic traffic may use a window only while it is less than half full
IDLE_SWEEP_SECONDS = 60.0  # how often windows of chats gone quiet are forgotten


class Priority(enum.Enum):
    ANSWER = "answer"
    COSMETIC = "cosmetic"


COSMETIC = Priority.COSMETIC


class Thinned(Exception):
    """A cosmetic request was dropped to keep Telegram's budget for answers."""


@dataclass(frozen=True)
class FloodLimits:
    """Telegram's limits as the bot plans for them (each a setting: see Settings)."""

    global_per_second: int
    global_burst: int  # at most this many at once: a paced stream reaches Telegram evenly
    chat_burst: int
    chat_per_second: float
    group_per_minute: int
    margin_seconds: float  # added to every window: requests reach Telegram with some jitter
    retries: int  # an answer refused with 429 is tried again this many times


@dataclass
class Window:
    """At most `limit` requests in any `seconds`. Pure: the caller passes the clock."""

    limit: int
    seconds: float
    times: deque[float] = field(default_factory=deque)

    def slot(self, now: float) -> float:
        """The earliest moment from `now` at which one more request keeps the window's promise."""
        self._forget(now)
        if len(self.times) < self.limit:
            return now
        return max(now, self.times[-self.limit] + self.seconds)

    def used(self, now: float) -> int:
        self._forget(now)
        return len(self.times)

    def take(self, at: float) -> None:
        self.times.append(at)

    def _forget(self, now: float) -> None:
        while self.times and self.times[0] <= now - self.seconds:
            self.times.popleft()


@dataclass
class _Chat:
    window: Window
    group: Window | None  # the per-minute window of a group or channel
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    blocked_until: float = 0.0  # after a 429 for this chat

    def windows(self) -> list[Window]:
        return [self.window] if self.group is None else [self.window, self.group]

    def idle(self, now: float) -> bool:
        return (
            not self.lock.locked()
            and now >= self.blocked_until
            and all(not w.used(now) for w in self.windows())
        )


def chat_of(data: dict[str, Any]) -> int | str | None:
    """The chat a request goes to: an id, an @username (a channel or group), or None."""
    chat_id = data.get("chat_id")
    if chat_id is None:
        return None
    with contextlib.suppress(TypeError, ValueError):
        return int(chat_id)
    return str(chat_id)


def is_group(chat: int | str) -> bool:
    """Groups, supergroups and channels have negative ids (or an @username)."""
    return isinstance(chat, str) or chat < 0


def cosmetic_may_go(windows: list[Window], now: float) -> bool:
    """Cosmetic traffic goes only now, and only while every window stays at most half used."""
    return all(w.slot(now) <= now and w.used(now) < w.limit * COSMETIC_SHARE for w in windows)


def retry_seconds(err: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB warns that the type becomes a timedelta in v23
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = err.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class FloodLimiter(BaseRateLimiter[Priority]):
    """PTB's rate-limiter hook with Telegram's three windows and two priorities (see the module)."""

    def __init__(self, limits: FloodLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self._clock = clock
        margin = limits.margin_seconds
        second = 1.0 + margin
        # The second's budget, and a short window that paces it: a second's worth of requests
        # released at once would reach Telegram unevenly and spill into the next second's count.
        self._second = Window(limits.global_per_second, second)
        self._pacing = Window(limits.global_burst, second * limits.global_burst / limits.global_per_second)
        self._global = [self._second, self._pacing]
        self._global_lock = asyncio.Lock()
        self._global_blocked_until = 0.0
        self._chats: dict[int | str, _Chat] = {}
        self._swept_at = 0.0
        self.thinned = 0  # cosmetic requests dropped so far
        self.flood_waits = 0  # 429s Telegram still sent

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Priority | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if endpoint not in COUNTED:
            return await callback(*args, **kwargs)
        priority = rate_limit_args or Priority.ANSWER
        chat = self._chat(chat_of(data))
        if priority is COSMETIC and chat is not None and chat.lock.locked():
            self._thin()  # answers for this chat are on their way: they say more
        async with chat.lock if chat is not None else contextlib.nullcontext():
            for attempt in range(self.limits.retries + 1):
                await self._wait_turn(chat, priority)
                try:
                    return await callback(*args, **kwargs)
                except RetryAfter as err:
                    self._blocked(chat, retry_seconds(err))
                    if priority is COSMETIC or attempt == self.limits.retries:
                        raise
        raise AssertionError("unreachable")

    async def _wait_turn(self, chat: _Chat | None, priority: Priority) -> None:
        """Sleep until the request may go, its place taken in every window. Cosmetic traffic goes
        only while no answer is in line, and its chat and the bot's second have room to spare
        (else `Thinned`); then it waits for the pacing alone."""
        windows = chat.windows() if chat is not None else []
        if priority is COSMETIC:
            now = self._clock()
            blocked = max(self._global_blocked_until, chat.blocked_until if chat else 0.0)
            if (
                now < blocked
                or self._global_lock.locked()
                or not cosmetic_may_go([*windows, self._second], now)
            ):
                self._thin()
        elif chat is not None:
            await self._sleep_until(max(chat.blocked_until, *(w.slot(self._clock()) for w in windows)))
        async with self._global_lock:  # one queue for the whole bot, in order of arrival
            slot = self._global_slot()
            await self._sleep_until(slot)
            # A wake-up a moment late keeps its planned slot, so small delays do not add up; a long
            # one does not, so a stalled loop never releases a catch-up burst.
            self._take([*windows, *self._global], max(slot, self._clock() - CATCH_UP_SECONDS))

    def _global_slot(self) -> float:
        now = self._clock()
        return max(self._global_blocked_until, *(window.slot(now) for window in self._global))

    def _take(self, windows: list[Window], now: float) -> None:
        for window in windows:
            window.take(now)

    async def _sleep_until(self, moment: float) -> None:
        delay = moment - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)

    def _blocked(self, chat: _Chat | None, seconds: float) -> None:
        self.flood_waits += 1
        until = self._clock() + seconds
        if chat is None:
            self._global_blocked_until = max(self._global_blocked_until, until)
        else:
            chat.blocked_until = max(chat.blocked_until, until)
        log.info("Telegram asked to wait %.0fs (%s)", seconds, "bot" if chat is None else "one chat")

    def _thin(self) -> NoReturn:
        self.thinned += 1
        raise Thinned

    def _chat(self, chat_id: int | str | None) -> _Chat | None:
        if chat_id is None:
            return None
        self._sweep()
        chat = self._chats.get(chat_id)
        if chat is None:
            limits = self.limits
            margin = limits.margin_seconds
            window = Window(limits.chat_burst, limits.chat_burst / limits.chat_per_second + margin)
            group = Window(limits.group_per_minute, 60.0 + margin) if is_group(chat_id) else None
            chat = self._chats[chat_id] = _Chat(window, group)
        return chat

    def _sweep(self) -> None:
        """Forget the windows of chats that have been quiet for a whole window (memory stays flat)."""
        now = self._clock()
        if now - self._swept_at < IDLE_SWEEP_SECONDS:
            return
        self._swept_at = now
        self._chats = {key: chat for key, chat in self._chats.items() if not chat.idle(now)}
