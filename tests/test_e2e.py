"""End to end: the real bot process, the fake Bot API server and the NemoVideo emulator on loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from loopback.bot_process import BotProcess
from loopback.emulator import NemoEmulator
from loopback.fake_telegram import FakeTelegram, User
from loopback.servers import MEDIA, RedisServer

CHAT = 4242
USER = User(CHAT, "Ada", "ada", language_code="en")


async def test_a_user_walks_the_whole_flow(
    fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path
) -> None:
    settings = {"LOG_LEVEL": "DEBUG"}
    server = None
    if shutil.which("redis-server"):
        server = RedisServer(tmp_path)
        server.start()
        settings["REDIS_URL"] = server.url
    bot = BotProcess(fake, emulator, tmp_path, **settings)
    await bot.start()
    try:
        fake.send_command(CHAT, "/start", user=USER)
        await fake.wait_for_message(CHAT, "Try saying", timeout=20)
        await fake.wait_for_message(CHAT, "Connected and ready")

        mark = fake.message_count(CHAT)
        fake.send_photo(CHAT, (MEDIA / "photo.jpg").read_bytes(), user=USER)
        added = await fake.wait_for_message(CHAT, "Added to your project", after=mark)
        assert "image" in added.text

        mark = fake.message_count(CHAT)
        emulator.event_delay = 1.5  # a turn long enough for "typing…" between the agent's replies
        fake.send_text(
            CHAT, "combine these images into a 30-second promo video with music and text", user=USER
        )
        first = await fake.wait_for_message(CHAT, "Sure, give me a moment.", after=mark)
        reply = await fake.wait_for_message(CHAT, "on the timeline", after=mark)
        assert reply is first and first.history[0] == "Sure, give me a moment."  # one message, grown by edits
        assert any(c.method == "sendChatAction" for c in fake.calls)
        emulator.event_delay = 0

        mark = fake.message_count(CHAT)
        fake.send_text(CHAT, "status", user=USER)
        timeline = await fake.wait_for_message(CHAT, "Timeline (", after=mark)
        assert "Video:" in timeline.text and "BGM:" in timeline.text

        mark = fake.message_count(CHAT)
        fake.send_text(CHAT, "credits", user=USER)
        credits = await fake.wait_for_message(CHAT, "Credits:", after=mark)
        assert "available" in credits.text and "register?bind=anon_" in credits.source

        mark = fake.message_count(CHAT)
        fake.send_text(CHAT, "export", user=USER)
        video = await fake.wait_for_message(CHAT, kind="video", after=mark, timeout=30)
        assert video.file is not None and video.file.data == (MEDIA / "clip.mp4").read_bytes()
        assert "/static/render/render_" in video.text
        progress = await fake.wait_for_message(CHAT, "Render", after=mark)
        assert any("%" in text for text in progress.history)  # the progress message was edited
        await asyncio.sleep(0.5)
        assert sum(m.kind == "video" for m in fake.bot_messages(CHAT)) == 1
    finally:
        code = await bot.stop()
        if server:
            server.stop()
    assert code == 0, bot.log[-3000:]
    output = bot.log
    secrets = [fake.token, *(account.token for account in emulator.accounts.values())]
    leaked = [s[:12] for s in secrets if s in output]
    assert not leaked, f"secrets in the bot's output: {leaked}"
    problems = [line for line in output.splitlines() if " ERROR " in line or "Traceback" in line]
    assert not problems, "\n".join(problems)


async def turn_closed(emulator: NemoEmulator) -> None:
    """Until the running turn has read the project's state after its stream (for new media), bounded."""
    for _ in range(200):
        turn = emulator.calls("run_sse")[-1].at
        if any(call.at > turn and call.status is not None for call in emulator.calls("state")):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the turn did not look at the project after its stream")


async def test_missing_token_is_a_one_line_error_with_exit_code_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert err.decode().strip().count("\n") == 0 and "TELEGRAM_BOT_TOKEN" in err.decode()


async def test_bad_setting_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": "1:abc", "RENDER_POLL_SECONDS": "-1", "NEMO_SKILL": "nope"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    text = err.decode()
    assert process.returncode == 2 and "RENDER_POLL_SECONDS" in text and "NEMO_SKILL" in text


@pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server for state across restarts"
)
async def test_a_render_started_before_a_restart_is_delivered_once_after_it(
    fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        first = BotProcess(fake, emulator, tmp_path, REDIS_URL=server.url)
        await first.start()
        fake.send_text(CHAT, "make a promo", user=USER)
        await fake.wait_for_message(CHAT, "on the timeline", timeout=20)
        emulator.render_polls_per_step = 10_000  # the render stays pending while the first process runs
        fake.send_text(CHAT, "export", user=USER)
        await fake.wait_for_message(CHAT, "Export queued")
        assert await first.stop() == 0
        emulator.render_polls_per_step = 1
        second = BotProcess(fake, emulator, tmp_path, REDIS_URL=server.url)
        await second.start()
        try:
            video = await fake.wait_for_message(CHAT, "/static/render/", kind="video", timeout=20)
            assert video.file is not None
            await asyncio.sleep(1.0)
            rendered = [
                m for m in fake.bot_messages(CHAT) if m.kind == "video" and "/static/render/" in m.text
            ]
            assert len(rendered) == 1  # (the other video is the preview of the clip the agent made)
            assert len(emulator.calls("render_start")) == 1
        finally:
            await second.stop()
    finally:
        server.stop()


async def test_no_secret_appears_anywhere_with_debug_logging(
    fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path
) -> None:
    """A full flow with an operator token and DEBUG logs, failures included: no token in any log
    line, chat message, or request to the other party."""
    operator = emulator.add_account("operator-client", registered=True)
    bot = BotProcess(fake, emulator, tmp_path, LOG_LEVEL="DEBUG", NEMO_TOKEN=operator.token)
    await bot.start()
    try:
        fake.send_command(CHAT, "/start", user=USER)
        await fake.wait_for_message(CHAT, "Connected and ready", timeout=20)
        fake.send_photo(CHAT, (MEDIA / "photo.jpg").read_bytes(), user=USER)
        await fake.wait_for_message(CHAT, "Added to your project")
        fake.send_text(CHAT, "make a promo", user=USER)
        await fake.wait_for_message(CHAT, "on the timeline")
        await turn_closed(emulator)  # its last look at the project must not meet the faults below
        emulator.inject("state", http_status=500, times=3)
        fake.send_text(CHAT, "status", user=USER)
        await fake.wait_for_message(CHAT, "isn't answering")
        emulator.expire_tokens()  # the operator's token is refused: the bot cannot renew it
        fake.send_text(CHAT, "credits", user=USER)
        await fake.wait_for_message(CHAT, "needs attention from its operator")
    finally:
        await bot.stop()
    secrets = {
        "bot token": fake.token,
        "bot token secret part": fake.token.split(":")[1],
        "nemo token": operator.token,
    }
    for name, secret in secrets.items():
        assert secret not in bot.log, f"{name} in the log"
        assert not [m for m in fake.bot_messages(CHAT) if secret in m.source], f"{name} in a chat message"
        for request in emulator.requests:
            visible = request.path + str(request.query) + request.raw.decode(errors="replace")
            assert fake.token not in visible and fake.token.split(":")[1] not in visible
    for call in fake.calls:
        assert operator.token not in str(call.params), "NemoVideo token sent to Telegram"
    assert "DEBUG" in bot.log  # debug logging really was on


async def test_a_token_telegram_refuses_is_a_clear_error(fake: FakeTelegram, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "NEMO_", "REDIS_"))},
        "TELEGRAM_BOT_TOKEN": "999999:WRONG-token-abcdefghijklmnopqrstuvwxyz",
        "TELEGRAM_BASE_URL": fake.base_url,
        "TELEGRAM_BASE_FILE_URL": fake.base_file_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2 and "refused TELEGRAM_BOT_TOKEN" in err.decode()
    assert "WRONG-token" not in err.decode()
    assert len(err.decode().strip().splitlines()) == 1  # one clear line, no library traceback


async def test_an_unreachable_bot_api_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "NEMO_", "REDIS_"))},
        "TELEGRAM_BOT_TOKEN": "123456:ABC-unreachable",
        "TELEGRAM_BASE_URL": f"http://127.0.0.1:{port}/bot",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    lines = err.decode().strip().splitlines()
    assert process.returncode == 1 and len(lines) == 1, lines
    assert "cannot reach the Telegram Bot API" in lines[0] and "Traceback" not in err.decode()


async def test_a_group_conversation_with_a_topic_an_admin_and_an_outsider(
    fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path
) -> None:
    """The real bot in a forum supergroup with privacy mode on: two members, an admin, an outsider."""
    group, ann, ben, boss, eve = (
        -1005550001,
        User(21, "Ann", "ann"),
        User(22, "Ben", "ben"),
        User(23, "Boss", "boss"),
        User(66, "Eve", "eve"),
    )
    fake.set_chat(group, "supergroup", title="Launch team", is_forum=True)
    fake.set_member_status(group, boss.id, "administrator")
    topic = fake.create_topic(group, "Launch video", user=boss)
    bot = BotProcess(
        fake,
        emulator,
        tmp_path,
        ALLOWED_USER_IDS=f"{ann.id},{ben.id}",
        ADMIN_USER_IDS=str(boss.id),
        GROUP_ADMIN_ONLY="true",
        GROUP_MERGE_SECONDS="0.3",
    )
    await bot.start()
    try:
        fake.send_text(group, "@nemo_test_bot make a 10 second launch teaser", user=ann, thread_id=topic)
        reply = await fake.wait_for_message(group, "on the timeline", timeout=20)
        assert reply.thread_id == topic

        fake.send_text(group, "looks good to me", user=ben, thread_id=topic)  # not for the bot
        fake.send_text(group, "@nemo_test_bot status", user=ben, thread_id=topic)
        timeline = await fake.wait_for_message(group, "Timeline (", timeout=10)
        assert timeline.thread_id == topic and len(emulator.sessions) == 1  # the topic's one project

        mark = fake.message_count(group)
        fake.send_text(group, "@nemo_test_bot export", user=ben, thread_id=topic)
        await fake.wait_for_message(group, "only admins can", after=mark, timeout=10)

        fake.send_text(group, "@nemo_test_bot export", user=eve, thread_id=topic)
        await fake.wait_for_message(group, "this bot is private", after=mark, timeout=10)
        fake.send_text(group, "@nemo_test_bot export please", user=eve, thread_id=topic)

        fake.send_command(group, "/export@nemo_test_bot", user=boss, thread_id=topic)
        video = await fake.wait_for_message(group, "/static/render/", kind="video", after=mark, timeout=20)
        assert video.thread_id == topic

        await asyncio.sleep(0.5)
        texts = [m.text for m in fake.bot_messages(group)]
        assert sum("this bot is private" in t for t in texts) == 1  # one refusal, not one per message
        assert not [t for t in texts if "looks good" in t]
        assert len(emulator.calls("render_start")) == 1
    finally:
        assert await bot.stop() == 0
