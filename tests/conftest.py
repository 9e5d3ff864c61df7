"""Shared fixtures: the NemoVideo emulator, a client on it, and stores on fakeredis or a real Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from redis.asyncio import Redis

from bot.chat.projects import Projects
from bot.nemo.client import Attribution, NemoClient, RetryPolicy
from bot.state.base import Retention
from bot.state.store import Store
from tests.emulator import NemoEmulator
from tests.fake_telegram import FakeTelegram
from tests.harness import Harness

MEDIA = Path(__file__).parent / "media"
ATTRIBUTION = Attribution("maker-online-free", "1.0.0", "unknown")
RETENTION = Retention(chat=3600, update=3600, refusal=3600, finished_render=3600, usage=3600)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A real redis-server on a free loopback port, in a temporary folder; restartable."""

    def __init__(self, folder: Path, *, appendonly: bool = True):
        self.folder = folder
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "",
        ]
        args += ["--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


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
