"""Shared fixtures: the NemoVideo emulator, a client on it, and stores on fakeredis or a real Redis."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from redis.asyncio import Redis

from bot.chat.projects import Projects
from bot.nemo.client import Attribution, NemoClient, RetryPolicy
from bot.state.store import Store
from loopback.emulator import NemoEmulator
from loopback.fake_telegram import FakeTelegram
from loopback.servers import MEDIA, RETENTION, RedisServer
from tests.harness import Harness

ATTRIBUTION = Attribution("maker-online-free", "1.0.0", "unknown")


@pytest.fixture
async def emulator() -> AsyncIterator[NemoEmulator]:
    emu = NemoEmulator(render_file=MEDIA / "clip.mp4")
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
async def client(emulator: NemoEmulator) -> AsyncIterator[NemoClient]:
    async with httpx.AsyncClient(base_url=emulator.base_url, timeout=5.0) as http:
        yield NemoClient(http, ATTRIBUTION, idle_timeout=1.0, retry=RetryPolicy(2, 0.01))


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    yield Store(redis, "nvb:test", RETENTION)
    await redis.aclose()


@pytest.fixture
async def projects(client: NemoClient, store: Store) -> Projects:
    async def no_wait(_seconds: float) -> None:
        return None

    return Projects(client, store, operator_token=None, rate_limit_wait=0, sleep=no_wait)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the real-Redis tier needs it")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def real_store(redis_server: RedisServer) -> AsyncIterator[Store]:
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    yield Store(redis, "nvb:test", RETENTION)
    await redis.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(fake: FakeTelegram, emulator: NemoEmulator) -> AsyncIterator[MakeHarness]:
    """Start Harnesses with given settings; every one is stopped after the test."""
    started: list[Harness] = []

    async def make(**settings: Any) -> Harness:
        harness = Harness(fake, emulator, **settings)
        await harness.start()
        started.append(harness)
        return harness

    yield make
    for harness in started:
        await harness.stop()
