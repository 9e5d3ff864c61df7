"""Outgoing traffic within Telegram's flood limits, answers first.

Every Bot API request passes through PTB's rate-limiter hook, so this is the one place that paces
them. Requests that Telegram counts (sends, edits, deletions, chat actions, reactions) are planned
against three sliding windows: the whole bot (about 30 a second), the chat (about 1 a second, with
short bursts) and, for groups and channels, the chat's minute (20). A chat's requests go out one at
a time, in order, so its window holds the times they really left.

Requests come in two priorities. An answer waits for its turn, however long that is; cosmetic
traffic (typing, "still working", progress edits, set-up notices) goes only when it would not
wait and would leave half of every window free for answers, and is otherwise dropped with
`Thinned`. Answers wait in one queue for the whole bot, ranked (`rank`): new messages (a chat
waiting for its first answer) before edits of messages already shown, in order of arrival within a
rank. A 429 that still happens blocks that chat for its `retry_after`, and slows the bot's pace and
that chat's by `slowdown_factor` for `slowdown_seconds`, so 429s under jitter die out.

A caller that builds its request from a state that keeps changing (a live reply) may `reserve` its
slot first and build the request once it has one: what waited is the chat's latest state, sent once.

Several replicas share Telegram's budget through Redis: given a client, the windows and the
"blocked until" of a 429 live there (sorted sets of planned send times under `prefix`), and one
Lua script plans each request atomically on Redis's own clock (see `RESERVE`). Without a client,
or while Redis does not answer, each process keeps its own windows.

Why one module of this length: the local windows and the shared ones in Redis plan a request the
same way; the Lua script must match `Window.slot` rule for rule, so they stay side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import enum
import heapq
import itertools
import logging
import math
import time
import uuid
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

from bot.core.metrics import TELEGRAM_429, TELEGRAM_RETRIES, TELEGRAM_THINNED

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
REDIS_TIMEOUT_SECONDS = 1.0  # a reservation slower than this counts as Redis failing
REDIS_RETRY_SECONDS = 5.0  # after a failure, requests use the local windows this long before Redis again
REDIS_LOG_SECONDS = 60.0  # a failing Redis is logged at most once a minute
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class Priority(enum.Enum):
    ANSWER = "answer"
    LATER = "later"  # an answer that is not the chat's first word (a preview after a reply): ranks with edits
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
    slowdown_factor: float = 1.0  # after a 429, windows are this much longer ...
    slowdown_seconds: float = 0.0  # ... for this long (the bot's, and the refused chat's)


@dataclass
class Window:
    """At most `limit` requests in any `seconds`. Pure: the caller passes the clock."""

    limit: int
    seconds: float
    times: deque[float] = field(default_factory=deque)

    def slot(self, now: float, stretch: float = 1.0) -> float:
        """The earliest moment from `now` at which one more request keeps the window's promise
        (with `stretch`, the promise of a window that many times longer)."""
        self._forget(now, self.seconds * stretch)
        if len(self.times) < self.limit:
            return now
        return max(now, self.times[-self.limit] + self.seconds * stretch)

    def used(self, now: float) -> int:
        self._forget(now)
        return len(self.times)

    def take(self, at: float) -> None:
        self.times.append(at)

    def _forget(self, now: float, seconds: float | None = None) -> None:
        while self.times and self.times[0] <= now - (seconds or self.seconds):
            self.times.popleft()


@dataclass
class _Chat:
    window: Window
    group: Window | None  # the per-minute window of a group or channel
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    blocked_until: float = 0.0  # after a 429 for this chat
    slow_until: float = 0.0  # after a 429, this chat's windows are stretched until then

    def windows(self) -> list[Window]:
        return [self.window] if self.group is None else [self.window, self.group]

    def idle(self, now: float) -> bool:
        return (
            not self.lock.locked()
            and now >= max(self.blocked_until, self.slow_until)
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


def rank(endpoint: str, priority: Priority = Priority.ANSWER) -> int:
    """An answer's place in the bot's queue (pure): a new message (a chat waiting for its answer)
    before an edit or deletion of one already shown, or a message that follows the chat's answer
    (`LATER`): the chat has seen something already."""
    return 0 if endpoint.startswith("send") and priority is not Priority.LATER else 1


class Turnstile:
    """One request at a time through the bot's queue: the lowest rank first, then in order of arrival."""

    def __init__(self) -> None:
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._busy = False
        self._arrivals = itertools.count()

    def locked(self) -> bool:
        return self._busy

    @contextlib.asynccontextmanager
    async def turn(self, place: int) -> AsyncIterator[None]:
        if self._busy:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (place, next(self._arrivals), future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():  # handed the turn as it was cancelled
                    self._hand_on()
                raise
        self._busy = True
        try:
            yield
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                future.set_result(None)  # stays busy: the turn passes to that waiter
                return
        self._busy = False


@dataclass
class _Held:
    """A slot reserved for one chat (`FloodLimiter.reserve`), not yet used by a request."""

    chat_id: int | str | None
    fresh: bool = True


_HELD: contextvars.ContextVar[_Held | None] = contextvars.ContextVar("flood_held", default=None)


def cosmetic_may_go(windows: list[Window], now: float) -> bool:
    """Cosmetic traffic goes only now, and only while every window stays at most half used."""
    return all(w.slot(now) <= now and w.used(now) < w.limit * COSMETIC_SHARE for w in windows)


def retry_seconds(err: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB warns that the type becomes a timedelta in v23
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = err.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


# One request's plan, atomic on Redis's clock (seconds since the epoch from TIME, so replicas on
# different hosts agree). Each window is a sorted set of planned send times (unique members); what
# left it is forgotten, and a key vanishes when its last entry has left (PEXPIRE). The slot of a
# window is Window.slot's: now while it holds fewer than its limit, else the limit-th last entry plus
# its length; every moment from the slot on keeps the window's promise, so the latest slot suits all.
# The bot's windows are planned for at once; a chat whose own windows (or 429) hold it back past the
# bot's slot gets 'wait' and asks again then, so a slow chat never reserves the bot's future seconds
# (a paced window reserved ahead would stall every other chat).
#   KEYS: the bot's "blocked until", [the chat's], then one sorted set per window
#   ARGV: 'answer' | 'cosmetic', a unique member, how many blocked keys, how many of the windows are
#         the bot's (they come first), then limit, seconds and cosmetic share (0: none) per window
#   -> {'go', delay}: sleep delay, then send (reserved in every window);
#      {'wait', delay}: sleep delay, then ask again (nothing reserved); {'thin', '0'}: drop it
RESERVE = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local cosmetic = ARGV[1] == 'cosmetic'
local nblocked = tonumber(ARGV[3])
local nbot = tonumber(ARGV[4])
local function fmt(x) return string.format('%.6f', x) end
local bot_slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local chat_slot = now
if nblocked > 1 then chat_slot = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0')) end
if cosmetic and (bot_slot > now or chat_slot > now) then return {'thin', '0'} end
local windows = {}
for i = 1, #KEYS - nblocked do
  local key = KEYS[nblocked + i]
  local limit = tonumber(ARGV[3 + 3 * i - 1])
  local seconds = tonumber(ARGV[3 + 3 * i])
  local share = tonumber(ARGV[3 + 3 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - seconds))
  local used = redis.call('ZCARD', key)
  local slot = now
  if used >= limit then
    local kth = redis.call('ZRANGE', key, -limit, -limit, 'WITHSCORES')
    slot = math.max(now, tonumber(kth[2]) + seconds)
  end
  if cosmetic then
    -- something already in line (planned after now), or the window at least `share` used
    if redis.call('ZCOUNT', key, '(' .. fmt(now), '+inf') > 0 then return {'thin', '0'} end
    if share > 0 and used >= limit * share then return {'thin', '0'} end
  end
  if i <= nbot then bot_slot = math.max(bot_slot, slot) else chat_slot = math.max(chat_slot, slot) end
  windows[i] = {key, seconds}
end
if chat_slot > bot_slot then return {'wait', fmt(chat_slot - now)} end
for _, window in ipairs(windows) do
  local key, seconds = window[1], window[2]
  redis.call('ZADD', key, fmt(bot_slot), ARGV[2])
  local keep = math.ceil((bot_slot + seconds - now) * 1000) + 1
  if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
end
return {'go', fmt(bot_slot - now)}
"""

# A 429: the key (the bot's or a chat's) holds "blocked until" on Redis's clock, for retry_after.
#   KEYS: the blocked key; ARGV: seconds
BLOCK = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local seconds = tonumber(ARGV[1])
local till = now + seconds
if till > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%.6f', till), 'PX', math.max(1, math.ceil(seconds * 1000)))
end
return 1
"""


@dataclass(frozen=True)
class _Shape:
    """A window as the reservation script sees it."""

    limit: int
    seconds: float
    share: float  # cosmetic traffic goes while the window is less than this share used; 0: no such check

    def args(self) -> list[str]:
        return [str(self.limit), repr(self.seconds), repr(self.share)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FloodLimiter(BaseRateLimiter[Priority]):
    """PTB's rate-limiter hook with Telegram's three windows and two priorities (see the module).

    With `redis`, the windows and 429 blocks are shared by every limiter on that Redis under
    `prefix` (e.g. "nvb:123:flood:"); each limiter still keeps a chat's requests in order."""

    def __init__(
        self,
        limits: FloodLimits,
        clock: Callable[[], float] = time.monotonic,
        *,
        redis: Redis | None = None,
        prefix: str = "",
    ):
        self.limits = limits
        self._clock = clock
        margin = limits.margin_seconds
        second = 1.0 + margin
        # The second's budget, and a short window that paces it: a second's worth of requests
        # released at once would reach Telegram unevenly and spill into the next second's count.
        self._second = Window(limits.global_per_second, second)
        self._pacing = Window(limits.global_burst, second * limits.global_burst / limits.global_per_second)
        self._global = [self._second, self._pacing]
        self._queue = Turnstile()  # the bot's one queue of answers, ranked
        self._global_blocked_until = 0.0
        self._slow_until = 0.0  # after a 429, the bot's windows are stretched until then
        self._chats: dict[int | str, _Chat] = {}
        self._swept_at = 0.0
        self.thinned = 0  # cosmetic requests dropped so far
        self.flood_waits = 0  # 429s Telegram still sent
        # Shared windows (see RESERVE): their shapes match the local ones.
        self._prefix = prefix
        self._bot_shapes = [
            _Shape(self._second.limit, self._second.seconds, COSMETIC_SHARE),
            _Shape(self._pacing.limit, self._pacing.seconds, 0.0),  # cosmetic waits for the pacing alone
        ]
        self._chat_shape = _Shape(
            limits.chat_burst, limits.chat_burst / limits.chat_per_second + margin, COSMETIC_SHARE
        )
        self._group_shape = _Shape(limits.group_per_minute, 60.0 + margin, COSMETIC_SHARE)
        self.redis = redis  # closed with the limiter
        self._reserve: AsyncScript | None = None
        self._block: AsyncScript | None = None
        if redis is not None:
            self._reserve = redis.register_script(RESERVE)
            self._block = redis.register_script(BLOCK)
        self._reserve_queue = Turnstile()  # this process's reservations on Redis, ranked
        self._member_prefix = uuid.uuid4().hex[:12]  # this limiter's; a counter makes each unique
        self._members = itertools.count()
        self._redis_down_until = -math.inf  # after a failure, the local windows until then
        self._redis_logged_at = -math.inf

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

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
        chat_id = chat_of(data)
        chat = self._chat(chat_id)
        held = _HELD.get()
        mine = held is not None and held.chat_id == chat_id  # inside `reserve`: its lock is held
        if priority is COSMETIC and chat is not None and chat.lock.locked() and not mine:
            self._thin()  # answers for this chat are on their way: they say more
        place = rank(endpoint, priority)
        async with chat.lock if chat is not None and not mine else contextlib.nullcontext():
            for attempt in range(self.limits.retries + 1):
                if held is not None and mine and held.fresh:
                    held.fresh = False  # the slot `reserve` waited for
                else:
                    await self._wait(chat_id, chat, priority, place)
                if attempt:
                    TELEGRAM_RETRIES.labels("flood").inc()
                try:
                    return await callback(*args, **kwargs)
                except RetryAfter as err:
                    await self._blocked(chat_id, chat, retry_seconds(err))
                    if priority is COSMETIC or attempt == self.limits.retries:
                        raise
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def reserve(self, chat_id: int | str | None, priority: Priority, place: int) -> AsyncIterator[None]:
        """Wait for a slot for one request to `chat_id`, then let the caller build it: the first
        counted request to that chat inside goes at once (later ones wait as usual). Cosmetic: no
        wait, or `Thinned`."""
        chat = self._chat(chat_id)
        if priority is COSMETIC and chat is not None and chat.lock.locked():
            self._thin()
        async with chat.lock if chat is not None else contextlib.nullcontext():
            await self._wait(chat_id, chat, priority, place)
            token = _HELD.set(_Held(chat_id))
            try:
                yield
            finally:
                _HELD.reset(token)

    async def _wait(
        self, chat_id: int | str | None, chat: _Chat | None, priority: Priority, place: int
    ) -> None:
        if not await self._wait_shared(chat_id, chat, priority, place):
            await self._wait_turn(chat, priority, place)

    async def _wait_turn(self, chat: _Chat | None, priority: Priority, place: int) -> None:
        """Sleep until the request may go, its place taken in every window. Cosmetic traffic goes
        only while no answer is in line, and its chat and the bot's second have room to spare
        (else `Thinned`); then it waits for the pacing alone."""
        windows = chat.windows() if chat is not None else []
        if priority is COSMETIC:
            now = self._clock()
            blocked = max(self._global_blocked_until, chat.blocked_until if chat else 0.0)
            if now < blocked or self._queue.locked() or not cosmetic_may_go([*windows, self._second], now):
                self._thin()
        elif chat is not None:
            stretch = self._stretch(chat.slow_until)
            await self._sleep_until(
                max(chat.blocked_until, *(w.slot(self._clock(), stretch) for w in windows))
            )
        async with self._queue.turn(place):  # one queue for the whole bot: new messages first
            slot = self._global_slot()
            await self._sleep_until(slot)
            # A wake-up a moment late keeps its planned slot, so small delays do not add up; a long
            # one does not, so a stalled loop never releases a catch-up burst.
            self._take([*windows, *self._global], max(slot, self._clock() - CATCH_UP_SECONDS))

    async def _wait_shared(
        self, chat_id: int | str | None, chat: _Chat | None, priority: Priority, place: int
    ) -> bool:
        """Like `_wait_turn`, with the windows on Redis: True once the request may go; False if
        Redis is not in use or failed (then the local windows decide)."""
        if self._reserve is None or self._clock() < self._redis_down_until:
            return False
        # This process's own 429s count even if Redis missed them.
        blocked = max(self._global_blocked_until, chat.blocked_until if chat is not None else 0.0)
        if priority is COSMETIC and self._clock() < blocked:
            self._thin()
        await self._sleep_until(blocked)
        keys, args = self._plan(chat_id, chat)
        args[0] = priority.value
        while True:
            try:
                async with self._reserve_queue.turn(place):
                    if self._clock() < self._redis_down_until:  # failed while this one waited its turn
                        return False
                    args[1] = f"{self._member_prefix}:{next(self._members)}"
                    async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                        verdict, delay = await self._reserve(keys=keys, args=args)
            except REDIS_ERRORS as err:
                self._redis_failed(err)
                return False
            verdict, seconds = _text(verdict), float(_text(delay))
            if verdict == "thin":
                self._thin()
            if seconds > 0:
                await asyncio.sleep(seconds)
            if verdict == "go":
                return True

    def _plan(self, chat_id: int | str | None, chat: _Chat | None) -> tuple[list[str], list[str]]:
        """The reservation script's keys and arguments for a request to `chat_id` (its first two
        arguments, priority and member, are filled in per call); windows stretched after a 429."""
        prefix = self._prefix
        blocked = [f"{prefix}blocked"]
        windows = [f"{prefix}second", f"{prefix}pacing"]
        stretch = self._stretch(self._slow_until)
        shapes = [replace(shape, seconds=shape.seconds * stretch) for shape in self._bot_shapes]
        if chat_id is not None:
            chat_stretch = self._stretch(chat.slow_until if chat is not None else 0.0)
            blocked.append(f"{prefix}blocked:{chat_id}")
            windows.append(f"{prefix}chat:{chat_id}")
            shapes.append(replace(self._chat_shape, seconds=self._chat_shape.seconds * chat_stretch))
            if is_group(chat_id):
                windows.append(f"{prefix}group:{chat_id}")
                shapes.append(replace(self._group_shape, seconds=self._group_shape.seconds * chat_stretch))
        args = ["", "", str(len(blocked)), str(len(self._bot_shapes))]
        for shape in shapes:
            args += shape.args()
        return [*blocked, *windows], args

    def _redis_failed(self, err: BaseException) -> None:
        now = self._clock()
        self._redis_down_until = now + REDIS_RETRY_SECONDS
        if now - self._redis_logged_at >= REDIS_LOG_SECONDS:
            self._redis_logged_at = now
            log.warning(
                "Redis failed to plan a Telegram request (%s); this process keeps its own flood windows",
                type(err).__name__,
            )

    def _global_slot(self) -> float:
        now = self._clock()
        stretch = self._stretch(self._slow_until)
        return max(self._global_blocked_until, *(window.slot(now, stretch) for window in self._global))

    def _stretch(self, slow_until: float) -> float:
        """How much longer the windows are now: `slowdown_factor` until `slow_until`, then as set."""
        return self.limits.slowdown_factor if self._clock() < slow_until else 1.0

    def _take(self, windows: list[Window], now: float) -> None:
        for window in windows:
            window.take(now)

    async def _sleep_until(self, moment: float) -> None:
        delay = moment - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _blocked(self, chat_id: int | str | None, chat: _Chat | None, seconds: float) -> None:
        self.flood_waits += 1
        TELEGRAM_429.inc()
        until = self._clock() + seconds
        slow = until + self.limits.slowdown_seconds  # then the pace returns to the settings'
        self._slow_until = max(self._slow_until, slow)
        if chat is None:
            self._global_blocked_until = max(self._global_blocked_until, until)
        else:
            chat.blocked_until = max(chat.blocked_until, until)
            chat.slow_until = max(chat.slow_until, slow)
        log.info("Telegram asked to wait %.0fs (%s)", seconds, "bot" if chat is None else "one chat")
        if self._block is not None and self._clock() >= self._redis_down_until:
            key = f"{self._prefix}blocked" if chat_id is None else f"{self._prefix}blocked:{chat_id}"
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                    await self._block(keys=[key], args=[repr(seconds)])
            except REDIS_ERRORS as err:
                self._redis_failed(err)

    def _thin(self) -> NoReturn:
        self.thinned += 1
        TELEGRAM_THINNED.inc()
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
