"""What every benchmark shares: the loopback stack (redis-server, the NemoVideo emulator, the fake
Bot API, the real `python -m bot`), process readings from /proc, and the table it prints.

Benchmarks measure; they never assert a timing. Each prints rows a person can read and compare with
the baseline printed beside them in the same run.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from loopback.bot_process import FAST, BotProcess
from loopback.emulator import NemoEmulator
from loopback.fake_telegram import FakeTelegram
from loopback.servers import MEDIA, RedisServer

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """One line naming the machine the figures come from."""
    memory_gb = os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30
    return f"{platform.machine()}, {os.cpu_count()} cores, {memory_gb:.0f} GiB, Python {platform.python_version()}"


def rss_mb(pid: int) -> float:
    """Current resident memory of a process."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process since it started (VmHWM)."""
    return _status_kb(pid, "VmHWM") / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _status_kb(pid: int, name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return float(line.split()[1])
    return 0.0


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (the form bench/README.md keeps), printed and returned."""
    lines = [f"### {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass
class Stack:
    """The servers a benchmark talks to, all on 127.0.0.1."""

    redis: RedisServer
    emulator: NemoEmulator
    fake: FakeTelegram
    workdir: Path

    def bot(self, **settings: str) -> BotProcess:
        """The real bot process on this stack, with production settings unless given (start it with
        `await bot.start()`)."""
        process = BotProcess(self.fake, self.emulator, self.workdir, REDIS_URL=self.redis.url)
        process.env = {k: v for k, v in process.env.items() if k not in FAST} | {"LOG_LEVEL": "WARNING"}
        process.env.update(settings)
        return process


@asynccontextmanager
async def stack(*, flood_limits: bool = False) -> AsyncIterator[Stack]:
    """A real redis-server, the emulator and the fake Bot API (with Telegram's flood limits when
    asked); all stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="nvb-bench-") as folder:
        redis = RedisServer(Path(folder), appendonly=False)
        redis.start()
        emulator = NemoEmulator(render_file=MEDIA / "clip.mp4")
        fake = FakeTelegram(flood_limits=flood_limits)
        try:
            await emulator.start()
            await fake.start()
            yield Stack(redis, emulator, fake, Path(folder))
        finally:
            await fake.stop()
            await emulator.stop()
            redis.stop()
