"""Media through the real handlers against the fake Bot API: album previews, and every place where
Telegram refuses a new kind of message falling back to what the bot said before."""

from __future__ import annotations

import asyncio

import pytest

from loopback.emulator import sample_draft
from loopback.fake_telegram import User
from loopback.servers import MEDIA
from tests.conftest import MakeHarness
from tests.harness import Harness, connect, user_says

CHAT = 888
ADA = User(CHAT, "Ada", "ada", language_code="en")
LI = User(CHAT, "Li", "li", language_code="zh-hans")
RENDERED = "/static/render/"


@pytest.fixture
async def bot(make_harness: MakeHarness) -> Harness:
    return await make_harness()


async def exported(bot: Harness) -> str:
    """A delivered video in the chat; its Telegram file id."""
    session_id = await connect(bot, CHAT, ADA)
    bot.emulator.set_draft(session_id, sample_draft())
    mark = await user_says(bot, CHAT, "export", ADA)
    video = await bot.fake.wait_for_message(CHAT, RENDERED, kind="video", after=mark, timeout=15)
    await closed(bot)
    return str(video.raw["video"]["file_id"])


async def closed(bot: Harness) -> None:
    """Until the chat's render is recorded as delivered (just after its video went), bounded."""
    for _ in range(100):
        if await bot.services.store.last_delivered(str(CHAT)) is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the render was not recorded as delivered")


async def test_an_albums_confirmation_is_one_silent_media_group_of_its_previews(bot: Harness) -> None:
    await connect(bot, CHAT, ADA)
    mark = bot.fake.message_count(CHAT)
    items = [
        ("photo", (MEDIA / "photo.jpg").read_bytes(), "a.jpg"),
        ("video", (MEDIA / "clip.mp4").read_bytes(), "clip.mp4"),
        ("document", (MEDIA / "photo.png").read_bytes(), "b.png"),
    ]
    for update in bot.fake.send_album(CHAT, items, user=ADA):
        await bot.send(update)
    first = await bot.fake.wait_for_message(CHAT, "Added to your project", after=mark)
    album = [m for m in bot.fake.bot_messages(CHAT)[mark:] if m.media_group_id]
    assert [m.kind for m in album] == ["photo", "video", "photo"] and album[0] is first
    assert len({m.media_group_id for m in album}) == 1 and all(m.disable_notification for m in album)
    assert [m.sent_as for m in album] == ["file_id", "file_id", "upload"]  # a document: its thumbnail
    assert first.text.count("•") == 3 and not album[1].text and not album[2].text
    assert len(bot.fake.calls_to("sendMediaGroup")) == 1


async def test_a_refused_preview_leaves_todays_text_confirmation(bot: Harness) -> None:
    await connect(bot, CHAT, ADA)
    bot.fake.fail_next("sendPhoto", error_code=400, description="Bad Request: PHOTO_INVALID_DIMENSIONS")
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.send_photo(CHAT, (MEDIA / "photo.jpg").read_bytes(), user=ADA))
    added = await bot.fake.wait_for_message(CHAT, "Added to your project", after=mark)
    assert added.kind == "text" and "photo_1.jpg — image" in added.text
    assert not [m for m in bot.fake.bot_messages(CHAT)[mark:] if m.kind == "photo"]


async def test_a_refused_thumbnail_still_delivers_the_video_once(bot: Harness) -> None:
    bot.fake.fail_next("sendVideo", error_code=400, description="Bad Request: wrong thumbnail dimensions")
    await exported(bot)
    (video,) = [m for m in bot.fake.bot_messages(CHAT) if m.kind == "video"]
    assert video.thumbnail is None and "width" not in video.params and video.params["duration"] == 2
    assert bot.fake.uploaded_videos == 1


async def test_send_it_again_without_a_video_says_how_to_make_one(bot: Harness) -> None:
    await connect(bot, CHAT, ADA)
    mark = await user_says(bot, CHAT, "send it again", ADA)
    await bot.fake.wait_for_message(CHAT, "no finished video in this chat yet", after=mark)
    mark = await user_says(bot, CHAT, "再发一次", LI)
    await bot.fake.wait_for_message(CHAT, "还没有完成的视频", after=mark)
    assert not bot.fake.calls_to("sendVideo")


async def test_send_it_again_in_chinese(bot: Harness) -> None:
    file_id = await exported(bot)
    mark = await user_says(bot, CHAT, "再发一次", LI)
    again = await bot.fake.wait_for_message(CHAT, "再发一次你的视频", kind="video", after=mark)
    assert again.raw["video"]["file_id"] == file_id and bot.fake.uploaded_videos == 1


async def test_a_refused_file_id_is_answered_with_the_link(bot: Harness) -> None:
    await exported(bot)
    bot.fake.fail_next("sendVideo", error_code=400, description="Bad Request: wrong file identifier")
    mark = await user_says(bot, CHAT, "send it again", ADA)
    link = await bot.fake.wait_for_message(CHAT, "Your video is ready! Download", after=mark)
    assert link.kind == "text" and RENDERED in link.text and bot.fake.uploaded_videos == 1


async def test_a_video_too_large_for_telegram_is_sent_again_as_its_link_with_its_size(bot: Harness) -> None:
    session_id = await connect(bot, CHAT, ADA)
    bot.emulator.set_draft(session_id, sample_draft())
    bot.services._renders._upload_limit = 1000  # the rendered clip is 30 KB
    mark = await user_says(bot, CHAT, "export", ADA)
    await bot.fake.wait_for_message(CHAT, "too large to send here", after=mark, timeout=15)
    await closed(bot)
    mark = await user_says(bot, CHAT, "resend", ADA)
    again = await bot.fake.wait_for_message(CHAT, "too large to send here", after=mark)
    assert "(30 KB)" in again.text and RENDERED in again.text
    assert not bot.fake.calls_to("sendVideo")
    mark = await user_says(bot, CHAT, "export", ADA)  # the same draft, but no file to reuse: rendered
    await bot.fake.wait_for_message(CHAT, "too large to send here", after=mark, timeout=15)
    assert len(bot.emulator.calls("render_start")) == 2


async def test_a_changed_draft_is_rendered_again(bot: Harness) -> None:
    await exported(bot)
    session_id = next(iter(bot.emulator.sessions))
    draft = sample_draft()
    draft["t"][0]["sg"][0]["d"] = 12000
    bot.emulator.set_draft(session_id, draft)
    mark = await user_says(bot, CHAT, "export", ADA)
    await bot.fake.wait_for_message(CHAT, "Your video is ready!", kind="video", after=mark, timeout=15)
    assert len(bot.emulator.calls("render_start")) == 2 and bot.fake.uploaded_videos == 2
