"""Renders in flight: what the render watcher costs per poll interval, and how late a video arrives.

    .venv/bin/python bench/bench_renders.py                      # 1,000 and 10,000 renders, 5 s interval
    .venv/bin/python bench/bench_renders.py --renders 10000 --poll 30 --intervals 3 --latency 0.1
    .venv/bin/python bench/bench_renders.py --renders 10000 --poll 3 --intervals 5

N chats each have one render in flight, seeded as the bot writes them: the chat's client id, token
and session through `bot.state.store.Store` (so the bot polls without creating anything) and a
`RenderRecord` in the active set, with the matching account, session and render in the emulator.
The real `python -m bot` then polls them every `RENDER_POLL_SECONDS`. After its first round, a few
renders per interval (staggered evenly) complete at known moments; the delay is from that moment to
the fake Bot API receiving the sendVideo for that chat. Over the measured intervals the bench reads
Redis's `total_commands_processed` and the bot's CPU time, and from the emulator's poll log the
length of each poll round and the time between two polls of one render.

Figures only: nothing here asserts a timing (tests/test_bench_renders.py checks the behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis

from bench.common import Stack, cpu_seconds, machine, percentile, stack, table
from bot.state.renders import RenderRecord
from bot.state.store import Store
from loopback.bot_process import BotProcess
from loopback.emulator import NemoEmulator, Render
from loopback.servers import RETENTION

FIRST_CHAT = 700_000_000
SEED_BATCH = 50  # concurrent chats (redis-py caps its pool)

HEADERS = (
    "renders in flight",
    "poll interval s",
    "Redis commands / interval",
    "commands / render / poll",
    "bot CPU s / interval",
    "% of one core",
    "round s (p50 / max)",
    "delay p50 s",
    "delay p99 s",
    "delay max s",
    "goal s",
    "delivered once / completed",
)
DETAIL_HEADERS = (
    "renders in flight",
    "poll interval s",
    "status polls / render / interval",
    "polls of one render, apart (p50 / max s)",
    "completion to next poll (p50 / max s)",
    "poll to sendVideo (p50 / max s)",
    "Redis CPU s / interval",
    "emulator + fake CPU s / interval",
    "Redis commands per render poll, by command",
)


@dataclass
class Row:
    """One run's figures, and what was delivered (for the behaviour test)."""

    renders: int
    poll_seconds: float
    commands_per_interval: float
    commands_per_poll: float
    cpu_per_interval: float
    cpu_percent: float
    round_p50: float
    round_max: float
    delay_p50: float
    delay_p99: float
    delay_max: float
    completed: int
    delivered_once: int
    duplicates: int  # completed renders whose chat got more than one video (or a "again" link)
    strays: int  # videos sent to chats whose render had not completed
    undelivered: int
    polls_per_render: float = 0.0  # status polls per render per interval (1.0: each polled once)
    period_p50: float = 0.0
    period_max: float = 0.0
    detect_p50: float = 0.0
    detect_max: float = 0.0
    send_p50: float = 0.0
    send_max: float = 0.0
    redis_cpu_per_interval: float = 0.0
    bench_cpu_per_interval: float = 0.0
    by_command: dict[str, float] = field(default_factory=dict)

    @property
    def goal(self) -> float:
        return self.poll_seconds + 1.0

    def cells(self) -> list[object]:
        return [
            self.renders,
            self.poll_seconds,
            round(self.commands_per_interval),
            self.commands_per_poll,
            self.cpu_per_interval,
            f"{self.cpu_percent:.0f} %",
            f"{self.round_p50:.2f} / {self.round_max:.2f}",
            self.delay_p50,
            self.delay_p99,
            self.delay_max,
            self.goal,
            f"{self.delivered_once} / {self.completed}",
        ]

    def detail_cells(self) -> list[object]:
        commands = ", ".join(
            f"{name} {count:.2f}" for name, count in self.by_command.items() if count >= 0.01
        )
        return [
            self.renders,
            self.poll_seconds,
            self.polls_per_render,
            f"{self.period_p50:.2f} / {self.period_max:.2f}",
            f"{self.detect_p50:.2f} / {self.detect_max:.2f}",
            f"{self.send_p50:.2f} / {self.send_max:.2f}",
            self.redis_cpu_per_interval,
            self.bench_cpu_per_interval,
            commands,
        ]


async def seed(servers: Stack, store: Store, renders: int) -> dict[int, Render]:
    """N chats with a token, a session and one render "processing" at 50 %, in Redis and the emulator."""
    emulator = servers.emulator
    by_chat: dict[int, Render] = {}

    async def one(index: int) -> None:
        chat_id = FIRST_CHAT + index
        key = str(chat_id)
        account = emulator.add_account()
        session = emulator.add_session(account.user_id)
        render = Render(f"render_bench_{index:06d}", session.session_id, {}, status="processing", progress=50)
        render.complete_at = float("inf")  # until the bench picks it to complete
        emulator.renders[render.id] = render
        by_chat[chat_id] = render
        await store.save_chat(
            key,
            client_id=account.client_id,
            user_id=account.user_id,
            session_id=session.session_id,
            task_id=session.task_id,
            language="en",
        )
        await store.save_token(key, account.token, account.expires_at.timestamp())
        record = RenderRecord(render.id, key, chat_id, session.session_id, status="processing", progress=50)
        assert await store.add_render(record)

    for start in range(0, renders, SEED_BATCH):
        await asyncio.gather(*(one(i) for i in range(start, min(renders, start + SEED_BATCH))))
    return by_chat


async def redis_stats(redis: Redis) -> tuple[int, Counter[str]]:
    """Commands processed so far, in total and by command."""
    stats = await redis.info("stats")
    by_command: Counter[str] = Counter()
    for name, value in (await redis.info("commandstats")).items():
        if name.startswith("cmdstat_") and isinstance(value, dict):
            by_command[name.removeprefix("cmdstat_").upper()] = int(value["calls"])
    return int(stats["total_commands_processed"]), by_command


async def wait_until(check: Any, timeout: float, step: float = 0.1) -> bool:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(step)
    return check()


async def run(
    renders: int,
    *,
    poll_seconds: float = 5.0,
    intervals: int = 4,
    completions_per_interval: int = 20,
    processes: int = 1,
    latency: float = 0.0,
    seed_value: int = 4,
    settings: dict[str, str] | None = None,
) -> list[Row]:
    """Seed `renders` renders, run the real bot (`processes` of them on one Redis) and measure.

    `latency`: seconds the emulator takes to answer each status poll (a backend across the internet).
    """
    rng = random.Random(seed_value)
    async with stack() as servers:
        redis = Redis.from_url(servers.redis.url, decode_responses=True)
        store = Store(redis, f"nvb:{servers.fake.bot_id}", RETENTION)
        bots: list[BotProcess] = []
        trimmer: asyncio.Task[None] | None = None
        try:
            by_chat = await seed(servers, store, renders)
            servers.emulator.render_status_delay = latency
            bots = [
                servers.bot(
                    RENDER_POLL_SECONDS=str(poll_seconds),
                    RENDER_LEASE_SECONDS="60",
                    SHUTDOWN_GRACE_SECONDS="2",
                    HTTP_TIMEOUT_SECONDS="30",
                    **(settings or {}),
                )
                for _ in range(processes)
            ]
            for bot in bots:
                await bot.start()
            trimmer = asyncio.create_task(_trim_requests(servers.emulator))
            every = list(by_chat.values())
            first_round = await wait_until(
                lambda: all(r.polls for r in every), timeout=max(120, renders / 20)
            )
            if not first_round:
                raise RuntimeError(f"the bot did not poll every render; its log:\n{bots[0].log[-3000:]}")

            # Renders that complete, `completions_per_interval` per interval, evenly apart.
            count = min(renders, completions_per_interval * intervals)
            chosen = rng.sample(sorted(by_chat), count)
            t0 = time.monotonic()
            gap = poll_seconds * intervals / count
            for number, chat_id in enumerate(chosen):
                by_chat[chat_id].complete_at = t0 + gap * (number + 0.5)
            commands0, by_command0 = await redis_stats(redis)
            cpu0 = sum(cpu_seconds(_pid(b)) for b in bots)
            redis_cpu0 = cpu_seconds(_redis_pid(servers))
            bench_cpu0 = cpu_seconds(os.getpid())

            await asyncio.sleep(poll_seconds * intervals)

            t1 = time.monotonic()
            commands1, by_command1 = await redis_stats(redis)
            cpu1 = sum(cpu_seconds(_pid(b)) for b in bots)
            redis_cpu1 = cpu_seconds(_redis_pid(servers))
            bench_cpu1 = cpu_seconds(os.getpid())
            polls = sum(1 for r in every for at in r.poll_times if t0 <= at < t1)

            completed = {chat_id: by_chat[chat_id] for chat_id in chosen}
            videos = _videos(servers)
            await wait_until(
                lambda: all(videos().get(chat_id) for chat_id in completed),
                timeout=max(30.0, 4 * poll_seconds + (t1 - t0)),
                step=0.25,
            )
            await asyncio.sleep(min(2.0, poll_seconds))  # room for a duplicate to show
        finally:
            if trimmer is not None:
                trimmer.cancel()
            for bot in bots:
                await bot.stop(signal.SIGTERM)
            await redis.aclose()

        sent = videos()
        again = _links_again(servers)
        delays, detects, sends = [], [], []
        for chat_id, render in completed.items():
            times = sent.get(chat_id, [])
            if len(times) == 1 and render.complete_at is not None:
                delays.append(times[0] - render.complete_at)
                detected = min((at for at in render.poll_times if at >= render.complete_at), default=None)
                if detected is not None:
                    detects.append(detected - render.complete_at)
                    sends.append(times[0] - detected)
        steady = [r for chat_id, r in by_chat.items() if chat_id not in completed]
        rounds = _rounds(steady)
        periods = [b - a for r in steady for a, b in zip(r.poll_times, r.poll_times[1:], strict=False)]
        window = t1 - t0
        per_command = by_command1 - by_command0
        row = Row(
            renders=renders,
            poll_seconds=poll_seconds,
            commands_per_interval=(commands1 - commands0) / intervals,
            commands_per_poll=(commands1 - commands0) / max(polls, 1),
            cpu_per_interval=(cpu1 - cpu0) / intervals,
            cpu_percent=100 * (cpu1 - cpu0) / window,
            round_p50=statistics.median(rounds) if rounds else 0.0,
            round_max=max(rounds, default=0.0),
            delay_p50=percentile(delays, 50),
            delay_p99=percentile(delays, 99),
            delay_max=max(delays, default=0.0),
            completed=len(completed),
            delivered_once=sum(
                1 for chat_id in completed if len(sent.get(chat_id, [])) == 1 and chat_id not in again
            ),
            duplicates=sum(1 for chat_id in completed if len(sent.get(chat_id, [])) > 1 or chat_id in again),
            strays=sum(1 for chat_id in sent if chat_id not in completed),
            undelivered=sum(1 for chat_id in completed if not sent.get(chat_id)),
            polls_per_render=polls * poll_seconds / window / renders,
            period_p50=percentile(periods, 50),
            period_max=max(periods, default=0.0),
            detect_p50=percentile(detects, 50),
            detect_max=max(detects, default=0.0),
            send_p50=percentile(sends, 50),
            send_max=max(sends, default=0.0),
            redis_cpu_per_interval=(redis_cpu1 - redis_cpu0) / intervals,
            bench_cpu_per_interval=(bench_cpu1 - bench_cpu0) / intervals,
            by_command={name: calls / max(polls, 1) for name, calls in per_command.most_common()},
        )
        return [row]


def _pid(bot: BotProcess) -> int:
    assert bot.process is not None
    return bot.process.pid


def _redis_pid(servers: Stack) -> int:
    assert servers.redis.process is not None
    return servers.redis.process.pid


def _videos(servers: Stack) -> Any:
    def videos() -> dict[int, list[float]]:
        """When each chat's videos reached the fake Bot API (answered or not)."""
        found: dict[int, list[float]] = {}
        for call in list(servers.fake.calls):
            if call.method == "sendVideo":
                found.setdefault(int(call.params["chat_id"]), []).append(call.at)
        return found

    return videos


def _links_again(servers: Stack) -> set[int]:
    """Chats that got "here is the link again" (a delivery that was cut and resumed)."""
    found = set()
    for call in servers.fake.calls:
        if call.method == "sendMessage" and "didn't come through above" in str(call.params.get("text", "")):
            found.add(int(call.params["chat_id"]))
    return found


def _rounds(steady: list[Render]) -> list[float]:
    """How long each complete poll round took: first to last poll of the renders that stayed."""
    if not steady:
        return []
    rounds = []
    for index in range(min(len(r.poll_times) for r in steady)):
        moments = [r.poll_times[index] for r in steady]
        rounds.append(max(moments) - min(moments))
    return rounds


async def _trim_requests(emulator: NemoEmulator) -> None:
    """The emulator logs every request; 10,000 status polls a round would pile up."""
    while True:
        await asyncio.sleep(1)
        emulator.requests.clear()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--poll", type=float, default=5.0, help="RENDER_POLL_SECONDS")
    parser.add_argument("--intervals", type=int, default=4, help="poll intervals measured")
    parser.add_argument("--completions", type=int, default=20, help="renders completing per interval")
    parser.add_argument("--processes", type=int, default=1, help="bot processes on one Redis")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each status poll takes")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="bot settings")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.set)
    print(machine(), flush=True)
    rows: list[Row] = []
    for renders in args.renders:
        rows += await run(
            renders,
            poll_seconds=args.poll,
            intervals=args.intervals,
            completions_per_interval=args.completions,
            processes=args.processes,
            latency=args.latency,
            settings=settings,
        )
    processes = f"{args.processes} bot process{'es' if args.processes > 1 else ''}"
    title = f"Renders in flight ({processes}, backend answers in {args.latency * 1000:.0f} ms)"
    table(title, HEADERS, [row.cells() for row in rows])
    table("Where the time and the commands go", DETAIL_HEADERS, [row.detail_cells() for row in rows])
    for row in rows:
        if row.duplicates or row.strays or row.undelivered:
            print(
                f"{row.renders} renders: {row.duplicates} duplicated, {row.strays} stray, "
                f"{row.undelivered} undelivered"
            )


if __name__ == "__main__":
    asyncio.run(main())
