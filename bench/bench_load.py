"""Load: a burst of chats, and a thousand chat turns streaming at once, at Telegram's own limits.

    .venv/bin/python bench/bench_load.py                    # 300-chat bursts, 1,000 turns, replicas
    .venv/bin/python bench/bench_load.py --only turns --turns 1000 --turn-seconds 20 --sse-max 30
    .venv/bin/python bench/bench_load.py --baseline /tmp/before  # each beside another checkout's bot

`--baseline PATH` runs every scenario twice in the same sitting: with the bot of another checkout of
this project (e.g. `git worktree add /tmp/before HEAD~1`; its `python -m bot` runs from there), then
with this one, and prints their rows side by side.

Everything runs on loopback: a real redis-server, the NemoVideo emulator, the fake Bot API with
Telegram's flood limits switched on (30 a second for the bot, bursts of 3 then 1 a second per chat,
20 a minute per group: a request past them gets 429), and the real `python -m bot` with its
production settings.

1. Burst: N new chats each send "credits" at the same moment (cold: each is connected first), then
   the same N again (warm). Beside it, the same bursts for a naive PTB bot (bench/naive_bot.py: the
   default ApplicationBuilder, one handler, a new HTTP client per update) in the same run.
2. Turns: M connected chats each start a chat turn at once; each stream stays open `turn_seconds`
   (the agent's first words at once, its last at the end). While they stream, K other chats ask for
   their credits. The requests the turns cost are counted by kind (sends, edits, chat actions,
   reactions, deletions).
3. Replicas: R replicas in webhook mode behind a round-robin proxy (nginx where installed) on one
   redis-server; N new chats ask for their credits at once.

Figures only: nothing here asserts a timing (tests/test_load.py checks the behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis

from bench.common import Stack, machine, peak_rss_mb, percentile, rss_mb, stack, table
from bot.core.texts import say
from bot.state.store import Store
from loopback.bot_process import BotProcess
from loopback.fake_telegram import FLOOD_COUNTED_METHODS, FakeTelegram, User
from loopback.proxy import round_robin_proxy
from loopback.servers import RETENTION, free_port

TELEGRAM_RATE = 30  # messages a second Telegram allows a bot: the ceiling of every burst
REQUEST_KINDS = {  # what a turn costs, by kind
    "messages": ("sendMessage",),
    "media": ("sendPhoto", "sendVideo", "sendMediaGroup"),  # previews of what the agent generated
    "edits": ("editMessageText",),
    "actions": ("sendChatAction",),
    "reactions": ("setMessageReaction",),
    "deletions": ("deleteMessage",),
}
BASELINE: str | None = None  # --baseline: another checkout whose bot runs beside this one
FAILURES = tuple(say("en", key)[:30] for key in ("storage_unavailable", "backend_unavailable", "unexpected"))
CREDITS = "Credits"  # in every credits answer, ours and the naive bot's
FIRST_WORDS, LAST_WORDS = "Sure, give me a moment.", "on the timeline"


@dataclass
class Outcome:
    """What the chats of one scenario saw."""

    scenario: str
    chats: int
    answered: int = 0
    failures: int = 0  # chats told the bot is unavailable, or that something went wrong
    latencies: list[float] = field(default_factory=list)  # burst -> each chat's answer, seconds
    flood_429s: int = 0

    @property
    def last(self) -> float:
        return max(self.latencies, default=0.0)

    def row(self) -> list[object]:
        ceiling = self.chats / TELEGRAM_RATE
        share = (self.answered / self.last) / TELEGRAM_RATE if self.last else 0.0
        return [
            self.scenario,
            self.chats,
            self.answered,
            self.failures,
            percentile(self.latencies, 50),
            percentile(self.latencies, 99),
            self.last,
            ceiling,
            f"{share:.0%}",
            self.flood_429s,
        ]


BURST_HEADERS = (
    "scenario",
    "chats",
    "answered",
    "told unavailable / failed",
    "first answer p50 s",
    "p99 s",
    "last answer s",
    "ceiling N/30 s",
    "of 30 msg/s",
    "429s",
)


async def answers(
    fake: FakeTelegram, marks: dict[int, int], contains: str, started: float, within: float
) -> Outcome:
    """Wait (bounded) until every chat has a bot message containing `contains` after its mark."""
    outcome = Outcome("", len(marks))
    waiting = dict(marks)
    deadline = time.monotonic() + within
    while waiting and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        for chat, mark in list(waiting.items()):
            found = next((m for m in fake.bot_messages(chat)[mark:] if contains in m.text), None)
            if found is not None:  # a live reply shows its last words in an edit, not when first sent
                outcome.latencies.append((found.shown_at(contains) or found.sent_at) - started)
                del waiting[chat]
    outcome.answered = len(outcome.latencies)
    outcome.failures = sum(
        any(failure in m.text for m in fake.bot_messages(chat)[mark:] for failure in FAILURES)
        for chat, mark in marks.items()
    )
    return outcome


async def burst(
    fake: FakeTelegram, users: list[User], text: str, contains: str, within: float, *, rested: bool = True
) -> Outcome:
    """Every user sends `text` at the same moment; each chat's first answer containing `contains`."""
    if rested:
        fake.enable_flood_limits()  # fresh windows: the burst starts from a rested bot
    before = fake.too_many_requests
    marks = {user.id: fake.message_count(user.id) for user in users}
    started = time.monotonic()
    for user in users:
        fake.send_text(user.id, text, user=user)
    outcome = await answers(fake, marks, contains, started, within)
    outcome.flood_429s = fake.too_many_requests - before
    return outcome


async def run_bursts(chats: int, *, within: float = 120) -> list[Outcome]:
    """Cold and warm bursts of `chats` new chats, for nemo-video-bot (and the baseline's) and for the
    naive bot."""
    outcomes = []
    if BASELINE:
        async with stack(flood_limits=True) as s:
            outcomes += await cold_and_warm(s, from_checkout(s.bot(), BASELINE), "before", chats, within)
    async with stack(flood_limits=True) as s:
        outcomes += await cold_and_warm(s, s.bot(), "nemo-video-bot", chats, within)
        outcomes += await cold_and_warm(s, naive_bot(s), "naive PTB bot", chats, within)
    return outcomes


async def cold_and_warm(s: Stack, bot: BotProcess, name: str, chats: int, within: float) -> list[Outcome]:
    """`chats` new chats ask `bot` for their credits at once, then the same chats again."""
    outcomes = []
    polls_before = len(s.fake.calls_to("getUpdates"))  # a bot that ran before polled too
    await bot.start()
    try:
        await wait_ready(s.fake, polls_before=polls_before)
        users = s.fake.users(chats)
        for temperature in ("cold", "warm"):
            outcome = await burst(s.fake, users, "credits", CREDITS, within)
            outcome.scenario = f"{name}, {temperature}"
            outcomes.append(outcome)
    finally:
        await bot.stop()
    return outcomes


def from_checkout(process: BotProcess, checkout: str | None) -> BotProcess:
    """The bot of another checkout of this project (its `bot` package first on the path)."""
    if checkout:
        process.env["PYTHONPATH"] = str(Path(checkout).resolve())
    return process


def naive_bot(s: Stack) -> BotProcess:
    process = s.bot()
    process.args = [str(Path(__file__).with_name("naive_bot.py").resolve())]
    return process


async def wait_ready(fake: FakeTelegram, within: float = 30, *, polls_before: int = 0) -> None:
    """Until the bot polls for updates (it is up and listening): a poll past `polls_before`."""
    deadline = time.monotonic() + within
    while len(fake.calls_to("getUpdates")) <= polls_before:
        if time.monotonic() > deadline:
            raise TimeoutError("the bot did not start polling")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)


# -- 2. concurrent turns ------------------------------------------------------------------------


@dataclass
class TurnsOutcome:
    turns: int
    first_text: list[float] = field(default_factory=list)
    finished: int = 0
    failures: int = 0
    peak_rss: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)  # to the turns' chats, by kind
    flood_429s: int = 0
    timeouts: int = 0  # chats told the agent took too long
    busiest_second: int = 0  # the most counted requests that reached the fake within any 1 s
    refused: str = ""  # which limit each 429 was for
    timeline: list[list[object]] = field(default_factory=list)  # requests per 5 s, by method
    side: Outcome | None = None  # other chats asking for credits meanwhile
    name: str = ""


async def connect_directly(s: Stack, users: list[User]) -> None:
    """Give each chat a token and an agent session, as if it had been used before (no messages)."""
    store = Store(Redis.from_url(s.redis.url, decode_responses=True), f"nvb:{s.fake.bot_id}", RETENTION)
    expires = time.time() + 7 * 24 * 3600
    for user in users:
        account = s.emulator.add_account(f"client-{user.id}")
        session = s.emulator.add_session(account.user_id)
        key = str(user.id)
        await store.save_chat(
            key,
            client_id=account.client_id,
            session_id=session.session_id,
            task_id=session.task_id,
            language="en",
            user_id=account.user_id,
        )
        await store.save_token(key, account.token, expires)
    await store.redis.aclose()


class RssSampler:
    """Samples a process's resident memory every 0.1 s on a thread (bounded by `stop`)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


async def run_turns(
    turns: int,
    *,
    turn_seconds: float,
    side_chats: int,
    within: float = 600,
    checkout: str | None = None,
    **settings: str,
) -> TurnsOutcome:
    """`turns` chats start a turn at once; `side_chats` others ask for credits while they stream
    (the bot with production settings, but for `settings`; from another `checkout` if given)."""
    async with stack(flood_limits=True) as s:
        users = s.fake.users(turns + side_chats)
        talkers, others = users[:turns], users[turns:]
        await connect_directly(s, users)
        s.emulator.event_delay = turn_seconds / 3  # 4 events: first words at once, last at the end
        s.emulator.keepalive_interval = 15.0  # a keep-alive every 15 s inside the long gaps
        bot = from_checkout(s.bot(**settings), checkout)
        await bot.start()
        assert bot.process is not None
        outcome = TurnsOutcome(turns, name="before" if checkout else "now")
        try:
            await wait_ready(s.fake)
            with RssSampler(bot.process.pid) as sampler:
                before = s.fake.too_many_requests
                marks = {user.id: s.fake.message_count(user.id) for user in talkers}
                started = time.monotonic()
                for index, user in enumerate(talkers):
                    s.fake.send_text(user.id, f"make a 10-second teaser about product {index}", user=user)
                first = await answers(s.fake, marks, FIRST_WORDS, started, within)
                outcome.first_text = first.latencies
                if others:
                    side = await burst(s.fake, others, "credits", CREDITS, within, rested=False)
                    side.scenario = f"{len(others)} other chats ask for credits meanwhile"
                    outcome.side = side
                last = await answers(s.fake, marks, LAST_WORDS, started, within)
                outcome.finished, outcome.failures = last.answered, first.failures + last.failures
                outcome.flood_429s = s.fake.too_many_requests - before
                outcome.peak_rss = max(sampler.peak, peak_rss_mb(bot.process.pid))
                await asyncio.sleep(2)  # the turns' last requests (reactions) arrive
            chats = set(marks)
            counted = [c for c in s.fake.calls if c.at >= started and c.params.get("chat_id") in chats]
            outcome.requests = {
                kind: sum(c.method in methods for c in counted) for kind, methods in REQUEST_KINDS.items()
            }
            outcome.refused = which_limits(s.fake, started)
            outcome.timeline = timeline([c for c in counted if c.method in FLOOD_COUNTED_METHODS], started)
            outcome.busiest_second = busiest_second(
                [c.at for c in s.fake.calls if c.at >= started and c.method in FLOOD_COUNTED_METHODS]
            )
            outcome.timeouts = sum(
                any("working for over" in m.text for m in s.fake.bot_messages(chat)[mark:])
                for chat, mark in marks.items()
            )
        finally:
            await bot.stop()
    return outcome


TIMELINE_METHODS = ("sendMessage", "editMessageText", "sendVideo", "sendChatAction", "setMessageReaction")


def timeline(calls: list[Any], since: float, step: float = 5.0) -> list[list[object]]:
    """Requests per `step` seconds from `since`, by method: where the bot's budget went."""
    buckets: dict[int, Counter[str]] = {}
    for call in calls:
        buckets.setdefault(int((call.at - since) // step), Counter())[call.method] += 1
    return [
        [f"{index * step:g}-{(index + 1) * step:g}", *(buckets[index][m] for m in TIMELINE_METHODS)]
        for index in sorted(buckets)
    ]


def which_limits(fake: FakeTelegram, since: float) -> str:
    """Each 429 the fake answered since `since`, by the limit it enforced: the bot's second when 30
    requests had been admitted in the second before it, else its chat's."""
    calls = [c for c in fake.calls if c.at >= since and c.method in FLOOD_COUNTED_METHODS]
    admitted = [c.at for c in calls if c.status != 429]
    kinds = Counter(
        "bot" if sum(call.at - 1.0 < t < call.at for t in admitted) >= fake.flood.global_limit else "chat"
        for call in calls
        if call.status == 429
    )
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "-"


def busiest_second(arrivals: list[float]) -> int:
    """The most arrivals within any one second (a sliding window over the sorted times)."""
    times, most, first = sorted(arrivals), 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


TURNS_HEADERS = (
    "bot",
    "turns at once",
    "first text / finished",
    "failed",
    "told 'too long'",
    "first text p50 s",
    "p99 s",
    "ceiling N/30 s",
    "requests per turn",
    "messages / media / edits / actions / reactions / deletions",
    "peak RSS MB",
    "429s (limit)",
    "most in 1 s at the fake",
    "other chats' credits p50 / p99 s",
)


def turns_row(outcome: TurnsOutcome) -> list[object]:
    counts = outcome.requests
    side = outcome.side
    return [
        outcome.name,
        outcome.turns,
        f"{len(outcome.first_text)}/{outcome.finished}",
        outcome.failures,
        outcome.timeouts,
        percentile(outcome.first_text, 50),
        percentile(outcome.first_text, 99),
        outcome.turns / TELEGRAM_RATE,
        sum(counts.values()) / max(1, outcome.turns),
        " / ".join(str(counts.get(kind, 0)) for kind in REQUEST_KINDS),
        outcome.peak_rss,
        f"{outcome.flood_429s} ({outcome.refused})",
        outcome.busiest_second,
        f"{percentile(side.latencies, 50):.2f} / {percentile(side.latencies, 99):.2f}" if side else "-",
    ]


def turns_table(outcomes: list[TurnsOutcome], title: str = "Concurrent chat turns") -> str:
    return table(title, TURNS_HEADERS, [turns_row(outcome) for outcome in outcomes])


# -- 3. replicas --------------------------------------------------------------------------------


WEBHOOK_SECRET, WEBHOOK_PATH = "bench-replicas_secret-0123", "/telegram"


async def run_replica_burst(
    chats: int, replicas: int, *, within: float = 120, checkout: str | None = None
) -> Outcome:
    """`replicas` bots in webhook mode behind a round-robin proxy; `chats` new chats ask for their
    credits at once (cold), then again (warm: the row)."""
    async with stack(flood_limits=False) as s:
        ports = [free_port() for _ in range(replicas)]
        async with round_robin_proxy([("127.0.0.1", port) for port in ports]) as proxy:
            bots = []
            for port in ports:
                bot = from_checkout(
                    s.bot(
                        TELEGRAM_WEBHOOK_URL=proxy.url + WEBHOOK_PATH,
                        TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
                        HTTP_HOST="127.0.0.1",
                        HTTP_PORT=str(port),
                    ),
                    checkout,
                )
                await bot.start()
                bots.append(bot)
            try:
                for _ in range(600):  # at most a minute until a replica has set the webhook
                    if s.fake.webhook_url:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2)  # every replica is up and reading the inbox
                users = s.fake.users(chats)
                cold = await burst(s.fake, users, "credits", CREDITS, within)
                outcome = await burst(s.fake, users, "credits", CREDITS, within)
                outcome.flood_429s += cold.flood_429s
            finally:
                for bot in bots:
                    await bot.stop()
    outcome.scenario = f"{'before' if checkout else 'now'}: {replicas} replicas, {proxy.kind}"
    return outcome


def main() -> None:
    global BASELINE
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chats", type=int, default=300, help="chats in each burst")
    parser.add_argument("--turns", type=int, default=1000, help="chat turns streaming at once")
    parser.add_argument("--turn-seconds", type=float, default=20, help="how long each stream stays open")
    parser.add_argument("--side-chats", type=int, default=50, help="chats asking for credits meanwhile")
    parser.add_argument("--sse-max", type=float, default=None, help="SSE_MAX_SECONDS for the turns")
    parser.add_argument("--replicas", type=int, default=3, help="replicas behind the proxy")
    parser.add_argument("--only", choices=("bursts", "turns", "replicas"), help="one scenario")
    parser.add_argument("--baseline", help="another checkout of this project, run beside this one")
    parser.add_argument("--timeline", action="store_true", help="the turns' requests per 5 s, by method")
    args = parser.parse_args()
    BASELINE = args.baseline
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of loopback sockets
    print(machine())
    if args.only in (None, "bursts"):
        outcomes = asyncio.run(run_bursts(args.chats))
        table(f"Burst of {args.chats} chats asking for credits", BURST_HEADERS, [o.row() for o in outcomes])
    if args.only in (None, "turns"):
        settings = {"SSE_MAX_SECONDS": str(args.sse_max)} if args.sse_max else {}
        runs = []
        for checkout in ([BASELINE] if BASELINE else []) + [None]:
            runs.append(
                asyncio.run(
                    run_turns(
                        args.turns,
                        turn_seconds=args.turn_seconds,
                        side_chats=args.side_chats,
                        checkout=checkout,
                        **settings,
                    )
                )
            )
        limit = f", SSE_MAX_SECONDS={args.sse_max:g}" if args.sse_max else ""
        turns_table(runs, f"{args.turns} chat turns at once, {args.turn_seconds:g} s streams{limit}")
        for run in runs if args.timeline else []:
            table(
                f"Requests reaching the fake per 5 s ({run.name})",
                ("seconds", *TIMELINE_METHODS),
                run.timeline,
            )
    if args.only in (None, "replicas"):
        rows = [
            asyncio.run(run_replica_burst(args.chats, args.replicas, checkout=checkout)).row()
            for checkout in ([BASELINE] if BASELINE else []) + [None]
        ]
        table(f"Burst of {args.chats} chats across {args.replicas} replicas (warm)", BURST_HEADERS, rows)


if __name__ == "__main__":
    main()
