"""Run the real `python -m bot` as a child process against the fake Bot API and the emulator."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from loopback.emulator import NemoEmulator
from loopback.fake_telegram import FakeTelegram

FAST = {
    "RENDER_POLL_SECONDS": "0.2",
    "RENDER_LEASE_SECONDS": "2",
    "JOB_SCHEDULE_SECONDS": "0.05",
    "JOB_SWEEP_SECONDS": "0.5",
    "STILL_WORKING_SECONDS": "5",
    "TYPING_INTERVAL_SECONDS": "1",
    "ALBUM_WAIT_SECONDS": "0.3",
    "RATE_LIMIT_WAIT_SECONDS": "0.1",
    "DROPPED_TURN_POLL_SECONDS": "0.2",
    "SSE_IDLE_SECONDS": "5",
    "HTTP_TIMEOUT_SECONDS": "5",
    "HTTP_RETRY_BASE_SECONDS": "0.05",
    "TELEGRAM_CHAT_PER_SECOND": "100",
    "TELEGRAM_LIMIT_MARGIN_SECONDS": "0.01",
    "TELEGRAM_GROUP_PER_MINUTE": "1000",
    "REPLICA_LEASE_SECONDS": "2",
    "INBOX_BLOCK_SECONDS": "0.2",
    "LIVE_EDIT_SECONDS": "0.2",
    "LIVE_GROUP_EDIT_SECONDS": "0.5",
}


class BotProcess:
    """The bot as a user's operator runs it; output is collected for secret and error checks."""

    def __init__(self, fake: FakeTelegram, emulator: NemoEmulator, workdir: Path, **settings: str):
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "NEMO_", "REDIS_"))},
            "TELEGRAM_BOT_TOKEN": fake.token,
            "TELEGRAM_BASE_URL": fake.base_url,
            "TELEGRAM_BASE_FILE_URL": fake.base_file_url,
            "NEMO_API_BASE": emulator.base_url,
            "PYTHONUNBUFFERED": "1",
            **FAST,
            **settings,
        }
        self.workdir = workdir
        self.args = ["-m", "bot"]  # what the interpreter runs (a benchmark may run another bot)
        self.process: asyncio.subprocess.Process | None = None
        self.output = bytearray()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.args,
            cwd=self.workdir,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process and self.process.stdout
        while chunk := await self.process.stdout.read(65536):
            self.output += chunk

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:  # noqa: ASYNC109
        assert self.process
        if self.process.returncode is None:
            self.process.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        if self._reader:
            await asyncio.wait_for(self._reader, 5)
        return code

    @property
    def log(self) -> str:
        return self.output.decode(errors="replace")
