"""The FloodLimiter shared through Redis: several limiters (replicas) on one Redis keep Telegram's
promises together, on fakeredis and on a real redis-server started by the tests.

Each limiter stands for a replica: its own Redis client, its own per-chat locks, one shared prefix.
Their callbacks record into one Recorder, so the merged send times are what Telegram would see.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis

import bot.telegram.flood
from bot.core.metrics import REGISTRY
from bot.telegram.flood import COSMETIC, FloodLimiter, FloodLimits, Thinned
from loopback.servers import RedisServer
from tests.test_flood import Recorder, send

# Small limits keep the tests short; the promises are the same as with Telegram's.
LIMITS = FloodLimits(
    global_per_second=100,
    global_burst=1,
    chat_burst=3,
    chat_per_second=5,  # a chat's window: 3 in any 0.6 s
    group_per_minute=5,
    margin_seconds=0,
    retries=3,
)
# A send leaves at its planned moment plus the event loop's wake-up lateness and half a Redis round
# trip (a few milliseconds here; 20 ms leaves room for a busy test machine). Lateness can bring two
# planned moments closer by at most that much, so a window's promise is checked on intervals this
# much shorter: for the bot's second at 100/s that is the same as allowing 2 extra in any 1.0 s.
JITTER = 0.02


class Backend:
    """One Redis that several limiters share: fakeredis (one FakeServer) or a real redis-server."""

    def __init__(self, server: RedisServer | None):
        self.server = server
        self.fake = fakeredis.FakeServer() if server is None else None
        self.prefix = f"nvb:test-{uuid.uuid4().hex[:8]}:flood:"
        self.clients: list[Redis] = []

    def client(self) -> Redis:
        if self.server is not None:
            redis = Redis.from_url(self.server.url, decode_responses=True, socket_timeout=0.5)
        else:
            redis = fakeredis.FakeAsyncRedis(server=self.fake, decode_responses=True)
        self.clients.append(redis)
        return redis

    def limiter(self, limits: FloodLimits = LIMITS) -> FloodLimiter:
        return FloodLimiter(limits, redis=self.client(), prefix=self.prefix)

    def down(self) -> None:
        if self.server is not None:
            self.server.stop()
        else:
            assert self.fake is not None
            self.fake.connected = False

    def up(self) -> None:
        if self.server is not None:
            self.server.start()
        else:
            assert self.fake is not None
            self.fake.connected = True


@pytest.fixture(params=["fakeredis", "redis-server"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    server = None
    if request.param == "redis-server":
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed: the real-Redis tier needs it")
        server = RedisServer(tmp_path, appendonly=False)
        server.start()
    shared = Backend(server)
    try:
        yield shared
    finally:
        for redis in shared.clients:
            await redis.aclose()
        if server is not None:
            server.stop()


def most_in(times: Iterable[float], seconds: float) -> int:
    """The most sends in any half-open interval [t, t + seconds)."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def until(condition: Any, seconds: float = 3.0) -> None:
    """Poll `condition` (a coroutine function or function returning bool), at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_most_in_counts_a_sliding_interval() -> None:
    assert most_in([0.0, 0.5, 0.99, 1.0, 1.2], 1.0) == 4  # [0.5, 1.5)
    assert most_in([0.0, 0.5, 0.99, 1.0, 1.2], 0.5) == 3  # [0.99, 1.49)
    assert most_in([], 1.0) == 0


async def test_three_limiters_on_one_redis_keep_every_window_together(backend: Backend) -> None:
    limiters, recorder = [backend.limiter() for _ in range(3)], Recorder()
    private, groups = list(range(1, 31)), list(range(-10, 0))
    started = time.monotonic()
    answers = [
        asyncio.create_task(send(limiter, recorder, chat))
        for limiter in limiters
        for chat in private + groups
        for _ in range(2)
    ]  # 6 answers per chat, 240 in all: 2.3 s of the bot's budget at 100/s
    group_quota = LIMITS.group_per_minute * len(groups)

    def sent_to(chats: list[int]) -> int:
        return sum(1 for _, chat, _ in recorder.sent if chat in chats)

    await until(lambda: sent_to(private) == 6 * len(private) and sent_to(groups) >= group_quota, 4.5)
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.2)  # a group's sixth answer must wait for its minute, not leak out now
    pending = [task for task in answers if not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*answers, return_exceptions=True)

    times = [t for _, _, t in recorder.sent]
    assert most_in(times, 1.0 - JITTER) <= LIMITS.global_per_second  # the bot's second, all replicas
    assert most_in(times, 0.1 - JITTER) <= LIMITS.global_per_second // 10  # and paced, not in bursts
    chat_window = LIMITS.chat_burst / LIMITS.chat_per_second
    for chat in private + groups:
        chat_times = [t for _, c, t in recorder.sent if c == chat]
        assert most_in(chat_times, chat_window - JITTER) <= LIMITS.chat_burst, chat
    for chat in groups:  # the test is far shorter than a minute: no group got more than its minute's 5
        assert sum(1 for _, c, _ in recorder.sent if c == chat) == LIMITS.group_per_minute, chat
    assert len(pending) == len(groups)  # each group's sixth answer, waiting for the minute
    assert elapsed < (len(times) / LIMITS.global_per_second) * 1.5  # the budget is used, not wasted


async def test_a_429_seen_by_one_limiter_holds_that_chat_on_every_limiter(backend: Backend) -> None:
    first, second = backend.limiter(), backend.limiter()
    recorder, refused = Recorder(), Recorder()
    refused.refuse = [0.3]
    waits_before = metric("nvb_telegram_429_total")
    retries_before = metric("nvb_telegram_retries_total", reason="flood")
    started = time.monotonic()
    retried = asyncio.create_task(send(first, refused, 1))
    await until(lambda: backend.clients[0].exists(f"{backend.prefix}blocked:1"))
    asked = time.monotonic()
    same, other = await asyncio.gather(send(second, recorder, 1), send(second, recorder, 2))
    assert (same, other, await retried) == (True, True, True)
    by_chat = {chat: t for _, chat, t in recorder.sent}
    assert by_chat[1] - started >= 0.3  # the other replica waited for chat 1 too
    assert by_chat[2] - asked < 0.1  # but not for chat 2
    assert refused.sent[0][2] - started >= 0.3  # and the answer refused was sent again after the wait
    assert metric("nvb_telegram_429_total") == waits_before + 1
    assert metric("nvb_telegram_retries_total", reason="flood") == retries_before + 1


async def test_cosmetic_traffic_is_thinned_by_what_other_limiters_sent(backend: Backend) -> None:
    limits = replace(LIMITS, global_per_second=20, global_burst=20, chat_burst=4)  # no pacing here
    answering, typing = backend.limiter(limits), backend.limiter(limits)
    recorder = Recorder()
    thinned_before = metric("nvb_telegram_thinned_total")

    async def action(chat: int) -> Any:
        try:
            return await send(typing, recorder, chat, endpoint="sendChatAction", priority=COSMETIC)
        except Thinned as err:
            return err

    await asyncio.gather(*(send(answering, recorder, 7) for _ in range(2)))  # chat 7: half its window
    assert isinstance(await action(7), Thinned)
    assert await action(8) is True  # another chat, and the bot's second is 3 of 20 used
    await asyncio.gather(*(send(answering, recorder, chat) for chat in range(10, 17)))  # 10 of 20 now
    assert isinstance(await action(9), Thinned)
    assert typing.thinned == 2 and answering.thinned == 0
    assert metric("nvb_telegram_thinned_total") == thinned_before + 2


async def test_cosmetic_traffic_is_thinned_while_another_limiter_has_answers_in_line(
    backend: Backend,
) -> None:
    answering, typing = backend.limiter(), backend.limiter()
    recorder = Recorder()
    queued = [asyncio.create_task(send(answering, recorder, chat)) for chat in range(1, 21)]  # 0.2 s
    await until(lambda: len(recorder.sent) >= 1)
    with pytest.raises(Thinned):
        await send(typing, recorder, 99, endpoint="sendChatAction", priority=COSMETIC)
    assert await asyncio.gather(*queued) == [True] * 20


async def test_with_redis_down_answers_go_on_local_windows_and_redis_is_used_again_when_back(
    backend: Backend, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot.telegram.flood, "REDIS_RETRY_SECONDS", 0.3)
    limiter, recorder = backend.limiter(replace(LIMITS, chat_per_second=20)), Recorder()
    backend.down()
    with caplog.at_level(logging.WARNING, logger="bot.telegram.flood"):
        results = await asyncio.gather(*(send(limiter, recorder, chat) for chat in (1, 1, 1, 1, 2)))
    assert results == [True] * 5
    times = [t for _, chat, t in recorder.sent if chat == 1]
    assert times[3] - times[0] >= 3 / 20 - 0.005  # still paced, by this process's own windows
    assert len([r for r in caplog.records if "Redis" in r.getMessage()]) == 1  # logged once

    backend.up()
    await asyncio.sleep(0.35)  # past REDIS_RETRY_SECONDS: the next request tries Redis again
    redis = backend.client()
    await until(redis.ping)
    assert await send(limiter, recorder, 3) is True
    assert await redis.exists(f"{backend.prefix}chat:3")


async def test_a_redis_that_does_not_answer_costs_one_timeout_then_answers_go_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot.telegram.flood, "REDIS_TIMEOUT_SECONDS", 0.3)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # reads every command, answers none
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    try:
        limiter, recorder = FloodLimiter(LIMITS, redis=redis, prefix="x:"), Recorder()
        started = time.monotonic()
        results = await asyncio.gather(*(send(limiter, recorder, chat) for chat in range(1, 11)))
        assert results == [True] * 10
        # one reservation timed out; the rest went by the local windows at once (10 ms apart)
        assert time.monotonic() - started < 0.3 + 10 / LIMITS.global_per_second + 0.2
    finally:
        await redis.aclose(close_connection_pool=True)
        server.close()
        await server.wait_closed()


async def test_keys_of_idle_windows_expire(backend: Backend) -> None:
    limiter, recorder = backend.limiter(), Recorder()
    assert await send(limiter, recorder, -5) is True
    redis = backend.clients[0]
    lengths = {"second": 1.0, "pacing": 0.01, "chat:-5": 0.6, "group:-5": 60.0}  # each key lives as
    for name, seconds in lengths.items():  # long as its window from the planned send, then vanishes
        pttl = await redis.pttl(f"{backend.prefix}{name}")
        assert seconds * 1000 - 100 < pttl <= math.ceil(seconds * 1000) + 1, name
    await asyncio.sleep(0.7)
    assert not await redis.exists(*(f"{backend.prefix}{name}" for name in ("pacing", "chat:-5")))
