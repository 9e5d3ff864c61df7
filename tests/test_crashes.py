"""Crash and fault proof: the real bot process is killed (SIGKILL) or stopped (SIGTERM) at chosen
points and restarted against a real redis-server, the fake Bot API server and the emulator.

Each test counts what the user sees afterwards: nothing lost, nothing said or sent twice.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from loopback.bot_process import BotProcess
from loopback.emulator import NemoEmulator, Turn
from loopback.fake_telegram import FakeTelegram, User
from loopback.servers import MEDIA, RedisServer

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

CHAT = 5151
RENDERED = "/static/render/"  # in the caption of the rendered video (not of the agent's clip's preview)
USER = User(CHAT, "Ada", "ada", language_code="en")


class Restartable:
    """Start, kill and restart the bot against one Redis; every process is stopped at the end."""

    def __init__(self, fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path, redis: RedisServer):
        self.fake, self.emulator, self.tmp_path, self.redis = fake, emulator, tmp_path, redis
        self.processes: list[BotProcess] = []
        self.settings: dict[str, str] = {}

    async def start(self, **settings: str) -> BotProcess:
        process = BotProcess(
            self.fake, self.emulator, self.tmp_path, REDIS_URL=self.redis.url, **{**self.settings, **settings}
        )
        await process.start()
        self.processes.append(process)
        return process

    async def kill(self, process: BotProcess) -> None:
        assert await process.stop(signal.SIGKILL) == -signal.SIGKILL


@pytest.fixture
async def bots(fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path) -> AsyncIterator[Restartable]:
    server = RedisServer(tmp_path)
    server.start()
    runner = Restartable(fake, emulator, tmp_path, server)
    try:
        yield runner
    finally:
        for index, process in enumerate(runner.processes):
            await process.stop()
            print(f"--- bot process {index} ---\n{process.log[-4000:]}")  # shown when a test fails
        server.stop()


async def promo_on_timeline(bots: Restartable) -> None:
    bots.fake.send_text(CHAT, "make a promo", user=USER)
    await bots.fake.wait_for_message(CHAT, "on the timeline", timeout=20)
    await bots.fake.wait_for_message(CHAT, "New clip in your project")  # the turn's last word


async def export_pending(bots: Restartable, polls_per_step: int) -> None:
    """Ask for an export that stays unfinished for `polls_per_step` status polls per step."""
    bots.emulator.render_polls_per_step = polls_per_step
    bots.fake.send_text(CHAT, "export", user=USER)
    await bots.fake.wait_for_message(CHAT, "Export queued")


def count(fake: FakeTelegram, text: str | None = None, kind: str | None = None) -> int:
    return sum(
        1
        for m in fake.bot_messages(CHAT)
        if (kind is None or m.kind == kind) and (text is None or any(text in h for h in m.history))
    )


async def test_kill_during_a_render_then_restart_delivers_it_once(bots: Restartable) -> None:
    first = await bots.start()
    await promo_on_timeline(bots)
    await export_pending(bots, 10_000)
    for _ in range(100):  # until the backend has the render
        if bots.emulator.renders:
            break
        await asyncio.sleep(0.05)
    await bots.kill(first)
    bots.emulator.render_polls_per_step = 1
    await bots.start()
    await bots.fake.wait_for_message(CHAT, RENDERED, kind="video", timeout=20)
    await asyncio.sleep(1.5)
    assert count(bots.fake, RENDERED, kind="video") == 1
    assert len(bots.emulator.calls("render_start")) == 1


async def test_kill_while_the_video_is_being_sent_gives_no_duplicate_and_no_silence(
    bots: Restartable,
) -> None:
    first = await bots.start()
    await promo_on_timeline(bots)
    bots.fake.delay_next("sendVideo", 30)  # the upload hangs: the kill lands mid-delivery
    previews = len(bots.fake.calls_to("sendVideo"))  # the agent's clip, shown after its turn
    bots.fake.send_text(CHAT, "export", user=USER)
    await bots.fake.wait_for_message(CHAT, "Export queued", timeout=5)
    for _ in range(200):
        if len(bots.fake.calls_to("sendVideo")) > previews or bots.emulator.calls("render_file"):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    await bots.kill(first)
    await bots.start()
    await bots.fake.wait_for_message(CHAT, "/static/render/render_", timeout=20)
    await asyncio.sleep(1.5)
    assert count(bots.fake, RENDERED, kind="video") <= 1
    links = count(bots.fake, "/static/render/render_")
    assert links >= 1 and links <= 2  # the link, and at most the video's own caption


async def test_kill_during_a_chat_turn_is_reported_not_resent(bots: Restartable) -> None:
    first = await bots.start()
    bots.fake.send_text(CHAT, "hello", user=USER)
    await bots.fake.wait_for_message(CHAT, "on the timeline", timeout=20)

    def add_title(draft: dict[str, Any]) -> None:
        draft.setdefault("t", []).append({"tt": 7, "sg": [{"d": 3000, "m": {"title": "Grand Opening"}}]})

    bots.emulator.script(
        "title", Turn(texts=["Adding the title…", "Done."], duration=4, draft_change=add_title)
    )
    bots.fake.send_text(CHAT, "add a title", user=USER)
    await bots.fake.wait_for_message(CHAT, "Adding the title", timeout=10)
    await bots.kill(first)
    await bots.start()
    await bots.fake.wait_for_message(CHAT, "I restarted while working on your request", timeout=20)
    changes = await bots.fake.wait_for_message(CHAT, "What changed on the timeline", timeout=20)
    assert 'Title: "Grand Opening"' in changes.text
    await asyncio.sleep(1.0)
    assert count(bots.fake, "I restarted while working") == 1
    assert [m for s in bots.emulator.sessions.values() for m in s.messages] == ["hello", "add a title"]


async def test_kill_while_an_album_is_gathered_forwards_it_after_restart(bots: Restartable) -> None:
    first = await bots.start(ALBUM_WAIT_SECONDS="4")  # killed while it waits for more items
    bots.fake.send_text(CHAT, "credits", user=USER)
    await bots.fake.wait_for_message(CHAT, "Credits:", timeout=20)
    items = [
        ("photo", (MEDIA / "photo.jpg").read_bytes(), "a.jpg"),
        ("photo", (MEDIA / "photo.png").read_bytes(), "b.png"),
    ]
    bots.fake.send_album(CHAT, items, user=USER)
    await bots.fake.wait_updates_consumed(timeout=10)
    await asyncio.sleep(0.5)
    await bots.kill(first)
    assert not bots.emulator.calls("upload")
    await bots.start(ALBUM_WAIT_SECONDS="4")  # its job, in Redis, sends it once it falls quiet
    added = await bots.fake.wait_for_message(CHAT, "Added to your project", timeout=20)
    assert added.text.count("•") == 2
    await asyncio.sleep(1.0)
    assert len(bots.emulator.calls("upload")) == 1 and count(bots.fake, "Added to your project") == 1


async def test_graceful_stop_hands_a_long_turn_over_and_it_is_reported_once(bots: Restartable) -> None:
    first = await bots.start(SHUTDOWN_GRACE_SECONDS="0.5")
    await promo_on_timeline(bots)
    bots.emulator.script("long", Turn(texts=["Working on the long one…", "Finished."], duration=6))
    request = bots.fake.send_text(CHAT, "a long one", user=USER)["message"]["message_id"]
    await bots.fake.wait_for_message(CHAT, "Working on the long one", timeout=10)
    assert await first.stop(signal.SIGTERM) == 0
    await bots.start()
    await bots.fake.wait_for_message(CHAT, "I restarted while working on your request", timeout=20)
    await asyncio.sleep(1.5)
    assert count(bots.fake, "I restarted while working") == 1
    assert count(bots.fake, "Finished.") == 0
    assert bots.fake.reactions_on(CHAT, request)[-1:] == ["👎"]  # not left working for good


async def test_an_update_fetched_before_a_kill_is_not_handled_twice(bots: Restartable) -> None:
    first = await bots.start()
    await promo_on_timeline(bots)
    bots.emulator.script("slow", Turn(texts=["Slow reply."], duration=3))
    bots.fake.delay_next("getUpdates", 30)  # the poll that would confirm the update never answers
    bots.fake.send_text(CHAT, "slow please", user=USER)
    await bots.fake.wait_for(lambda call: call.method == "sendChatAction", timeout=10)
    await bots.kill(first)
    assert any("slow please" in str(u) for u in bots.fake.pending_updates)  # Telegram will resend it
    await bots.start()
    await bots.fake.wait_updates_consumed(timeout=20)
    await asyncio.sleep(1)
    assert [m for s in bots.emulator.sessions.values() for m in s.messages].count("slow please") == 1


async def test_redis_outage_is_explained_and_the_bot_recovers_with_its_state(bots: Restartable) -> None:
    await bots.start(REDIS_TIMEOUT_SECONDS="0.5")
    await promo_on_timeline(bots)
    bots.redis.stop()
    mark = bots.fake.message_count(CHAT)
    bots.fake.send_text(CHAT, "status", user=USER)
    await bots.fake.wait_for_message(CHAT, "briefly unavailable", after=mark, timeout=20)
    bots.redis.start()
    mark = bots.fake.message_count(CHAT)
    bots.fake.send_text(CHAT, "status", user=USER)
    timeline = await bots.fake.wait_for_message(CHAT, "Timeline (", after=mark, timeout=20)
    assert "Video:" in timeline.text  # the same project: nothing lost
    assert len(bots.emulator.calls("session")) == 1


async def test_a_user_who_blocked_the_bot_is_recorded_and_left_alone(bots: Restartable) -> None:
    process = await bots.start()
    await promo_on_timeline(bots)
    await export_pending(bots, 5)
    bots.fake.block_bot(CHAT)
    await asyncio.sleep(3)
    sends = [c for c in bots.fake.calls if c.method == "sendVideo"]
    assert len(sends) <= 1
    assert "chat gone" in process.log or "not delivered" in process.log
