"""Hostile and odd input through the real handlers: what a user sends that the bot must survive.

Every test feeds updates to the production Application (fake Bot API server + NemoVideo emulator)
and asserts what the user would see; `no_crash` then checks that no handler failed and nothing was
logged at ERROR level, so "survives" means more than "the test did not hang".
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import time
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import Update
from telegram.ext import ContextTypes

from bot.core.media import safe_filename
from bot.telegram.output import ChatGone
from loopback.emulator import NemoEmulator, Turn, sample_draft
from loopback.fake_telegram import FakeTelegram, User
from loopback.servers import MEDIA
from tests.harness import Harness, connect, turn_over, user_says

CHAT = 4242
OTHER = 4343
ADA = User(CHAT, "Ada", "ada", language_code="en")
BOB = User(OTHER, "Bob", "bob", language_code="en")
CLIP = (MEDIA / "clip.mp4").read_bytes()
UNSUPPORTED = "I work with text, photos"


@pytest.fixture
async def bot(fake: FakeTelegram, emulator: NemoEmulator) -> AsyncIterator[Harness]:
    harness = Harness(fake, emulator)
    await harness.start()
    failures: list[BaseException] = []

    async def record(_update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if context.error is not None:
            failures.append(context.error)

    harness.app.add_error_handler(record)
    harness.app.bot_data["test_failures"] = failures
    try:
        yield harness
    finally:
        await harness.stop()


def no_crash(bot: Harness, caplog: pytest.LogCaptureFixture, *, chat_gone_ok: bool = False) -> None:
    """No handler raised (the error handler saw nothing) and nothing was logged at ERROR or above.

    `chat_gone_ok` tolerates the one known noise of a blocked chat (see the xfail tests at the end).
    """
    failures = [
        f for f in bot.app.bot_data["test_failures"] if not (chat_gone_ok and isinstance(f, ChatGone))
    ]
    assert not failures, f"handler errors: {failures!r}"
    errors = [
        r for r in caplog.records if r.levelno >= logging.ERROR and not (chat_gone_ok and _chat_gone(r))
    ]
    assert not errors, "errors logged: " + "; ".join(r.getMessage() for r in errors)
    for chat in (CHAT, OTHER):
        assert not [m for m in bot.fake.bot_messages(chat) if "Something went wrong" in m.text]


def _chat_gone(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return isinstance(error, ChatGone) or "ChatGone" in record.getMessage()


async def say(bot: Harness, text: str, user: User = ADA, chat: int = CHAT) -> int:
    return await user_says(bot, chat, text, user)


async def connected(bot: Harness, chat: int = CHAT, user: User = ADA) -> str:
    return await connect(bot, chat, user)


async def send_file(bot: Harness, data: bytes, name: str, mime: str | None = "video/mp4") -> int:
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.send_document(CHAT, data, name, mime, user=ADA))
    return mark


_raw_ids = itertools.count(900_000)


def raw_message(content: dict[str, Any], user: User = ADA, chat: int = CHAT) -> dict[str, Any]:
    """A private-chat message update built by hand in the Bot API's JSON shape."""
    message = {
        "message_id": next(_raw_ids),
        "date": int(time.time()),
        "chat": {"id": chat, "type": "private", "first_name": user.first_name, "username": user.username},
        "from": user.to_dict(),
        **content,
    }
    return {"update_id": next(_raw_ids), "message": message}


# -- message types the bot does not use -----------------------------------------------------------

POLL = {
    "id": "5001",
    "question": "Which intro?",
    "options": [
        {"text": "A", "voter_count": 0, "persistent_id": "o1"},
        {"text": "B", "voter_count": 0, "persistent_id": "o2"},
    ],
    "total_voter_count": 0,
    "is_closed": False,
    "is_anonymous": True,
    "type": "regular",
    "allows_multiple_answers": False,
    "allows_revoting": False,  # required since Bot API 9.6 (PTB 22.8 refuses a poll without them)
    "members_only": False,
}
OTHER_CONTENT = {
    "location": {"location": {"latitude": 48.8584, "longitude": 2.2945}},
    "live location": {"location": {"latitude": -33.8568, "longitude": 151.2153, "live_period": 900}},
    "venue": {
        "location": {"latitude": 40.7484, "longitude": -73.9857},
        "venue": {
            "location": {"latitude": 40.7484, "longitude": -73.9857},
            "title": "<b>Empire</b> & co",
            "address": "350 5th Ave",
        },
    },
    "contact": {"contact": {"phone_number": "+15550100", "first_name": "Eve", "user_id": 31337}},
    "dice": {"dice": {"emoji": "🎲", "value": 6}},
    "poll": {"poll": POLL},
}


@pytest.mark.parametrize("kind", sorted(OTHER_CONTENT))
async def test_polls_locations_contacts_and_dice_get_a_clear_reply(
    bot: Harness, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    await bot.send(raw_message(OTHER_CONTENT[kind]))
    reply = await bot.fake.wait_for_message(CHAT, UNSUPPORTED)
    assert "Describe your video or send media" in reply.text
    await asyncio.sleep(0.1)
    assert bot.fake.message_count(CHAT) == 1  # one clear reply, nothing else
    assert not bot.emulator.calls("run_sse") and not bot.emulator.calls("upload")
    no_crash(bot, caplog)


async def test_stickers_get_a_clear_reply(bot: Harness, caplog: pytest.LogCaptureFixture) -> None:
    await bot.send(bot.fake.send_sticker(CHAT, b"RIFF\x00\x00\x00\x00WEBPVP8 ", emoji="🤡", user=ADA))
    await bot.fake.wait_for_message(CHAT, UNSUPPORTED)
    assert not bot.fake.calls_to("getFile")  # not downloaded
    no_crash(bot, caplog)


@pytest.mark.parametrize(
    "update",
    [
        {"poll": POLL},  # a poll's state changed: no chat at all
        {
            "poll_answer": {
                "poll_id": "5001",
                "user": ADA.to_dict(),
                "option_ids": [1],
                "option_persistent_ids": ["o2"],
            }
        },
        {
            "my_chat_member": {  # the user blocked the bot
                "chat": {"id": CHAT, "type": "private", "first_name": "Ada"},
                "from": ADA.to_dict(),
                "date": 0,
                "old_chat_member": {
                    "status": "member",
                    "user": {"id": 123456, "is_bot": True, "first_name": "N"},
                },
                "new_chat_member": {
                    "status": "kicked",
                    "until_date": 0,
                    "user": {"id": 123456, "is_bot": True, "first_name": "N"},
                },
            }
        },
    ],
    ids=["poll", "poll_answer", "my_chat_member"],
)
async def test_updates_without_a_message_are_ignored(
    bot: Harness, caplog: pytest.LogCaptureFixture, update: dict[str, Any]
) -> None:
    await bot.send({"update_id": next(_raw_ids), **update})
    await asyncio.sleep(0.1)
    assert bot.fake.message_count(CHAT) == 0
    assert not [c for c in bot.fake.calls if c.method.startswith("send")]
    no_crash(bot, caplog)


# -- odd text -------------------------------------------------------------------------------------

LONG_TEXTS = {
    "words": ("make the intro punchier, add a title card & fade <in> slowly " * 80)[:4095] + ".",
    "one word": "a" * 4096,
    "cjk": "把这些片段剪成一个宣传视频" * 315 + "视频",
    "emoji": "🎬✨" * 1024,  # 2048 characters, 4096 UTF-16 code units: Telegram's limit counts those
}


@pytest.mark.parametrize("kind", sorted(LONG_TEXTS))
async def test_a_message_at_telegrams_limit_goes_to_the_agent(
    bot: Harness, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    text = LONG_TEXTS[kind]
    await connected(bot)
    mark = await say(bot, text)
    await bot.fake.wait_for_message(CHAT, "on the timeline", after=mark)
    session = next(iter(bot.emulator.sessions.values()))
    assert session.messages == [text]  # the whole text, unchanged
    await turn_over(bot, CHAT)
    no_crash(bot, caplog)


async def test_control_zero_width_and_bidi_characters_reach_the_agent_unchanged(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    text = (
        "make\u200b a \u202evideo\u202c with\x07 \u2066music\u2069 and\ufeff fades "
        "\u200f\u200e\x1b[31m, then \u0000 a title\u2028please\r\n(no rush) for \u061c\u202b my shop"
    )
    await connected(bot)
    mark = await say(bot, text)
    await bot.fake.wait_for_message(CHAT, "on the timeline", after=mark)
    assert next(iter(bot.emulator.sessions.values())).messages == [text]
    await turn_over(bot, CHAT)
    no_crash(bot, caplog)


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("\u202estatus\u202c", "timeline is empty"),  # a bidi override around a command
        ("ex\u200bport", "nothing on the timeline"),  # a zero-width space inside it
        ("\ufeff  CREDITS\u2069 \x00", "Credits:"),
        ("\u3000ｓｔａｔｕｓ\u3000", "timeline is empty"),  # full-width letters (NFKC)
    ],
)
async def test_commands_wrapped_in_invisible_characters_still_work(
    bot: Harness, caplog: pytest.LogCaptureFixture, text: str, reply: str
) -> None:
    await connected(bot)
    mark = await say(bot, text)
    await bot.fake.wait_for_message(CHAT, reply, after=mark)
    assert not bot.emulator.calls("run_sse")
    no_crash(bot, caplog)


# -- hostile files --------------------------------------------------------------------------------


def uploaded_names(bot: Harness) -> list[str]:
    return [name for call in bot.emulator.calls("upload") for name, _size in call.files]


@pytest.mark.parametrize(
    "name",
    [
        "Ünïcödé 视频 🎬 ﷺ\u200b.mp4",
        "clip\u202e4pm.mp4",  # a bidi override that makes the name read backwards
        "ｆｕｌｌｗｉｄｔｈ．ｍｐ４",  # full-width letters and dot (NFKC: fullwidth.mp4)
        "\u0000\x1b[2J\nnew\tline.mp4",
        "<b>bold</b> & <i>co</i>.mp4",
        "a" * 300 + ".mp4",
    ],
)
async def test_documents_with_unusual_names_are_uploaded_under_a_safe_name(
    bot: Harness, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    await connected(bot)
    mark = await send_file(bot, CLIP, name)
    message = await bot.fake.wait_for_message(CHAT, "Added to your project", after=mark)
    expected = safe_filename(name, "mp4", "document_1")
    assert bot.emulator.calls("upload")[-1].files == [(expected, len(CLIP))]
    assert expected.endswith(".mp4") and "/" not in expected and len(expected) <= 100
    assert not any(unicodedata.category(ch)[0] == "C" for ch in expected)
    assert expected in message.text and message.entities == []  # the name is shown, never markup
    no_crash(bot, caplog)


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("../../x.mp4", "x.mp4"),
        ("..\\..\\x.mp4", "x.mp4"),
        ("/etc/passwd/../x.mp4", "x.mp4"),
        ("．．／．．／x.mp4", "x.mp4"),  # full-width dots and slashes: the same path after NFKC
        ("....mp4", "mp4.mp4"),  # a hidden-file name: the dots go, the stem stays
        (".mp4", "mp4.mp4"),
    ],
)
async def test_path_names_are_uploaded_as_a_bare_basename(
    bot: Harness, caplog: pytest.LogCaptureFixture, name: str, stored: str
) -> None:
    await connected(bot)
    mark = await send_file(bot, CLIP, name)
    await bot.fake.wait_for_message(CHAT, "Added to your project", after=mark)
    assert bot.emulator.calls("upload")[-1].files == [(stored, len(CLIP))]
    no_crash(bot, caplog)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("a.mp4.exe", "exe is not a format"),
        ("holiday.MP4.EXE", "exe is not a format"),
        ("clip\u202e4pm.exe", "exe is not a format"),  # displays as "clipexe.mp4" in some clients
        ("<b>evil</b>.sh", "sh is not a format"),
        ("no_extension", "is not a format"),
    ],
)
async def test_disguised_executables_are_refused_before_download(
    bot: Harness, caplog: pytest.LogCaptureFixture, name: str, shown: str
) -> None:
    await connected(bot)
    mark = await send_file(bot, CLIP, name, "application/octet-stream")
    message = await bot.fake.wait_for_message(CHAT, "Not added", after=mark)
    assert shown in message.text and name in message.text  # the name exactly as sent, not as markup
    assert not bot.emulator.calls("upload") and not bot.fake.calls_to("getFile")
    no_crash(bot, caplog)


@pytest.mark.parametrize("how", ["document", "video", "audio"])
async def test_zero_byte_files_are_refused_as_empty(
    bot: Harness, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    await connected(bot)
    mark = bot.fake.message_count(CHAT)
    if how == "document":
        update = bot.fake.send_document(CHAT, b"", "blank.mp4", "video/mp4", user=ADA)
    elif how == "video":
        update = bot.fake.send_video(CHAT, b"", user=ADA)
    else:
        update = bot.fake.send_audio(CHAT, b"", user=ADA)
    await bot.send(update)
    message = await bot.fake.wait_for_message(CHAT, "Not added", after=mark)
    assert "the file is empty" in message.text
    assert not bot.emulator.calls("upload")
    no_crash(bot, caplog)


@pytest.mark.parametrize(
    ("source", "name", "detail"),
    [
        ("photo.png", "holiday.mp4", "mp4/png"),  # an image named as a video
        ("tone.mp3", "clip.mp4", "mp4/mp3"),  # audio named as a video
        ("clip.mp4", "photo.jpg", "jpg/mp4"),  # a video named as an image
    ],
)
async def test_content_that_does_not_match_the_name_is_refused(
    bot: Harness, caplog: pytest.LogCaptureFixture, source: str, name: str, detail: str
) -> None:
    await connected(bot)
    mark = await send_file(bot, (MEDIA / source).read_bytes(), name)
    message = await bot.fake.wait_for_message(CHAT, "Not added", after=mark)
    assert "the name says one format but the content is another" in message.text
    assert detail in message.text and name in message.text
    assert not bot.emulator.calls("upload")
    no_crash(bot, caplog)


async def test_content_of_the_same_kind_is_uploaded_under_its_real_format(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await connected(bot)
    mark = await send_file(bot, (MEDIA / "photo.jpg").read_bytes(), "picture.png", "image/png")
    await bot.fake.wait_for_message(CHAT, "Added to your project", after=mark)
    assert uploaded_names(bot) == ["picture.jpg"]  # a JPEG named .png goes up as the JPEG it is
    no_crash(bot, caplog)


async def test_text_renamed_to_mp4_is_refused(bot: Harness, caplog: pytest.LogCaptureFixture) -> None:
    await connected(bot)
    mark = await send_file(bot, b"#!/bin/sh\nrm -rf /\n" * 50, "payload.mp4")
    message = await bot.fake.wait_for_message(CHAT, "Not added", after=mark)
    assert "isn't a readable mp4 file" in message.text
    assert not bot.emulator.calls("upload")
    no_crash(bot, caplog)


# -- hostile agent text ---------------------------------------------------------------------------

AGENT_TEXTS = [
    "<script>alert('x')</script> done",
    "Fish & chips &amp; &lt;3 &#x27; &unknown; &",
    '<b>bold</b> <i>it</i> <a href="tg://user?id=1">me</a> <tg-spoiler>s</tg-spoiler> <pre>x</pre>',
    '<blockquote expandable>q</blockquote> <code>x</code> <span class="tg-spoiler">y</span>',
    "1 < 2 > 0, a<b, <<>>, </b>, <b",
]
REPHRASED = {
    "Click the <Export> button & preview it in the timeline": (
        'Click the <Export> button & say "status" (or tap Timeline below)'
    ),
    'Tap the "<b>Export</b>" button, then drag <i>it</i>': (
        'Tap the "<b>Export</b>" button, then tell me what to move <i>it</i>'
    ),
}


@pytest.mark.parametrize("text", AGENT_TEXTS + sorted(REPHRASED))
async def test_agent_text_that_looks_like_html_is_shown_literally(
    bot: Harness, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    await connected(bot)
    bot.emulator.script("markup", Turn(texts=[text]))
    mark = await say(bot, "markup please")
    await turn_over(bot, CHAT)
    replies = [m for m in bot.fake.bot_messages(CHAT)[mark:] if m.kind == "text"]
    assert replies and replies[0].entities == []  # nothing became formatting, links or spoilers
    assert replies[0].text == REPHRASED.get(text, text)  # shown exactly as written (GUI talk rephrased)
    sends = bot.fake.calls_to("sendMessage")
    assert all(call.ok for call in sends)  # the fake rejects bad HTML: no fallback was needed
    assert all(call.params.get("parse_mode") == "HTML" for call in sends)
    no_crash(bot, caplog)


async def test_a_lone_surrogate_in_agent_text_does_not_lose_the_reply(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # JSON "\ud83c" (half of an emoji, escaped as JSON allows) decodes to a lone surrogate in Python,
    # which UTF-8 cannot encode: the reply must still reach the user, the bad character replaced.
    await connected(bot)
    event = {"content": {"role": "model", "parts": [{"text": "broken emoji \ud83c here, rest of the reply"}]}}
    frame = "data: " + json.dumps(event) + "\n\n"
    assert "\\ud83c" in frame
    bot.emulator.inject("run_sse", body=frame.encode(), content_type="text/event-stream")
    mark = await say(bot, "half an emoji")
    reply = await bot.fake.wait_for_message(CHAT, "rest of the reply", after=mark)
    assert reply.text == "broken emoji \ufffd here, rest of the reply"
    await turn_over(bot, CHAT)
    no_crash(bot, caplog)


async def test_half_an_emoji_in_a_draft_name_still_shows_the_timeline(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    session_id = await connected(bot)
    draft = {"t": [{"tt": 0, "sg": [{"d": 5000, "m": {"name": "party \ud83c clip"}}]}]}
    bot.emulator.set_draft(session_id, draft)  # served as JSON with the "\ud83c" escape
    mark = await say(bot, "status")
    message = await bot.fake.wait_for_message(CHAT, "Timeline (1 track)", after=mark)
    assert "party \ufffd clip" in message.text
    no_crash(bot, caplog)


# -- stale buttons and edits ----------------------------------------------------------------------


async def test_a_button_on_an_unknown_message_is_answered_and_ignored(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await connected(bot)
    mark = bot.fake.message_count(CHAT)
    update = bot.fake.press_button(CHAT, 987_654, "act:export", user=ADA, check=False)
    await bot.send(update)
    await asyncio.sleep(0.2)
    assert bot.fake.callback_answers[update["callback_query"]["id"]] is not None  # the spinner stops
    assert bot.fake.message_count(CHAT) == mark and not bot.emulator.calls("render_start")
    no_crash(bot, caplog)


async def test_a_button_on_a_deleted_message_acts_on_the_current_project(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    session_id = await connected(bot)
    bot.emulator.set_draft(session_id, sample_draft())
    bot.emulator.script("gui", Turn(texts=["Done! Click the Export button."]))
    mark = await say(bot, "gui please")
    old = await bot.fake.wait_for_message(CHAT, "Done!", after=mark)
    await turn_over(bot, CHAT)
    assert await bot.app.bot.delete_message(CHAT, old.message_id)
    mark = bot.fake.message_count(CHAT)
    update = bot.fake.press_button(CHAT, old.message_id, "act:status", user=ADA, check=False)
    await bot.send(update)
    await bot.fake.wait_for_message(CHAT, "Timeline (3 tracks)", after=mark)
    assert bot.fake.callback_answers[update["callback_query"]["id"]] is not None
    no_crash(bot, caplog)


async def test_a_button_on_an_inaccessible_message_still_works(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # Telegram sends an InaccessibleMessage (date 0) for buttons on messages older than 48 hours
    await connected(bot)
    mark = bot.fake.message_count(CHAT)
    update = bot.fake.press_button(CHAT, 1, "act:status", user=ADA, check=False)
    update["callback_query"]["message"] = {
        "chat": {"id": CHAT, "type": "private", "first_name": "Ada"},
        "message_id": 1,
        "date": 0,
    }
    await bot.send(update)
    await bot.fake.wait_for_message(CHAT, "timeline is empty", after=mark)
    no_crash(bot, caplog)


async def test_an_old_export_button_after_a_new_project_says_what_to_do(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    session_id = await connected(bot)
    bot.emulator.set_draft(session_id, sample_draft())
    bot.emulator.script("gui", Turn(texts=["Ready. Click the Export button."]))
    mark = await say(bot, "gui please")
    old = await bot.fake.wait_for_message(CHAT, "Ready.", after=mark)
    await turn_over(bot, CHAT)
    await bot.send(bot.fake.send_command(CHAT, "/new", user=ADA))
    await bot.fake.wait_for_message(CHAT, "fresh project", after=mark)
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.press_button(CHAT, old.message_id, "act:export", user=ADA))
    await bot.fake.wait_for_message(CHAT, "nothing on the timeline", after=mark)
    assert not bot.emulator.calls("render_start")  # the old project's draft is not rendered
    no_crash(bot, caplog)


async def test_an_edited_message_is_ignored_even_when_it_now_says_export(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    session_id = await connected(bot)
    bot.emulator.set_draft(session_id, sample_draft())
    sent = bot.fake.send_text(CHAT, "hello there", user=ADA)
    await bot.send(sent)
    await bot.fake.wait_for_message(CHAT, "on the timeline")
    await turn_over(bot, CHAT)
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.edit_text(CHAT, sent["message"]["message_id"], "export"))
    await asyncio.sleep(0.3)
    assert bot.fake.message_count(CHAT) == mark
    assert not bot.emulator.calls("render_start") and len(bot.emulator.calls("run_sse")) == 1
    no_crash(bot, caplog)


async def test_an_edited_caption_does_not_upload_again(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await connected(bot)
    sent = bot.fake.send_video(CHAT, CLIP, caption="a clip", user=ADA)
    await bot.send(sent)
    await bot.fake.wait_for_message(CHAT, "Added to your project")
    await bot.fake.wait_for_message(CHAT, "on the timeline")  # the caption ran as a chat turn
    await turn_over(bot, CHAT)
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.edit_text(CHAT, sent["message"]["message_id"], "make a promo from this"))
    await asyncio.sleep(0.3)
    assert bot.fake.message_count(CHAT) == mark and len(bot.emulator.calls("upload")) == 1
    no_crash(bot, caplog)


# -- a user who blocks the bot --------------------------------------------------------------------


async def test_a_user_blocking_the_bot_mid_turn_does_not_disturb_anyone(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await connected(bot)
    await connected(bot, OTHER, BOB)
    bot.emulator.script("slow", Turn(texts=["First part.", "Second part."], duration=1.0))
    mark = await say(bot, "slow edit please")
    await bot.fake.wait_for_message(CHAT, "First part.", after=mark)
    bot.fake.block_bot(CHAT)
    await turn_over(bot, CHAT)  # the turn ends by itself instead of hanging or failing loudly
    assert not [m for m in bot.fake.bot_messages(CHAT)[mark:] if "Second part." in m.text]
    assert [c for c in bot.fake.calls if c.status == 403]  # the bot did hit the block
    other = await say(bot, "hello from bob", user=BOB, chat=OTHER)
    await bot.fake.wait_for_message(OTHER, "on the timeline", after=other)  # other chats keep working
    bot.fake.unblock_bot(CHAT)
    mark = await say(bot, "I'm back")
    await bot.fake.wait_for_message(CHAT, "on the timeline", after=mark)  # no stale "busy" turn left
    assert not [m for m in bot.fake.bot_messages(CHAT)[mark:] if "previous request" in m.text]
    no_crash(bot, caplog, chat_gone_ok=True)


async def test_a_user_blocking_the_bot_during_an_upload_does_not_disturb_anyone(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await connected(bot)
    await connected(bot, OTHER, BOB)
    bot.fake.delay_next("getFile", 0.3)
    upload = asyncio.create_task(bot.send(bot.fake.send_video(CHAT, CLIP, user=ADA)))
    await bot.fake.wait_for(lambda c: c.method == "getFile")
    bot.fake.block_bot(CHAT)
    await upload
    assert [c for c in bot.fake.calls if c.status == 403]  # the bot did hit the block
    assert len(bot.emulator.calls("upload")) == 1  # Ada's file still reached her project
    other = bot.fake.message_count(OTHER)
    await bot.send(bot.fake.send_video(OTHER, CLIP, user=BOB))
    await bot.fake.wait_for_message(OTHER, "Added to your project", after=other)
    no_crash(bot, caplog, chat_gone_ok=True)


async def test_a_user_blocking_the_bot_before_the_render_lands_does_not_stop_other_renders(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    ada_session = await connected(bot)
    bob_session = await connected(bot, OTHER, BOB)
    bot.emulator.set_draft(ada_session, sample_draft())
    bot.emulator.set_draft(bob_session, sample_draft())
    bot.emulator.render_polls_per_step = 3
    await say(bot, "export")
    await bot.fake.wait_for_message(CHAT, "Export queued")
    bot.fake.block_bot(CHAT)
    mark = await say(bot, "export", user=BOB, chat=OTHER)
    await bot.fake.wait_for_message(OTHER, kind="video", after=mark, timeout=15)
    for _ in range(100):  # Ada's render is closed as undeliverable, not polled forever
        if not await bot.services.store.active_renders():
            break
        await asyncio.sleep(0.05)
    assert await bot.services.store.active_renders() == []
    assert [c for c in bot.fake.calls if c.status == 403 and c.params.get("chat_id") == CHAT]
    assert not [m for m in bot.fake.bot_messages(CHAT) if m.kind == "video"]
    no_crash(bot, caplog)


async def test_messages_from_a_chat_that_blocked_the_bot_do_not_stop_it(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await connected(bot)
    bot.fake.block_bot(CHAT)
    for text in ("status", "credits", "upload", "hello"):
        await say(bot, text)
    await bot.send(raw_message(OTHER_CONTENT["dice"]))
    await turn_over(bot, CHAT)
    await asyncio.sleep(0.2)
    bot.fake.unblock_bot(CHAT)
    mark = await say(bot, "status")
    await bot.fake.wait_for_message(CHAT, "timeline", after=mark)
    no_crash(bot, caplog, chat_gone_ok=True)


# -- a user who blocked the bot is logged quietly, not reported as a failure -----------------------


async def test_blocking_the_bot_mid_turn_logs_no_error(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await connected(bot)
    bot.emulator.script("slow", Turn(texts=["First part.", "Second part."], duration=1.0))
    mark = await say(bot, "slow edit please")
    await bot.fake.wait_for_message(CHAT, "First part.", after=mark)
    bot.fake.block_bot(CHAT)
    await turn_over(bot, CHAT)
    await asyncio.sleep(0.1)
    gc.collect()  # the unretrieved exception is reported when the finished task is collected
    no_crash(bot, caplog)


async def test_a_blocked_chat_is_not_reported_as_a_handler_failure(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await connected(bot)
    bot.fake.block_bot(CHAT)
    first = len(bot.fake.calls)
    await say(bot, "status")
    apologies = [c for c in bot.fake.calls[first:] if "Something went wrong" in str(c.params.get("text", ""))]
    assert not apologies
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # logged quietly, not as a failure


def test_raw_updates_parse_as_the_bot_api_shapes() -> None:
    """The hand-built updates above are valid Bot API JSON (PTB parses each into the expected object)."""
    for kind, content in OTHER_CONTENT.items():
        message = Update.de_json(raw_message(content)).effective_message
        assert message is not None
        field = {"live location": "location"}.get(kind, kind)
        assert getattr(message, field) is not None, kind
