"""Accounts end to end: the real `python -m bot` against the emulator, the fake Bot API and a real
redis-server, as an operator would run it on a real server where trials are scarce."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from loopback.bot_process import BotProcess
from loopback.emulator import NemoEmulator, Turn, sample_draft
from loopback.fake_telegram import FakeTelegram, User
from loopback.servers import MEDIA, RedisServer

KEY = "an operator's secret of at least 32 characters"
GROUP = -100424242
BOT = "@nemo_test_bot"


def person(index: int, lang: str = "en") -> User:
    return User(7000 + index, f"P{index}", f"p{index}", language_code=lang)


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str | None]:
    """A real redis-server when installed (CI installs it), else the bot's embedded store."""
    if shutil.which("redis-server") is None:
        yield None
        return
    server = RedisServer(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


async def running(
    fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path, url: str | None, **env: str
) -> BotProcess:
    settings = {"LOG_LEVEL": "DEBUG", **env}
    if url:
        settings["REDIS_URL"] = url
    bot = BotProcess(fake, emulator, tmp_path, **settings)
    await bot.start()
    return bot


async def ask(fake: FakeTelegram, chat: int, text: str, user: User, expect: str, **kw: Any) -> Any:
    mark = fake.message_count(chat)
    if text.startswith("/"):
        fake.send_command(chat, text, user=user, **kw)
    else:
        fake.send_text(chat, text, user=user, **kw)
    return await fake.wait_for_message(chat, expect, after=mark, timeout=20)


def redis_holds(url: str, secret: str) -> list[str]:
    """Every key whose name or value holds `secret`, whatever its type."""
    found = []
    with Redis.from_url(url, decode_responses=True) as redis:
        for key in redis.scan_iter("*"):
            kind = redis.type(key)
            if kind == "string":
                value: object = redis.get(key)
            elif kind == "hash":
                value = redis.hgetall(key)
            elif kind == "set":
                value = redis.smembers(key)
            elif kind == "zset":
                value = redis.zrange(key, 0, -1)
            elif kind == "list":
                value = redis.lrange(key, 0, -1)
            elif kind == "stream":
                value = redis.xrange(key)
            else:
                value = ""
            if secret in key or secret in str(value):
                found.append(key)
    return found


async def test_a_public_bot_on_a_server_whose_trials_run_out(
    fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path, redis_url: str | None
) -> None:
    emulator.trial_cap = 3
    fake.set_chat(GROUP, "supergroup", title="Team")
    fake.set_member_status(GROUP, fake.bot_id, "administrator")
    bot = await running(
        fake, emulator, tmp_path, redis_url, TOKEN_ENCRYPTION_KEY=KEY, RATE_LIMIT_WAIT_SECONDS="30"
    )
    people = [person(i) for i in range(5)]
    try:
        # Three new chats are served; the fourth and fifth hear at once how to go on.
        for someone in people[:3]:
            await ask(fake, someone.id, "credits", someone, "Credits:")
        for someone in people[3:]:
            told = await ask(fake, someone.id, "credits", someone, "free trials are used up")
            assert "/login" in told.text and "operator" in told.text
        assert len(emulator.calls("anonymous_token")) == 4
        await ask(fake, people[4].id, "make a video", people[4], "free trials are used up")
        await ask(fake, people[0].id, "status", people[0], "timeline is empty")
        assert len(emulator.calls("anonymous_token")) == 4  # the refusal is remembered

        # A refused person brings their own account: the token's message is deleted at once.
        own = emulator.add_personal_account(credits=250)
        mark = fake.message_count(people[3].id)
        login = fake.send_command(people[3].id, f"/login {own.token}", user=people[3])
        await fake.wait_for_message(people[3].id, "linked", after=mark, timeout=20)
        assert (people[3].id, login["message"]["message_id"]) in fake.deleted_user_messages
        balance = await ask(fake, people[3].id, "credits", people[3], "Credits:")
        assert "250" in balance.text and "your own NemoVideo account" in balance.text

        # A token pasted in a group: deleted, its owner warned, nothing forwarded.
        leaked = emulator.add_personal_account()
        before = len(emulator.requests)
        warning = await ask(
            fake, GROUP, f"{BOT} use this: {leaked.token}", people[1], "Revoke that token now"
        )
        assert leaked.token not in warning.source
        assert any(chat == GROUP for chat, _ in fake.deleted_user_messages)
        assert len(emulator.requests) == before

        # A served chat: a reply whose trailing "temporary issue" is not shown, then an export whose
        # start fails once and whose CDN link is dead: one video, through the API, with its browser link.
        emulator.script(
            "music", Turn(texts=["Added a Lo-fi track.", "I encountered a temporary issue. Try again."])
        )
        await ask(fake, people[0].id, "add music", people[0], "Lo-fi")
        session = next(s for s in emulator.sessions.values() if s.messages)
        emulator.set_draft(session.session_id, sample_draft())
        emulator.inject("render_start", http_status=503)
        emulator.cdn_dead = 404
        video = await ask(fake, people[0].id, "export", people[0], "video is ready")
        assert video.kind == "video" and video.file is not None
        assert video.file.data == (MEDIA / "clip.mp4").read_bytes()
        starts = emulator.calls("render_start")
        assert len(starts) == 2 and starts[0].json["id"] != starts[1].json["id"]
        assert len(emulator.calls("render_download")) == 1
        link = next(b["url"] for b in video.buttons if "url" in b)
        assert "/workspace/claim?ct=clm_" in link and "nmv_" not in link
        opened = await ask(fake, people[0].id, "/open", people[0], "opens in the browser")
        assert [b["url"] for b in opened.buttons if "url" in b] == [link]
        shown = [text for m in fake.bot_messages(people[0].id) for text in m.history]
        assert not any("temporary issue" in text for text in shown)
        assert sum(m.kind == "video" for m in fake.bot_messages(people[0].id)) == 1

        await ask(fake, people[3].id, "/logout", people[3], "unlinked")
    finally:
        code = await bot.stop()
    assert code == 0, bot.log[-3000:]
    tokens = [account.token for account in emulator.accounts.values()]
    assert not [t[:12] for t in tokens if t in bot.log], "a token in the bot's output"
    for chat in [*(p.id for p in people), GROUP]:
        assert not any(t in m.source for m in fake.bot_messages(chat) for t in tokens)
    if redis_url:
        assert not [key for token in tokens for key in redis_holds(redis_url, token)]
    problems = [line for line in bot.log.splitlines() if " ERROR " in line or "Traceback" in line]
    assert not problems, "\n".join(problems)


async def test_the_operators_shared_account_running_dry(
    fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path, redis_url: str | None
) -> None:
    operator = emulator.add_personal_account(credits=0)
    boss = person(9, "zh-hans")
    bot = await running(
        fake, emulator, tmp_path, redis_url, NEMO_TOKEN=operator.token, ADMIN_USER_IDS=str(boss.id)
    )
    try:
        await ask(fake, boss.id, "/start", boss, "试着说")  # the admin has a chat with the bot
        for someone in (person(1), person(2)):
            told = await ask(fake, someone.id, "make a video", someone, "shared credits are used up")
            assert "bind" not in told.source and "register" not in told.source
        await fake.wait_for_message(boss.id, "积分已用完", timeout=20)
        operator.credits_available = 40  # topped up, but still under the warning
        await ask(fake, person(1).id, "credits", person(1), "the bot's shared account")
        await fake.wait_for_message(boss.id, "积分不多了", timeout=20)
    finally:
        code = await bot.stop()
    assert code == 0, bot.log[-3000:]
    alerts = [m.text for m in fake.bot_messages(boss.id) if "共享" in m.text]
    assert len(alerts) == 2, alerts  # once dry (two people hit it), once low
    assert emulator.calls("anonymous_token") == []
    assert operator.token not in bot.log
