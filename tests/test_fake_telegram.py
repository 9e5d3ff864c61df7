"""The fake Bot API server, exercised through a real python-telegram-bot ``Bot``."""

from __future__ import annotations

import asyncio
import io
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    InputMediaVideo,
    ReplyParameters,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter

from bot.telegram.probe import image_thumbnail
from loopback.fake_telegram import FakeTelegram, User, WebhookDelivery, parse_html

MEDIA = Path(__file__).parent / "media"
CHAT = 4242


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as tg_bot:
        yield tg_bot


async def test_get_me(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == fake.bot_id == 123456
    assert me.username == "nemo_test_bot"
    assert me.first_name == "Nemo Test"
    assert me.is_bot and me.can_join_groups
    assert me.can_read_all_group_messages is False
    assert fake.calls[0].method == "getMe" and fake.calls[0].ok


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{fake.base_url}999:nope/getMe")
    assert response.status_code == 401
    assert response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    with pytest.raises(InvalidToken):
        async with Bot("999:wrong", base_url=fake.base_url):
            pass


async def test_method_names_are_case_insensitive_and_unknown_ones_404(fake: FakeTelegram) -> None:
    async with httpx.AsyncClient() as client:
        ok = await client.post(f"{fake.base_url}{fake.token}/GETME")
        missing = await client.post(f"{fake.base_url}{fake.token}/sendTeleport", data={"chat_id": "1"})
    assert ok.json()["result"]["id"] == fake.bot_id
    assert fake.calls[0].method == "getMe"
    assert missing.status_code == 404
    assert missing.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_get_updates_long_poll_and_offset(fake: FakeTelegram, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=30) == ()
    assert time.monotonic() - started < 3, "the server caps long polls at 1 s"

    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await asyncio.sleep(0.1)
    assert not poll.done()
    sent = fake.send_text(CHAT, "hello bot")
    updates = await asyncio.wait_for(poll, 2)
    assert [u.update_id for u in updates] == [sent["update_id"]]
    message = updates[0].message
    assert message is not None
    assert message.text == "hello bot"
    assert message.chat.id == CHAT and message.chat.type == "private"
    assert message.from_user is not None and message.from_user.id == CHAT

    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [sent["update_id"]], "not confirmed yet"
    assert await bot.get_updates(offset=sent["update_id"] + 1, timeout=0) == ()
    assert fake.pending_updates == []


async def test_get_updates_limit(fake: FakeTelegram, bot: Bot) -> None:
    for i in range(3):
        fake.send_text(CHAT, f"m{i}")
    assert len(await bot.get_updates(limit=2)) == 2


async def test_second_poller_gets_conflict(fake: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=1))
    await asyncio.sleep(0.1)
    # PTB polls through a one-connection pool: a second Bot is needed
    async with Bot(fake.token, base_url=fake.base_url) as other:
        assert await other.get_updates(timeout=0) == ()
    with pytest.raises(Conflict, match=r"(?i)terminated by other getUpdates request"):
        await first


async def test_send_message_html_ok_and_broken(fake: FakeTelegram, bot: Bot) -> None:
    message = await bot.send_message(
        CHAT,
        "<b>Done</b> &amp; <a href='https://x.io/a?b=1&amp;c=2'>link</a> 1 & 2",
        parse_mode=ParseMode.HTML,
    )
    assert message.text == "Done & link 1 & 2"
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bold", 0, 4), ("text_link", 7, 4)]
    assert message.entities[1].url == "https://x.io/a?b=1&c=2"
    assert message.from_user is not None and message.from_user.id == fake.bot_id
    stored = fake.bot_messages(CHAT)[0]
    assert stored.text == "Done & link 1 & 2" and stored.kind == "text"

    for broken, detail in [
        ("<b>unclosed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
    ]:
        with pytest.raises(BadRequest, match=r"(?i)Can't parse entities") as err:
            await bot.send_message(CHAT, broken, parse_mode=ParseMode.HTML)
        assert "can't parse entities" in err.value.message.lower()
        assert fake.calls[-1].description == f"Bad Request: can't parse entities: {detail}"
    assert len(fake.bot_messages(CHAT)) == 1
    assert fake.calls[-1].status == 400


async def test_send_message_validation(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)too long"):
        await bot.send_message(CHAT, "x" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)text is empty"):
        await bot.send_message(CHAT, "   ")
    for markdown in (ParseMode.MARKDOWN_V2, ParseMode.MARKDOWN):  # the bot sends HTML only
        with pytest.raises(BadRequest, match=r"(?i)unsupported parse_mode"):
            await bot.send_message(CHAT, "*x*", parse_mode=markdown)
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(
            CHAT,
            "x",
            reply_markup=InlineKeyboardMarkup.from_button(InlineKeyboardButton("x", callback_data="y" * 65)),
        )
    with pytest.raises(BadRequest, match=r"(?i)replied not found"):
        await bot.send_message(CHAT, "x", reply_parameters=ReplyParameters(999))
    ok = await bot.send_message(
        CHAT, "x", reply_parameters=ReplyParameters(999, allow_sending_without_reply=True)
    )
    assert ok.reply_to_message is None
    assert (await bot.send_message(CHAT, "4096", parse_mode=None)).text == "4096"


async def test_reply_thread_and_markup_are_reflected(fake: FakeTelegram, bot: Bot) -> None:
    group = -1001234
    fake.set_chat(group, "supergroup", title="Makers", is_forum=True)
    asked = fake.send_command(group, "/start", thread_id=7)
    question = asked["message"]
    assert question["is_topic_message"] and question["message_thread_id"] == 7
    assert question["reply_to_message"]["forum_topic_created"]["name"] == "Topic 7"
    markup = InlineKeyboardMarkup.from_button(InlineKeyboardButton("Export", callback_data="export"))
    reply = await bot.send_message(
        group,
        "Hi",
        message_thread_id=7,
        reply_markup=markup,
        reply_parameters=ReplyParameters(question["message_id"]),
    )
    assert reply.message_thread_id == 7 and reply.is_topic_message
    assert reply.reply_to_message is not None and reply.reply_to_message.text == "/start"
    assert reply.reply_markup == markup
    stored = fake.bot_messages(group)[0]
    assert (stored.thread_id, stored.reply_to) == (7, question["message_id"])
    assert stored.buttons == [{"text": "Export", "callback_data": "export"}]

    update = Update.de_json(fake.press_button(group, reply.message_id, "export"), bot)
    query = update.callback_query
    assert query is not None and query.data == "export" and query.message is not None
    assert query.message.message_id == reply.message_id
    assert await query.answer("ok")
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await query.answer("twice")
    with pytest.raises(ValueError, match="no button"):
        fake.press_button(group, reply.message_id, "nope")


async def test_edit_message(fake: FakeTelegram, bot: Bot) -> None:
    markup = InlineKeyboardMarkup.from_button(InlineKeyboardButton("Stop", callback_data="stop"))
    sent = await bot.send_message(CHAT, "Rendering 10%", reply_markup=markup)
    edited = await bot.edit_message_text(
        "Rendering 50%", chat_id=CHAT, message_id=sent.message_id, reply_markup=markup
    )
    assert isinstance(edited, type(sent)) and edited.text == "Rendering 50%" and edited.edit_date is not None
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text(
            "Rendering 50%", chat_id=CHAT, message_id=sent.message_id, reply_markup=markup
        )
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=999)
    # Without reply_markup Telegram drops the keyboard.
    await bot.edit_message_text("Done", chat_id=CHAT, message_id=sent.message_id)
    message = fake.bot_messages(CHAT)[0]
    assert message.text == "Done" and message.reply_markup is None
    assert message.history == ["Rendering 10%", "Rendering 50%", "Done"]
    assert await bot.delete_message(CHAT, sent.message_id)
    assert fake.bot_messages(CHAT)[0].deleted
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(CHAT, sent.message_id)


async def test_send_video_with_bytes_is_recorded(fake: FakeTelegram, bot: Bot) -> None:
    data = (MEDIA / "clip.mp4").read_bytes()
    message = await bot.send_video(
        CHAT,
        data,
        caption="<b>Your video</b>",
        parse_mode=ParseMode.HTML,
        filename="promo.mp4",
        duration=30,
        width=1920,
        height=1080,
    )
    assert message.video is not None
    assert (message.video.width, message.video.file_size) == (1920, len(data))
    assert message.video.file_name == "promo.mp4" and message.video.mime_type == "video/mp4"
    assert message.caption == "Your video"
    call = fake.calls_to("sendVideo")[0]
    assert call.response is not None and call.response["result"]["video"]["duration"] == 30
    assert call.params["duration"] == 30 and call.params["chat_id"] == CHAT
    assert call.files["video"].data == data and call.files["video"].filename == "promo.mp4"
    stored = fake.bot_messages(CHAT)[0]
    assert stored.kind == "video" and stored.file is not None and stored.file.data == data
    assert stored.text == "Your video" and stored.raw["video"]["file_id"] == message.video.file_id
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
        await bot.send_video(CHAT, "not-a-file-id")


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (37, 99, 235)).save(out, format="PNG")
    return out.getvalue()


async def test_send_photo_with_bytes_is_recorded(fake: FakeTelegram, bot: Bot) -> None:
    data = _png(900, 200)
    markup = InlineKeyboardMarkup.from_button(InlineKeyboardButton("9:16", callback_data="act:ratio_9_16"))
    message = await bot.send_photo(
        CHAT, data, caption="<b>Timeline</b> (1 track)", parse_mode=ParseMode.HTML, reply_markup=markup
    )
    assert message.photo and (message.photo[-1].width, message.photo[-1].height) == (900, 200)
    assert message.caption == "Timeline (1 track)" and message.caption_entities[0].type == "bold"
    call = fake.calls_to("sendPhoto")[0]
    assert call.files["photo"].data == data
    stored = fake.bot_messages(CHAT)[0]
    assert stored.kind == "photo" and stored.file is not None and stored.file.data == data
    assert stored.text == "Timeline (1 track)" and stored.source == "<b>Timeline</b> (1 track)"
    assert [b["callback_data"] for b in stored.buttons] == ["act:ratio_9_16"]
    assert (await fake.wait_for_message(CHAT, "timeline", kind="photo")) is stored


async def test_send_photo_is_checked_like_telegram(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)IMAGE_PROCESS_FAILED"):
        await bot.send_photo(CHAT, b"not an image at all", filename="x.png")
    with pytest.raises(BadRequest, match=r"(?i)PHOTO_INVALID_DIMENSIONS"):
        await bot.send_photo(CHAT, _png(2100, 100))  # a ratio over 20
    with pytest.raises(BadRequest, match=r"(?i)caption is too long"):
        await bot.send_photo(CHAT, _png(10, 10), caption="x" * 1025)
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_photo(CHAT, _png(10, 10), caption="<b>open", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
        await bot.send_photo(CHAT, "not-a-file-id")
    assert fake.bot_messages(CHAT) == []
    await bot.send_photo(CHAT, _png(10, 10), caption="é" * 1024)  # the limit itself passes


async def test_media_by_file_id_url_and_album(fake: FakeTelegram, bot: Bot) -> None:
    """What Telegram refuses, the fake refuses: a file id of the other type, a URL that serves the
    wrong thing, an album of one; what it takes is recorded with how it came."""
    clip = (MEDIA / "clip.mp4").read_bytes()
    with pytest.raises(BadRequest, match=r"(?i)at most 320x320"):
        await bot.send_video(CHAT, clip, thumbnail=(MEDIA / "photo.jpg").read_bytes())  # 640x480
    sent = await bot.send_video(CHAT, clip, thumbnail=image_thumbnail(MEDIA / "photo.jpg"))
    assert sent.video is not None and fake.uploaded_videos == 1
    again = await bot.send_video(CHAT, sent.video.file_id, disable_notification=True)
    assert again.video is not None and again.video.file_id == sent.video.file_id
    first, second = fake.bot_messages(CHAT)
    assert first.thumbnail is not None and first.sent_as == "upload" and not first.disable_notification
    assert second.sent_as == "file_id" and second.disable_notification and fake.uploaded_videos == 1
    with pytest.raises(BadRequest, match=r"(?i)can't use file of type video as photo"):
        await bot.send_photo(CHAT, sent.video.file_id)
    photo_url = f"{fake.base_file_url}{fake.token}/nothing-here.jpg"
    with pytest.raises(BadRequest, match=r"(?i)failed to get HTTP URL content"):
        await bot.send_photo(CHAT, photo_url)
    assert fake.fetched_urls == [photo_url]
    photo = Update.de_json(fake.send_photo(CHAT, (MEDIA / "photo.jpg").read_bytes()), bot)
    assert photo.message is not None
    path = (await bot.get_file(photo.message.photo[-1].file_id)).file_path
    assert path is not None
    with pytest.raises(BadRequest, match=r"(?i)wrong type of the web page content"):
        await bot.send_video(CHAT, path)  # a JPEG is not an MP4
    shown = await bot.send_photo(CHAT, path, caption="by URL")
    assert shown.photo and fake.bot_messages(CHAT)[-1].sent_as == "url"
    with pytest.raises(BadRequest, match=r"(?i)too few media"):
        await bot.send_media_group(CHAT, [InputMediaPhoto(photo.message.photo[-1].file_id)])
    album = await bot.send_media_group(
        CHAT,
        [InputMediaPhoto(photo.message.photo[-1].file_id, caption="two"), InputMediaVideo(clip)],
        disable_notification=True,
    )
    assert [m.media_group_id for m in album] == [album[0].media_group_id] * 2 and album[0].caption == "two"
    assert [m.sent_as for m in fake.bot_messages(CHAT)[-2:]] == ["file_id", "upload"]


async def test_get_file_and_download(fake: FakeTelegram, bot: Bot) -> None:
    data = (MEDIA / "clip.mp4").read_bytes()
    update = Update.de_json(fake.send_video(CHAT, data, caption="cut this"), bot)
    assert update.message is not None and update.message.video is not None
    video = update.message.video
    assert (video.file_size, video.mime_type, video.file_name) == (len(data), "video/mp4", "clip.mp4")
    tg_file = await bot.get_file(video.file_id)
    assert tg_file.file_path is not None and tg_file.file_path.startswith(
        f"{fake.base_file_url}{fake.token}/videos/"
    )
    assert tg_file.file_path.endswith(".mp4")
    assert bytes(await tg_file.download_as_bytearray()) == data
    buffer = io.BytesIO()
    await tg_file.download_to_memory(buffer)
    assert buffer.getvalue() == data

    async with httpx.AsyncClient() as client:
        missing = await client.get(f"{fake.base_file_url}{fake.token}/videos/nope.mp4")
    assert missing.status_code == 404
    with pytest.raises(BadRequest, match=r"(?i)invalid file_id"):
        await bot.get_file("unknown")


def _document_id(fake: FakeTelegram, data: bytes, *, size: int | None = None) -> str:
    """The file_id of a document a user sends (a file the bot may fetch with getFile)."""
    return str(fake.send_document(CHAT, data, size=size)["message"]["document"]["file_id"])


async def test_file_too_big(fake: FakeTelegram, bot: Bot) -> None:
    file_id = _document_id(fake, b"head of a big file", size=30 * 1024 * 1024)
    with pytest.raises(BadRequest, match=r"(?i)file is too big"):
        await bot.get_file(file_id)
    update = Update.de_json(
        fake.send_document(CHAT, b"x", "big.mov", "video/quicktime", size=25_000_000), bot
    )
    assert update.message is not None and update.message.document is not None
    assert update.message.document.file_size == 25_000_000
    with pytest.raises(BadRequest, match=r"(?i)file is too big"):
        await bot.get_file(update.message.document.file_id)


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter.__init__
async def test_fail_next_429_and_block(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", retry_after=3)
    with pytest.raises(RetryAfter) as err:
        await bot.send_message(CHAT, "hi")
    assert "retry in 3" in str(err.value).lower()
    assert fake.calls[-1].response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    assert (await bot.send_message(CHAT, "hi")).text == "hi", "only the next call fails"

    file_id = _document_id(fake, b"data")
    fake.fail_next("getfile", error_code=502, times=2)
    for _ in range(2):
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.get_file(file_id)
    assert (await bot.get_file(file_id)).file_size == 4

    fake.block_bot(CHAT)
    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await bot.send_message(CHAT, "hi")
    with pytest.raises(Forbidden):
        await bot.send_chat_action(CHAT, "typing")
    fake.unblock_bot(CHAT)
    assert await bot.send_chat_action(CHAT, "upload_video")


# -- Telegram's flood limits, counters and update ids ---------------------------------------------


async def _send(
    client: httpx.AsyncClient, fake: FakeTelegram, chat_id: int, text: str = "hi"
) -> httpx.Response:
    return await client.post(
        f"{fake.base_url}{fake.token}/sendMessage", data={"chat_id": chat_id, "text": text}
    )


async def _send_many(fake: FakeTelegram, chat_ids: list[int]) -> list[int]:
    """One sendMessage per chat id, all at once; the HTTP statuses, sorted (arrival order may vary)."""
    async with httpx.AsyncClient() as client:
        responses = await asyncio.gather(*(_send(client, fake, chat_id) for chat_id in chat_ids))
    return sorted(response.status_code for response in responses)


def _too_many(retry_after: int) -> dict[str, object]:
    return {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {retry_after}",
        "parameters": {"retry_after": retry_after},
    }


async def test_flood_limits_are_off_by_default(fake: FakeTelegram, bot: Bot) -> None:
    assert not fake.flood_limits
    assert await _send_many(fake, [CHAT] * 12) == [200] * 12
    assert await bot.send_chat_action(CHAT, "typing")
    assert fake.too_many_requests == 0


async def test_flood_per_chat_bucket_passes_a_burst_of_three_then_one_per_second(fake: FakeTelegram) -> None:
    fake.enable_flood_limits()
    assert await _send_many(fake, [CHAT] * 3) == [200] * 3
    async with httpx.AsyncClient() as client:
        fourth = await _send(client, fake, CHAT)
        assert fourth.status_code == 429 and fourth.json() == _too_many(1)
        assert (await _send(client, fake, CHAT + 1)).status_code == 200, "every chat has its own bucket"
    assert fake.too_many_requests == 1

    fake.enable_flood_limits(chat_rate=5)  # refilled every 0.2 s: the sustained rate without long sleeps
    assert await _send_many(fake, [CHAT] * 4) == [200, 200, 200, 429]
    await asyncio.sleep(0.21)
    assert await _send_many(fake, [CHAT] * 2) == [200, 429]
    fake.enable_flood_limits(False)
    assert await _send_many(fake, [CHAT] * 5) == [200] * 5


async def test_flood_global_limit_is_30_per_sliding_second(fake: FakeTelegram) -> None:
    fake.enable_flood_limits()
    chats = [user.id for user in fake.users(31)]
    assert await _send_many(fake, chats[:30]) == [200] * 30
    async with httpx.AsyncClient() as client:
        refused = await _send(client, fake, chats[30])
    assert refused.status_code == 429 and refused.json() == _too_many(1)

    fake.enable_flood_limits(global_limit=3, global_window=0.3)
    assert await _send_many(fake, chats[:4]) == [200, 200, 200, 429]
    await asyncio.sleep(0.31)
    assert await _send_many(fake, chats[4:8]) == [200, 200, 200, 429], "the window slides"


async def test_flood_groups_get_20_per_minute(fake: FakeTelegram) -> None:
    group = -1001234
    fake.set_chat(group, "supergroup")
    fake.enable_flood_limits(chat_burst=100, global_limit=1000)  # only the group limit is in the way
    assert await _send_many(fake, [group] * 20) == [200] * 20
    async with httpx.AsyncClient() as client:
        refused = await _send(client, fake, group)
    assert refused.status_code == 429
    retry_after = refused.json()["parameters"]["retry_after"]
    assert retry_after in (59, 60) and refused.json() == _too_many(retry_after)
    assert await _send_many(fake, [CHAT] * 25) == [200] * 25, "private chats have no per-minute limit"

    fake.enable_flood_limits(chat_burst=100, global_limit=1000, group_limit=2, group_window=0.3)
    for chat_id, chat_type in [(-1009, "channel"), (-555, "group")]:
        fake.set_chat(chat_id, chat_type)
        assert await _send_many(fake, [chat_id] * 3) == [200, 200, 429], chat_type
    await asyncio.sleep(0.31)
    assert await _send_many(fake, [-1009, -555]) == [200, 200]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter.__init__
async def test_flood_retry_after_is_the_whole_seconds_until_admitted(fake: FakeTelegram, bot: Bot) -> None:
    fake.enable_flood_limits(chat_burst=1, chat_rate=0.4)  # the next token in 2.5 s
    await bot.send_message(CHAT, "one")
    with pytest.raises(RetryAfter) as err:
        await bot.send_message(CHAT, "two")
    assert "retry in 3" in str(err.value).lower()
    assert fake.calls[-1].response == _too_many(3)
    fake.enable_flood_limits(chat_burst=1, chat_rate=0.25)
    await bot.edit_message_text("one!", chat_id=CHAT, message_id=fake.bot_messages(CHAT)[0].message_id)
    with pytest.raises(RetryAfter):
        await bot.delete_message(CHAT, fake.bot_messages(CHAT)[0].message_id)
    assert fake.calls[-1].response == _too_many(4)
    assert not fake.bot_messages(CHAT)[0].deleted, "a refused request does nothing"


async def test_flood_refused_requests_count_toward_nothing(fake: FakeTelegram) -> None:
    fake.enable_flood_limits(global_limit=1, global_window=0.3, chat_burst=100)
    assert await _send_many(fake, [CHAT]) == [200]
    admitted_by = time.monotonic()
    assert await _send_many(fake, [CHAT] * 5) == [429] * 5
    await asyncio.sleep(max(0.0, admitted_by + 0.31 - time.monotonic()))
    assert await _send_many(fake, [CHAT, CHAT]) == [200, 429], "the refused ones were not in the window"
    assert fake.too_many_requests == 6

    fake.enable_flood_limits(global_limit=1000, chat_burst=1, chat_rate=5)
    assert await _send_many(fake, [CHAT]) == [200]
    assert await _send_many(fake, [CHAT] * 3) == [429] * 3
    await asyncio.sleep(0.21)
    assert await _send_many(fake, [CHAT]) == [200], "refused requests took no tokens"


async def test_uncounted_methods_never_get_a_flood_429(fake: FakeTelegram, bot: Bot) -> None:
    from telegram import BotCommand

    sent = await bot.send_message(
        CHAT,
        "pick",
        reply_markup=InlineKeyboardMarkup.from_button(InlineKeyboardButton("A", callback_data="a")),
    )
    query = Update.de_json(fake.press_button(CHAT, sent.message_id, "a"), bot).callback_query
    assert query is not None
    file_id = _document_id(fake, b"data")
    fake.enable_flood_limits(global_limit=1, chat_burst=1, chat_rate=0.01)
    assert await _send_many(fake, [CHAT, CHAT]) == [200, 429]
    for _ in range(3):
        await bot.get_me()
        await bot.get_updates(timeout=0)
        assert (await bot.get_file(file_id)).file_size == 4
        assert await bot.set_my_commands([BotCommand("start", "Start")])
        await bot.get_chat_member(CHAT, CHAT)
        assert await bot.delete_webhook()
    assert await query.answer("ok")
    assert fake.too_many_requests == 1


async def test_update_ids_start_high(fake: FakeTelegram, bot: Bot) -> None:
    first = fake.send_text(CHAT, "one")["update_id"]
    assert 10**8 <= first < 10**9, "Telegram's update ids do not start at 1"
    second, third = (fake.send_text(CHAT, text)["update_id"] for text in ("two", "three"))
    assert [u.update_id for u in await bot.get_updates()] == [first, second, third]
    confirmed = await bot.get_updates(offset=second + 1)
    assert [u.message.text for u in confirmed if u.message] == ["three"]
    assert await bot.get_updates(offset=third + 1) == ()

    chosen = FakeTelegram(first_update_id=5)
    assert [chosen.send_text(CHAT, str(i))["update_id"] for i in range(3)] == [5, 6, 7]


async def test_users_and_reply_times(fake: FakeTelegram, bot: Bot) -> None:
    users = fake.users(3)
    assert len({user.id for user in users}) == 3 and all(user.id > 0 for user in users)
    mark = fake.message_count(users[1].id)
    update = Update.de_json(fake.send_text(users[1].id, "hi"), bot)
    assert update.message is not None and update.message.from_user is not None
    assert update.message.from_user.id == users[1].id
    assert update.message.chat.type == "private" and update.message.chat.first_name == users[1].first_name
    before = time.monotonic()
    await bot.send_message(users[1].id, "hello")
    await bot.send_message(users[1].id, "again")
    reply = await fake.wait_for_message(users[1].id, after=mark)
    assert reply.text == "hello" and reply.sent_at >= before
    assert fake.message_count(users[1].id) == 2 and fake.message_count(users[2].id) == 0


async def test_a_thousand_chats_at_once(fake: FakeTelegram) -> None:
    """1,000 users write at once, a poller answers each, 1,000 waiters see their replies."""
    users = fake.users(1000)
    marks = {user.id: fake.message_count(user.id) for user in users}
    for user in users:
        fake.send_text(user.id, "hello", user=user)
    waiters = [
        asyncio.create_task(fake.wait_for_message(user.id, "re:", after=marks[user.id])) for user in users
    ]
    api = f"{fake.base_url}{fake.token}"
    started = time.monotonic()

    async def reply(session: aiohttp.ClientSession, chat_id: int) -> int:
        async with session.post(f"{api}/sendMessage", data={"chat_id": chat_id, "text": "re: hello"}) as sent:
            return sent.status

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:  # httpx: 4x slower
        offset = 0
        while True:
            async with session.post(f"{api}/getUpdates", data={"offset": offset}) as response:
                updates = (await response.json())["result"]
            if not updates:
                break
            offset = updates[-1]["update_id"] + 1
            statuses = await asyncio.gather(*(reply(session, u["message"]["chat"]["id"]) for u in updates))
            assert set(statuses) == {200}
    replies = await asyncio.gather(*waiters)
    assert len({reply.chat_id for reply in replies}) == 1000
    assert len(fake.calls_to("sendMessage")) == 1000
    assert time.monotonic() - started < 30


async def test_wait_for_message_sent_later(fake: FakeTelegram, bot: Bot) -> None:
    async def later() -> None:
        await asyncio.sleep(0.2)
        await bot.send_message(CHAT, "Working on it")
        await asyncio.sleep(0.1)
        sent = await bot.send_message(CHAT, "Export 0%")
        await bot.edit_message_text(
            "Export <b>DONE</b>", chat_id=CHAT, message_id=sent.message_id, parse_mode=ParseMode.HTML
        )

    task = asyncio.create_task(later())
    first = await fake.wait_for_message(CHAT, "working ON it", timeout=5)
    assert first.text == "Working on it"
    done = await fake.wait_for_message(CHAT, "export done", after=1, timeout=5)
    assert done.text == "Export DONE" and done.edits == ["Export DONE"]
    call = await fake.wait_for(lambda c: c.method == "editMessageText", timeout=5)
    assert call.ok and call.params["parse_mode"] == "HTML"
    await task
    with pytest.raises(TimeoutError, match="Bot messages in the chat") as err:
        await fake.wait_for_message(CHAT, "never", timeout=0.2)
    assert "sendMessage" in str(err.value)


async def test_album_updates_share_media_group_id(fake: FakeTelegram, bot: Bot) -> None:
    jpg, mp4 = (MEDIA / "photo.jpg").read_bytes(), (MEDIA / "clip.mp4").read_bytes()
    updates = fake.send_album(
        CHAT,
        [("photo", jpg, "a.jpg"), ("video", mp4, "b.mp4"), ("document", b"t", "c.txt")],
        caption="combine these",
    )
    parsed = [Update.de_json(u, bot).message for u in updates]
    assert all(m is not None for m in parsed)
    group_ids = {m.media_group_id for m in parsed if m is not None}
    assert len(group_ids) == 1 and None not in group_ids
    first, second, third = parsed
    assert first is not None and second is not None and third is not None
    assert first.caption == "combine these" and second.caption is None
    assert len(first.photo) == 3 and second.video is not None and third.document is not None
    assert [u["update_id"] for u in updates] == sorted(u["update_id"] for u in updates)
    largest = await bot.get_file(first.photo[-1].file_id)
    assert bytes(await largest.download_as_bytearray()) == jpg
    thumb = await bot.get_file(first.photo[0].file_id)
    assert bytes(await thumb.download_as_bytearray()) != jpg
    received = await bot.get_updates()
    assert [u.message.media_group_id for u in received if u.message] == [first.media_group_id] * 3


async def test_user_updates_parse_in_ptb(fake: FakeTelegram, bot: Bot) -> None:
    alice = User(77, "Alice", "alice", language_code="de")
    voice = Update.de_json(fake.send_voice(77, (MEDIA / "voice.ogg").read_bytes(), user=alice), bot).message
    assert voice is not None and voice.voice is not None and voice.voice.mime_type == "audio/ogg"
    assert voice.from_user is not None and voice.from_user.language_code == "de"
    audio = Update.de_json(fake.send_audio(77, b"ID3", user=alice), bot).message
    assert audio is not None and audio.audio is not None
    sticker = Update.de_json(fake.send_sticker(77, b"RIFF", user=alice), bot).message
    assert sticker is not None and sticker.sticker is not None
    command = Update.de_json(fake.send_command(77, "/start promo", user=alice), bot).message
    assert command is not None and command.text == "/start promo"
    assert command.entities[0].type == "bot_command" and command.entities[0].length == len("/start")
    assert command.chat.first_name == "Alice"
    edited = Update.de_json(fake.edit_text(77, command.message_id, "/start other"), bot)
    assert edited.edited_message is not None and edited.edited_message.text == "/start other"
    channel = Update.de_json(fake.send_text(-1009, "news", chat_type="channel"), bot)
    assert channel.channel_post is not None and channel.channel_post.sender_chat is not None


async def test_privacy_mode_in_groups(fake: FakeTelegram, bot: Bot) -> None:
    group = -555
    hidden = fake.send_text(group, "just chatting", chat_type="group")
    fake.send_text(group, "hey @nemo_test_bot make a video")
    fake.send_command(group, "/help")
    reply = await bot.send_message(group, "I am here")
    fake.send_text(group, "thanks", reply_to=reply.message_id)
    updates = await bot.get_updates()
    assert [u.message.text for u in updates if u.message] == [
        "hey @nemo_test_bot make a video",
        "/help",
        "thanks",
    ]
    assert hidden["message"]["text"] == "just chatting" and hidden["update_id"] < updates[0].update_id
    assert fake.bot_messages(group)[0].text == "I am here"


async def test_commands_and_misc_methods(fake: FakeTelegram, bot: Bot) -> None:
    from telegram import BotCommand, BotCommandScopeAllGroupChats, ReactionTypeEmoji

    assert await bot.set_my_commands([BotCommand("start", "Start"), BotCommand("export", "Export")])
    assert await bot.set_my_commands([BotCommand("start", "Anfangen")], language_code="de")
    assert await bot.set_my_commands([BotCommand("help", "Help")], scope=BotCommandScopeAllGroupChats())
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Export-Now", "Export")])
    with pytest.raises(InvalidToken, match="Not Found"):  # PTB's reading of a 404
        await bot.set_my_description("A video bot")  # a method the bot does not use is not modelled
    assert fake.calls[-1].status == 404
    assert await bot.delete_webhook(drop_pending_updates=True)
    asked = fake.send_text(CHAT, "hi")
    assert await bot.set_message_reaction(CHAT, asked["message"]["message_id"], ReactionTypeEmoji("👍"))
    assert fake.reactions_on(CHAT, asked["message"]["message_id"]) == ["👍"]


def test_markup_parsers() -> None:
    assert parse_html('<pre>x = 1</pre> <A HREF="a.io?x=1&amp;y">a</A>') == (
        "x = 1 a",
        [
            {"type": "pre", "offset": 0, "length": 5},
            {"type": "text_link", "offset": 6, "length": 1, "url": "http://a.io?x=1&y"},
        ],
    )
    text, entities = parse_html("😀 <i>é</i>")
    assert text == "😀 é" and entities == [{"type": "italic", "offset": 3, "length": 1}]


async def test_local_mode_paths(tmp_path: Path) -> None:
    """Local Bot API mode: getFile answers absolute paths (PTB copies them)."""
    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:
        handle.truncate(60 * 1024 * 1024)  # sparse: past the cloud limits both ways, never in memory
    server_dir = tmp_path / "server"
    fake = FakeTelegram(local_mode=True, files_dir=server_dir)
    await fake.start()
    try:
        async with Bot(
            fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url, local_mode=True
        ) as bot:
            video = fake.send_video_path(CHAT, big)["message"]["video"]
            assert video["file_size"] == big.stat().st_size and video["file_name"] == "big.mp4"
            telegram_file = await bot.get_file(video["file_id"])
            assert telegram_file.file_path == str(big)
            copied = await telegram_file.download_to_drive(tmp_path / "copy.mp4")
            assert copied.stat().st_size == big.stat().st_size

            small = await bot.get_file(_document_id(fake, b"hello"))
            assert small.file_path and Path(small.file_path).parent.parent == server_dir
            assert _read(small.file_path) == b"hello"
    finally:
        await fake.stop()
    assert server_dir.is_dir()  # a files_dir the test chose is left in place


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


async def test_file_paths_without_local_mode(fake: FakeTelegram, bot: Bot, tmp_path: Path) -> None:
    on_disk = tmp_path / "clip.mp4"
    on_disk.write_bytes((MEDIA / "clip.mp4").read_bytes())
    file_id = fake.send_video_path(CHAT, on_disk)["message"]["video"]["file_id"]
    telegram_file = await bot.get_file(file_id)
    assert telegram_file.file_path and telegram_file.file_path.startswith(fake.base_file_url)
    assert bytes(await telegram_file.download_as_bytearray()) == on_disk.read_bytes()
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{fake.base_url}{fake.token}/sendVideo", data={"chat_id": CHAT, "video": on_disk.as_uri()}
        )
    assert response.status_code == 400  # a cloud Bot API server takes no file:// URIs


# -- Webhook delivery ------------------------------------------------------------------------------

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class _Webhook:
    """A tiny webhook endpoint on loopback: records every POST and answers ``statuses`` in turn (then
    200), each after ``delays`` seconds if given; with ``hold`` it answers only once the event is set."""

    def __init__(
        self,
        statuses: Sequence[int] = (),
        *,
        delays: Sequence[float] = (),
        hold: asyncio.Event | None = None,
    ) -> None:
        self.statuses = list(statuses)
        self.delays = list(delays)
        self.hold = hold
        self.requests: list[tuple[dict[str, str], str, Any]] = []  # (headers, content type, JSON body)
        self.in_flight = 0
        self.most_in_flight = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def bodies(self) -> list[Any]:
        return sorted((body for _, _, body in self.requests), key=lambda update: update["update_id"])

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.requests.append((dict(request.headers), request.content_type, await request.json()))
            if self.delays:
                await asyncio.sleep(self.delays.pop(0))
            if self.hold is not None:
                await self.hold.wait()
            return web.Response(status=self.statuses.pop(0) if self.statuses else 200, text="ok")
        finally:
            self.in_flight -= 1

    async def __aenter__(self) -> _Webhook:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


async def test_webhook_posts_every_update_as_json_with_the_secret(fake: FakeTelegram, bot: Bot) -> None:
    before = fake.send_text(CHAT, "queued while the bot polled")
    async with _Webhook() as hook:
        assert await bot.set_webhook(hook.url, secret_token="s3cret_-Token")
        after = fake.send_command(CHAT, "/start")
        await fake.wait_webhook_delivered(timeout=5)
        assert hook.bodies == [before, after], "the update JSON, those queued before the webhook too"
        assert {(headers[SECRET_HEADER], kind) for headers, kind, _ in hook.requests} == {
            ("s3cret_-Token", "application/json")
        }
        assert sorted((d.update_id, d.outcome, d.attempt) for d in fake.webhook_deliveries) == [
            (before["update_id"], 200, 1),
            (after["update_id"], 200, 1),
        ]
        assert (fake.webhook_url, fake.pending_updates, fake.webhook_max_connections) == (hook.url, [], 40)

        assert await bot.set_webhook(hook.url)  # no secret now: no header
        fake.send_text(CHAT, "one more")
        await fake.wait_updates_consumed(timeout=5)  # the wait helpers work in webhook mode too
        assert len(hook.requests) == 3 and SECRET_HEADER not in hook.requests[-1][0]


async def test_webhook_retries_until_it_gets_a_2xx(fake: FakeTelegram, bot: Bot) -> None:
    fake.webhook_retry_seconds = 0.05
    async with _Webhook([500, 500]) as hook:
        assert await bot.set_webhook(hook.url)
        sent = fake.send_text(CHAT, "hi")
        await fake.wait_webhook_delivered(timeout=5)
    assert hook.bodies == [sent] * 3
    deliveries = fake.webhook_deliveries
    assert [tuple(d)[:3] for d in deliveries] == [
        (sent["update_id"], 500, 1),
        (sent["update_id"], 500, 2),
        (sent["update_id"], 200, 3),
    ]
    assert all(isinstance(d, WebhookDelivery) for d in deliveries)
    pauses = [later.at - earlier.at for earlier, later in itertools.pairwise(deliveries)]
    assert pauses[0] >= 0.05 and pauses[1] >= 0.1, "the pause doubles"
    assert fake.pending_updates == []


async def test_webhook_timeouts_and_refused_connections_are_retried(fake: FakeTelegram, bot: Bot) -> None:
    fake.webhook_timeout = 0.1
    fake.webhook_retry_seconds = 0.01
    async with _Webhook(delays=[0.5]) as hook:
        assert await bot.set_webhook(hook.url)
        sent = fake.send_text(CHAT, "slow")
        await fake.wait_webhook_delivered(timeout=5)
    assert [d.outcome for d in fake.webhook_deliveries] == ["TimeoutError", 200]

    fake.webhook_retry_max_seconds = 0.02
    assert await bot.set_webhook(_closed_port_url(), max_connections=1)
    later = fake.send_text(CHAT, "nobody listens")
    await _until(lambda: len(fake.webhook_deliveries) >= 5)
    refused = fake.webhook_deliveries[2:]
    assert {(d.update_id, d.outcome) for d in refused} == {(later["update_id"], "ClientConnectorError")}
    assert [d.attempt for d in refused] == list(range(1, len(refused) + 1))
    assert len(fake.pending_updates) == 1
    with pytest.raises(TimeoutError, match="not delivered"):
        await fake.wait_webhook_delivered(timeout=0.1)
    assert sent["update_id"] < later["update_id"]


async def test_get_updates_is_a_conflict_while_a_webhook_is_set(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=1))
    await asyncio.sleep(0.1)
    assert await bot.set_webhook(_closed_port_url())
    with pytest.raises(Conflict, match=r"(?i)terminated by setWebhook request"):
        await poll
    with pytest.raises(Conflict, match=r"(?i)can't use getUpdates method while webhook is active"):
        await bot.get_updates()
    call = fake.calls_to("getUpdates")[-1]
    assert call.status == 409 and call.description == (
        "Conflict: can't use getUpdates method while webhook is active; "
        "use deleteWebhook to delete the webhook first"
    )


async def test_delete_webhook_goes_back_to_polling(fake: FakeTelegram, bot: Bot) -> None:
    fake.webhook_retry_seconds = fake.webhook_retry_max_seconds = 0.01
    assert await bot.set_webhook(_closed_port_url(), secret_token="abc")
    sent = fake.send_text(CHAT, "undelivered")
    await _until(lambda: len(fake.webhook_deliveries) >= 2)
    assert await bot.delete_webhook()
    attempts = len(fake.webhook_deliveries)
    await asyncio.sleep(0.1)
    assert len(fake.webhook_deliveries) == attempts, "deleteWebhook stops the deliveries"
    assert (fake.webhook_url, len(fake.pending_updates)) == ("", 1)
    assert [u.update_id for u in await bot.get_updates()] == [sent["update_id"]], "still queued"
    with pytest.raises(RuntimeError, match="no webhook is set"):
        await fake.wait_webhook_delivered(timeout=0.1)

    assert await bot.set_webhook(_closed_port_url(), drop_pending_updates=True)
    assert fake.pending_updates == []
    fake.send_text(CHAT, "dropped with the webhook")
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates() == ()


async def test_set_webhook_validates_like_telegram(fake: FakeTelegram, bot: Bot) -> None:
    url = _closed_port_url()
    for secret in ("has space", "a+b", "a/b=", "sécret", "x" * 257):
        with pytest.raises(BadRequest, match=r"(?i)secret token"):
            await bot.set_webhook(url, secret_token=secret)
        expected = "is too long" if len(secret) > 256 else "contains unallowed characters"
        assert fake.calls[-1].description == f"Bad Request: secret token {expected}"
    with pytest.raises(BadRequest, match=r"(?i)invalid webhook url specified"):
        await bot.set_webhook("ftp://example.com/hook")
    assert fake.webhook_url == "", "a refused setWebhook changes nothing"

    assert await bot.set_webhook(url, secret_token="A-z_9" * 51 + "x", max_connections=1000)
    assert fake.webhook_secret_token == "A-z_9" * 51 + "x"
    assert fake.webhook_max_connections == 100, "clamped to 1-100, as Telegram does"
    assert await bot.set_webhook(url, max_connections=0)
    assert fake.webhook_max_connections == 1
    assert await bot.set_webhook("")  # an empty url deletes the webhook
    assert fake.webhook_url == ""


async def test_webhook_max_connections_and_a_clean_stop() -> None:
    fake = FakeTelegram()
    await fake.start()
    release = asyncio.Event()
    try:
        async with (
            _Webhook(hold=release) as hook,
            Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as bot,
        ):
            assert await bot.set_webhook(hook.url, max_connections=2)
            sent = [fake.send_text(CHAT, f"m{i}") for i in range(5)]
            await _until(lambda: hook.in_flight == 2)
            await asyncio.sleep(0.1)
            assert hook.in_flight == 2 and len(hook.requests) == 2, "at most max_connections at once"
            release.set()
            await fake.wait_webhook_delivered(timeout=5)
            assert hook.bodies == sent and hook.most_in_flight == 2

            release.clear()
            fake.send_text(CHAT, "held when the fake stops")
            await _until(lambda: hook.in_flight == 1)
            await fake.stop()
            leftovers = [task for task in asyncio.all_tasks() if task.get_name().startswith("webhook")]
            assert leftovers == [], "stop() ends the dispatcher and the deliveries in flight"
            assert len(fake.pending_updates) == 1, "an update cut off by stop() stays queued"
    finally:
        await fake.stop()
