"""End to end, media: the real bot process against the fake Bot API and the emulator, as a user sees it.

The finished video with its real size, length and thumbnail (and sent again by its file id, never
uploaded twice); one silent render progress message; a large upload's progress; previews of uploads
and of what the agent generated.
"""

from __future__ import annotations

import io
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from loopback.bot_process import BotProcess
from loopback.emulator import NemoEmulator
from loopback.fake_telegram import FakeTelegram, Message, User
from loopback.servers import MEDIA

CHAT = 6161
USER = User(CHAT, "Ada", "ada", language_code="en")
RENDERED = "/static/render/"  # in the rendered video's caption


@pytest.fixture
async def bot(fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path) -> AsyncIterator[BotProcess]:
    process = BotProcess(fake, emulator, tmp_path, UPLOAD_PROGRESS_MIN_MB="1", UPLOAD_PROGRESS_SECONDS="0.05")
    await process.start()
    try:
        yield process
    finally:
        code = await process.stop()
        assert code == 0, process.log[-3000:]
        problems = [line for line in process.log.splitlines() if " ERROR " in line or "Traceback" in line]
        assert not problems, "\n".join(problems)


async def connected(fake: FakeTelegram, chat: int = CHAT, user: User = USER) -> None:
    fake.send_command(chat, "/start", user=user)
    await fake.wait_for_message(chat, "Connected and ready", timeout=20)


async def deleted(fake: FakeTelegram, message: Message) -> None:
    await fake.wait_for(
        lambda c: c.method == "deleteMessage" and c.ok and c.params.get("message_id") == message.message_id
    )
    assert message.deleted


async def test_the_video_arrives_measured_with_a_thumbnail_and_goes_again_by_its_file_id(
    fake: FakeTelegram, emulator: NemoEmulator, bot: BotProcess
) -> None:
    await connected(fake)
    mark = fake.message_count(CHAT)
    fake.send_photo(CHAT, (MEDIA / "photo.jpg").read_bytes(), user=USER)
    added = await fake.wait_for_message(CHAT, "Added to your project", after=mark)
    # The confirmation carries the photo itself, silently, by the file id the user's photo has
    assert (added.kind, added.sent_as, added.disable_notification) == ("photo", "file_id", True)
    assert "photo_1.jpg — image" in added.text
    for notice in fake.bot_messages(CHAT)[mark:]:  # (a cosmetic notice: under load it is left out)
        if "Uploading" in notice.text:
            await deleted(fake, notice)  # replaced by the confirmation

    fake.send_text(CHAT, "make a promo", user=USER)
    await fake.wait_for_message(CHAT, "on the timeline")
    emulator.render_polls_per_step = 2
    mark = fake.message_count(CHAT)
    fake.send_text(CHAT, "export", user=USER)
    video = await fake.wait_for_message(CHAT, RENDERED, kind="video", after=mark, timeout=30)

    # Measured from the MP4 the emulator served (tests/media/clip.mp4: 320x240, 2 s)
    assert video.file is not None and video.file.data == (MEDIA / "clip.mp4").read_bytes()
    assert (video.params["width"], video.params["height"], video.params["duration"]) == (320, 240, 2)
    assert video.params["supports_streaming"] is True
    assert video.thumbnail is not None
    with Image.open(io.BytesIO(video.thumbnail.data)) as thumbnail:
        assert thumbnail.format == "JPEG" and thumbnail.size == (320, 240)
    assert video.sent_as == "upload" and fake.uploaded_videos == 1
    assert not video.disable_notification  # the one message that rings

    # One progress message, edited as the render advanced, silent
    progress = [m for m in fake.bot_messages(CHAT)[mark:] if m.kind == "text"]
    assert len(progress) == 1, [m.history for m in progress]
    (message,) = progress
    assert message.disable_notification and message.history[0] == "🎬 Export queued…"
    assert any("▓▓▓▓▓░░░░░ 50% · ⏱ 00:0" in text for text in message.history), message.history
    assert message.text == "✅ Render complete, sending your video…"

    # "send it again": the same Telegram file, nothing uploaded
    file_id = video.raw["video"]["file_id"]
    fake.send_text(CHAT, "send it again", user=USER)
    again = await fake.wait_for_message(CHAT, "Here's your video again", kind="video")
    assert (again.sent_as, again.raw["video"]["file_id"]) == ("file_id", file_id)
    assert RENDERED in again.text and fake.uploaded_videos == 1

    # export with the draft unchanged since: that video again, no render, no upload
    fake.send_text(CHAT, "export", user=USER)
    same = await fake.wait_for_message(CHAT, "hasn't changed since your last export", kind="video")
    assert same.sent_as == "file_id" and same.raw["video"]["file_id"] == file_id
    assert len(emulator.calls("render_start")) == 1 and fake.uploaded_videos == 1

    mark = fake.message_count(CHAT)
    fake.send_text(CHAT, "再发一次", user=USER)
    last = await fake.wait_for_message(CHAT, "Here's your video again", kind="video", after=mark)
    assert last.raw["video"]["file_id"] == file_id and fake.uploaded_videos == 1


def big_mp4(megabytes: int) -> bytes:
    """A real MP4 (tests/media/clip.mp4) made `megabytes` large by a trailing `free` box."""
    data = (MEDIA / "clip.mp4").read_bytes()
    padding = megabytes * 1024 * 1024 - len(data) - 8
    return data + struct.pack(">I4s", padding + 8, b"free") + bytes(padding)


async def test_a_large_upload_shows_its_progress_then_the_confirmation(
    fake: FakeTelegram, emulator: NemoEmulator, bot: BotProcess
) -> None:
    await connected(fake)
    emulator.upload_read_pause = 0.01  # a slow link: about a second for 6 MB
    mark = fake.message_count(CHAT)
    data = big_mp4(6)
    fake.send_video(CHAT, data, file_name="holiday.mp4", size=len(data), user=USER)
    added = await fake.wait_for_message(CHAT, "Added to your project", after=mark, timeout=30)
    assert "holiday.mp4 — video" in added.text
    assert (added.kind, added.sent_as, added.disable_notification) == ("video", "file_id", True)
    notice = await fake.wait_for_message(CHAT, "Uploading 1 file", after=mark)
    shown = [text for text in notice.history if "%" in text]
    assert shown and all("▓" in text or "░" in text for text in shown), notice.history
    assert any("of 6.0 MB" in text for text in shown)
    assert notice.disable_notification  # silent, then replaced
    await deleted(fake, notice)
    assert emulator.calls("upload")[-1].files == [("holiday.mp4", len(data))]
    assert fake.uploaded_videos == 0  # the preview is the user's own video, by its file id


async def test_a_picture_the_agent_generates_arrives_as_a_photo(
    fake: FakeTelegram, emulator: NemoEmulator, bot: BotProcess
) -> None:
    await connected(fake)
    mark = fake.message_count(CHAT)
    fake.send_text(CHAT, "make a picture of a sunset", user=USER)
    photo = await fake.wait_for_message(CHAT, "New image in your project", after=mark, timeout=20)
    assert (photo.kind, photo.sent_as, photo.disable_notification) == ("photo", "url", True)
    assert "generated image" in photo.text
    assert fake.fetched_urls[-1].startswith(emulator.base_url + "/cdn/generated/image_1.jpg")

    emulator.cdn_image = b"<html>not a picture</html>"  # Telegram refuses what the URL serves
    mark = fake.message_count(CHAT)
    fake.send_text(CHAT, "make another picture", user=USER)
    text = await fake.wait_for_message(CHAT, "New image in your project", after=mark, timeout=20)
    assert text.kind == "text" and "/cdn/generated/image_2.jpg" in text.text  # named, with its link
