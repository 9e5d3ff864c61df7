"""Several projects and the studio, end to end: the real `python -m bot` against the emulator, the
fake Bot API and a real redis-server, the studio's API over loopback HTTP, and its page in Debian's
chromium (skipped where chromium or playwright is missing)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopback.bot_process import BotProcess
from loopback.emulator import NemoEmulator, sample_draft
from loopback.fake_telegram import FakeTelegram, User
from loopback.servers import free_port
from tests.studio_browser import requires_browser, studio_page
from tests.test_e2e_accounts import redis_url  # noqa: F401  # the fixture: a real redis-server
from tests.test_studio_pure import signed

ADA = User(4242, "Ada", "ada", language_code="en")
STUDIO = "https://studio.example/studio"  # the public address; the tests call the bot's port directly


async def ask(fake: FakeTelegram, text: str, expect: str, user: User = ADA) -> Any:
    mark = fake.message_count(user.id)
    if text.startswith("/"):
        fake.send_command(user.id, text, user=user)
    else:
        fake.send_text(user.id, text, user=user)
    return await fake.wait_for_message(user.id, expect, after=mark, timeout=20)


@pytest.fixture
async def bot(
    fake: FakeTelegram,
    emulator: NemoEmulator,
    tmp_path: Path,
    redis_url: str | None,  # noqa: F811
) -> AsyncIterator[tuple[BotProcess, str]]:
    port = free_port()
    settings = {"MINI_APP_URL": STUDIO, "HTTP_PORT": str(port), "MINI_APP_REFRESH_SECONDS": "1"}
    if redis_url:
        settings["REDIS_URL"] = redis_url
    process = BotProcess(fake, emulator, tmp_path, **settings)
    await process.start()
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        assert await process.stop() == 0, process.log[-3000:]


def sessions(emulator: NemoEmulator) -> list[str]:
    return list(emulator.sessions)  # in the order the bot made them


async def test_projects_switch_rename_and_a_render_delivered_into_its_project(
    bot: tuple[BotProcess, str], fake: FakeTelegram, emulator: NemoEmulator
) -> None:
    await ask(fake, "/start", "Connected and ready")
    first = sessions(emulator)[0]
    emulator.set_draft(first, sample_draft())
    emulator.render_polls_per_step = 15  # about 6 s at the test's poll interval: time to switch
    await ask(fake, "export", "Render")

    created = await ask(fake, "/new", "Started a fresh project, Project 2")
    assert "/projects" in created.text
    second = sessions(emulator)[-1]
    assert second != first
    await ask(fake, "/rename Summer teaser", "now called Summer teaser")

    listing = await ask(fake, "/projects", "Your projects")
    assert "Project 1" in listing.text and "rendering" in listing.text.split("Summer teaser")[0]
    assert "Summer teaser (current)" in listing.text
    data = [b.get("callback_data") for b in listing.buttons]
    assert data == ["act:project:1", "act:project:2", "act:new"]

    # The render started in Project 1 reaches the chat while Project 2 is current, once.
    video = await fake.wait_for_message(ADA.id, kind="video", timeout=30)
    assert [r.session_id for r in emulator.renders.values()] == [first]
    await asyncio.sleep(0.5)
    assert sum(m.kind == "video" for m in fake.bot_messages(ADA.id)) == 1 and video.thread_id is None

    # Switching back brings Project 1's session (and its timeline) back, not a new one.
    mark = fake.message_count(ADA.id)
    fake.press_button(ADA.id, listing.message_id, "act:project:1", user=ADA)
    await fake.wait_for_message(ADA.id, "Switched to Project 1", after=mark, timeout=20)
    status = await ask(fake, "status", "Timeline")
    assert "city timelapse" in status.text
    assert sessions(emulator) == [first, second]
    again = await ask(fake, "/projects", "Your projects")
    assert "Project 1 (current)" in again.text and "Summer teaser ·" in again.text


async def test_the_studio_answers_only_signed_init_data_and_acts_in_the_chat(
    bot: tuple[BotProcess, str], fake: FakeTelegram, emulator: NemoEmulator
) -> None:
    process, base = bot
    await ask(fake, "/start", "Connected and ready")
    emulator.set_draft(sessions(emulator)[0], sample_draft())
    assert fake.menu_button is not None and fake.menu_button["web_app"]["url"] == STUDIO
    timeline = await ask(fake, "status", "Timeline")
    assert {"text": "🎛 Studio", "web_app": {"url": STUDIO}} in timeline.buttons

    user = {"id": ADA.id, "first_name": "Ada", "language_code": "en"}
    good = {"Authorization": "tma " + signed(user, token=fake.token)}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        page = await http.get("/studio")
        assert page.status_code == 200 and "studio.js" in page.text
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self' https://telegram.org;" in policy and "connect-src 'self'" in policy

        state = (await http.post("/studio/api/state", headers=good, json={})).json()
        names = [s["name"] for t in state["tracks"] for s in t["segments"]]
        assert names == ["city timelapse", "Lo-fi", "Urban Dreams"]
        assert state["project"]["name"] == "Project 1" and state["credits"]["account"] == "trial"

        calls_before = len(emulator.requests)
        stale = "tma " + signed(user, token=fake.token, auth_date=int(time.time()) - 7200)
        forged = good["Authorization"].replace("Ada", "Eve")
        other_bot = "tma " + signed(user, token="1:another-bot")
        for header in (None, stale, forged, other_bot):
            answer = await http.post(
                "/studio/api/act",
                headers={"Authorization": header} if header else {},
                json={"action": "export"},
            )
            assert answer.status_code == 401 and answer.json() == {"error": "unauthorized"}
        assert len(emulator.requests) == calls_before  # nothing was asked of the backend

        mark = fake.message_count(ADA.id)
        answer = await http.post(
            "/studio/api/segment", headers=good, json={"track": 0, "segment": 0, "op": "remove"}
        )
        assert answer.status_code == 202
        await fake.wait_for_message(
            ADA.id, "Remove “city timelapse” (Video, 0:00–0:10)", after=mark, timeout=20
        )
        await fake.wait_for_message(ADA.id, "on the timeline", after=mark, timeout=20)

        mark = fake.message_count(ADA.id)
        answer = await http.post("/studio/api/act", headers=good, json={"action": "ratio_9_16"})
        assert answer.status_code == 202
        await fake.wait_for_message(ADA.id, "🗣 Change the aspect ratio to 9:16", after=mark, timeout=20)
        await fake.wait_for_message(ADA.id, "on the timeline", after=mark, timeout=20)
        assert (
            emulator.calls("run_sse")[-1]
            .json["new_message"]["parts"][0]["text"]
            .startswith("Change the aspect ratio to 9:16")
        )

        # A tap on a timeline drawn before the last turn changed it: refused, with words for the page.
        stale = await http.post(
            "/studio/api/segment",
            headers=good,
            json={"track": 0, "segment": 0, "op": "remove", "digest": state["digest"]},
        )
        assert stale.status_code == 409 and "has changed" in stale.json()["message"]

        # Another person's valid initData acts only in their own chat, never in Ada's.
        bob = {"id": 5151, "first_name": "Bob", "language_code": "zh"}
        theirs = {"Authorization": "tma " + signed(bob, token=fake.token)}
        mark, bob_mark = fake.message_count(ADA.id), fake.message_count(5151)
        empty = (await http.post("/studio/api/state", headers=theirs, json={})).json()
        assert empty["tracks"] == [] and empty["video"] is None and empty["lang"] == "zh"
        assert (
            await http.post("/studio/api/act", headers=theirs, json={"action": "music"})
        ).status_code == 202
        await fake.wait_for_message(5151, "🗣", after=bob_mark, timeout=20)
        assert not any("🗣" in m.text for m in fake.bot_messages(ADA.id)[mark:])  # nothing asked in Ada's chat

        missing = await http.post(
            "/studio/api/segment", headers=good, json={"track": 9, "segment": 0, "op": "remove"}
        )
        assert missing.status_code == 409
        unknown = await http.post("/studio/api/act", headers=good, json={"action": "stop"})
        assert unknown.status_code == 400
    assert fake.token not in process.log


@requires_browser
async def test_the_studio_page_in_chromium_shows_the_project_and_reaches_the_agent(
    bot: tuple[BotProcess, str], fake: FakeTelegram, emulator: NemoEmulator
) -> None:
    _, base = bot
    await ask(fake, "/start", "Connected and ready")
    emulator.set_draft(sessions(emulator)[0], sample_draft())
    mark = fake.message_count(ADA.id)
    fake.send_text(ADA.id, "export", user=ADA)
    await fake.wait_for_message(ADA.id, kind="video", after=mark, timeout=30)

    user = {"id": ADA.id, "first_name": "Ada", "language_code": "en"}
    async with studio_page(base, signed(user, token=fake.token)) as page:
        await page.locator(".segment", has_text="city timelapse").wait_for()
        await page.locator("#last-video").wait_for()
        mark = fake.message_count(ADA.id)
        await page.locator("[data-action=ratio_9_16]").click()
        await page.locator("#toast").wait_for()
        await fake.wait_for_message(ADA.id, "🗣 Change the aspect ratio to 9:16", after=mark, timeout=20)

    forged = signed(user, token=fake.token).replace("Ada", "Eve")
    async with studio_page(base, forged) as page:
        error = page.locator("#studio-error")
        await error.wait_for()
        assert "could not be verified" in await error.inner_text()


async def test_with_project_topics_a_new_project_is_a_topic_of_its_own(
    fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path
) -> None:
    fake.private_topics = True  # the bot's owner turned topics on for private chats (Bot API 9.4)
    port = free_port()
    process = BotProcess(
        fake, emulator, tmp_path, PROJECT_TOPICS="true", MINI_APP_URL=STUDIO, HTTP_PORT=str(port)
    )
    await process.start()
    try:
        await ask(fake, "/start", "Connected and ready")
        made = await ask(fake, "/new", "This topic is your new project, Project 2")
        [call] = [c for c in fake.calls if c.method == "createForumTopic"]
        assert call.params["name"] == "Project 2" and made.thread_id is not None

        mark = fake.message_count(ADA.id)
        fake.send_text(ADA.id, "make a 10-second teaser", user=ADA, thread_id=made.thread_id)
        reply = await fake.wait_for_message(ADA.id, "on the timeline", after=mark, timeout=20)
        assert reply.thread_id == made.thread_id  # answered in the topic
        assert len(emulator.sessions) == 2  # the topic's own project; the chat's first one is kept
        status = await ask(fake, "status", "Timeline")
        assert status.thread_id is None and "generated clip" not in status.text  # the topic's, not the chat's

        # The studio opened from the topic shows, and acts on, the topic's project.
        mark = fake.message_count(ADA.id)
        fake.send_text(ADA.id, "status", user=ADA, thread_id=made.thread_id)
        timeline = await fake.wait_for_message(ADA.id, "Timeline", after=mark, timeout=20)
        studio = [b for b in timeline.buttons if "web_app" in b]
        assert studio == [{"text": "🎛 Studio", "web_app": {"url": f"{STUDIO}?topic={made.thread_id}"}}]
        user = {"id": ADA.id, "first_name": "Ada", "language_code": "en"}
        good = {"Authorization": "tma " + signed(user, token=fake.token)}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            state = await http.post("/studio/api/state", headers=good, json={"topic": made.thread_id})
            names = [s["name"] for t in state.json()["tracks"] for s in t["segments"]]
            assert names == ["generated clip"]
            mark = fake.message_count(ADA.id)
            act = await http.post(
                "/studio/api/act", headers=good, json={"action": "music", "topic": made.thread_id}
            )
            assert act.status_code == 202
        asked = await fake.wait_for_message(ADA.id, "🗣", after=mark, timeout=20)
        assert asked.thread_id == made.thread_id
    finally:
        assert await process.stop() == 0, process.log[-3000:]
