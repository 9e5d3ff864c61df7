"""Every chat flow through the real handlers, against the fake Bot API server and the emulator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.core.profiles import PROFILES
from loopback.emulator import NemoEmulator, Turn, sample_draft
from loopback.fake_telegram import User
from loopback.servers import MEDIA
from tests.conftest import MakeHarness
from tests.harness import Harness, connect, turn_over, user_says

CHAT = 777
ADA = User(CHAT, "Ada", "ada", language_code="en")
LI = User(CHAT, "Li", "li", language_code="zh-hans")


@pytest.fixture
async def bot(make_harness: MakeHarness) -> Harness:
    return await make_harness()


async def say(bot: Harness, text: str, user: User = ADA, chat: int = CHAT) -> int:
    return await user_says(bot, chat, text, user)


def add_beach(draft: dict[str, Any]) -> None:
    draft.setdefault("t", []).append({"tt": 0, "sg": [{"d": 5000, "m": {"name": "beach"}}]})


async def connected(bot: Harness, chat: int = CHAT) -> str:
    return await connect(bot, chat, ADA)


# -- start, help, connection ------------------------------------------------------------------


@pytest.mark.parametrize("skill", sorted(PROFILES))
async def test_start_greets_with_the_profiles_examples(make_harness: MakeHarness, skill: str) -> None:
    bot = await make_harness(nemo_skill=skill)
    await bot.send(bot.fake.send_command(CHAT, "/start", user=ADA))
    greeting = await bot.fake.wait_for_message(CHAT, "Try saying")
    for example in PROFILES[skill].examples:
        assert example in greeting.text
    setup = await bot.fake.wait_for_message(CHAT, "Setting things up")
    assert "Connected and ready" in setup.text  # the same message, edited
    assert bot.emulator.calls("anonymous_token")[0].headers["x-skill-source"] == skill


async def test_chinese_users_get_chinese_replies_and_a_chinese_session(bot: Harness) -> None:
    await bot.send(bot.fake.send_command(CHAT, "/start", user=LI))
    await bot.fake.wait_for_message(CHAT, "试着说")
    await bot.fake.wait_for_message(CHAT, "已连接")
    session = next(iter(bot.emulator.sessions.values()))
    assert session.language == "zh-CN"
    mark = await say(bot, "积分", user=LI)
    await bot.fake.wait_for_message(CHAT, "可用", after=mark)


async def test_help_lists_commands_formats_and_the_limit(make_harness: MakeHarness) -> None:
    bot = await make_harness(nemo_skill="free-generator-maker")
    await bot.send(bot.fake.send_command(CHAT, "/help", user=ADA))
    message = await bot.fake.wait_for_message(CHAT, "/export")
    assert "200 MB" in message.text and "webp" in message.text


async def test_first_message_sets_up_then_answers(bot: Harness) -> None:
    mark = await say(bot, "credits")
    setup = await bot.fake.wait_for_message(CHAT, "Setting things up", after=mark)
    await bot.fake.wait_for_message(CHAT, "Credits:", after=mark)
    assert "Connected and ready" in setup.text


async def test_backend_down_at_first_contact_is_a_friendly_message(bot: Harness) -> None:
    bot.emulator.inject("anonymous_token", http_status=503, times=3)
    mark = await say(bot, "status")
    message = await bot.fake.wait_for_message(CHAT, "isn't answering", after=mark)
    assert "Setting things up" in message.history[0]


async def test_commands_menu_is_registered_in_english_and_chinese(bot: Harness) -> None:
    calls = bot.fake.calls_to("setMyCommands")
    languages = {call.params.get("language_code") for call in calls}
    assert None in languages and "zh" in languages


# -- chat turns -------------------------------------------------------------------------------


async def test_turn_streams_text_escaped_without_tool_traffic(bot: Harness) -> None:
    await connected(bot)
    bot.emulator.script("tags", Turn(texts=["Use <b>bold</b> & 'quotes' here."]))
    mark = await say(bot, "show me tags")
    message = await bot.fake.wait_for_message(CHAT, "bold", after=mark)
    assert message.text == "Use <b>bold</b> & 'quotes' here."  # shown literally, not as markup
    await asyncio.sleep(0.2)
    texts = " ".join(m.text for m in bot.fake.bot_messages(CHAT)[mark:])
    assert "functionCall" not in texts and "edit_timeline" not in texts


async def test_gui_instructions_become_chat_terms_and_working_buttons(bot: Harness) -> None:
    await connected(bot)
    session_id = next(iter(bot.emulator.sessions))
    bot.emulator.set_draft(session_id, sample_draft())
    bot.emulator.script(
        "gui", Turn(texts=["All set! Click the Export button, or preview it in the timeline."])
    )
    mark = await say(bot, "gui please")
    message = await bot.fake.wait_for_message(CHAT, "All set", after=mark)
    await turn_over(bot, CHAT)  # the reply's buttons come with its last edit (Stop until then)
    assert "Click" not in message.text and 'say "export"' in message.text
    await turn_over(bot, CHAT)  # the turn's last reply: its own buttons, then the quick actions
    assert [b["callback_data"] for b in message.buttons][3:5] == ["act:export", "act:status"]
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.press_button(CHAT, message.message_id, "act:status", user=ADA))
    await bot.fake.wait_for_message(CHAT, "Timeline (3 tracks)", after=mark)
    await bot.send(bot.fake.press_button(CHAT, message.message_id, "act:export", user=ADA))
    await bot.fake.wait_for_message(CHAT, kind="video", after=mark, timeout=15)


async def test_long_replies_are_split_at_4096(bot: Harness) -> None:
    await connected(bot)
    long_text = ("The quick brown fox jumps over the lazy dog & friends. " * 120).strip()
    bot.emulator.script("long", Turn(texts=[long_text]))
    mark = await say(bot, "long answer please")
    await bot.fake.wait_for_message(CHAT, "friends.", after=mark)
    await asyncio.sleep(0.3)
    parts = [m for m in bot.fake.bot_messages(CHAT)[mark:] if "quick brown fox" in m.text]
    assert len(parts) == 2 and all(len(p.source) <= 4096 for p in parts)
    assert " ".join(p.text for p in parts).replace("  ", " ").count("lazy dog") == 120


async def test_silent_turn_reports_what_changed(bot: Harness) -> None:
    await connected(bot)
    mark = await say(bot, "silent edit: add music")
    message = await bot.fake.wait_for_message(CHAT, "What changed on the timeline", after=mark)
    assert "Added: Video" in message.text


async def test_still_working_notice_during_a_quiet_turn(bot: Harness) -> None:
    await connected(bot)
    bot.emulator.script("slow", Turn(texts=["Finally done."], duration=1.0))
    mark = await say(bot, "slow one")
    notice = await bot.fake.wait_for_message(CHAT, "Still working", after=mark)
    assert [b["callback_data"] for b in notice.buttons] == ["act:stop"]  # the turn can be stopped from it
    await bot.fake.wait_for_message(CHAT, "Finally done.", after=mark)
    await turn_over(bot, CHAT)
    assert (
        notice.text == "Finally done."
    )  # the notice became the reply: Stop gone, the quick actions under it
    assert "act:stop" not in [b["callback_data"] for b in notice.buttons] and len(notice.buttons) == 8
    assert bot.fake.message_count(CHAT) == mark + 1
    typing = [c for c in bot.fake.calls_to("sendChatAction") if c.params.get("action") == "typing"]
    assert len(typing) >= 3


async def test_one_turn_at_a_time_and_nothing_sent_twice(bot: Harness) -> None:
    await connected(bot)
    bot.emulator.script("slow", Turn(texts=["Done slowly."], duration=1.5))
    await say(bot, "slow one")
    mark = await say(bot, "another request meanwhile")
    await bot.fake.wait_for_message(CHAT, "still working on your previous request", after=mark)
    await bot.fake.wait_for_message(CHAT, "Done slowly.")
    assert [m for s in bot.emulator.sessions.values() for m in s.messages] == ["slow one"]
    mark = await say(bot, "now the next one")
    await bot.fake.wait_for_message(CHAT, "on the timeline", after=mark)


async def test_past_max_live_turns_a_turn_waits_in_line_and_says_so(make_harness: MakeHarness) -> None:
    bot = await make_harness(max_live_turns=1)
    bea = User(778, "Bea", "bea", language_code="en")
    await connected(bot)
    await connect(bot, bea.id, bea)
    bot.emulator.script("slow", Turn(texts=["Done slowly."], duration=1.0))
    await say(bot, "slow one")
    await bot.fake.wait_for(lambda call: call.method == "sendChatAction", timeout=5)
    mark = await user_says(bot, bea.id, "make a teaser", bea)
    await bot.fake.wait_for_message(bea.id, "next in line", after=mark)
    await bot.fake.wait_for_message(CHAT, "Done slowly.")
    await bot.fake.wait_for_message(bea.id, "on the timeline", after=mark)  # her turn ran after


async def test_cancel_stops_waiting_for_the_turn(bot: Harness) -> None:
    await connected(bot)
    bot.emulator.script("forever", Turn(texts=["never shown"], duration=5))
    await say(bot, "forever and ever")
    await asyncio.sleep(0.2)
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.send_command(CHAT, "/cancel", user=ADA))
    await bot.fake.wait_for_message(CHAT, "Stopped waiting", after=mark)
    mark = await say(bot, "next request")
    await bot.fake.wait_for_message(CHAT, "on the timeline", after=mark)
    await turn_over(bot, CHAT)
    await bot.send(bot.fake.send_command(CHAT, "/cancel", user=ADA))
    await bot.fake.wait_for_message(CHAT, "Nothing is running", after=mark)


async def test_dropped_stream_is_not_resent_and_changes_are_reported(bot: Harness) -> None:
    await connected(bot)
    bot.emulator.script(
        "drop", Turn(texts=["Starting…", "never arrives"], drop_after=1, draft_change=add_beach)
    )
    mark = await say(bot, "drop it")
    await bot.fake.wait_for_message(CHAT, "connection to the agent dropped", after=mark)
    changes = await bot.fake.wait_for_message(CHAT, "What changed on the timeline", after=mark)
    assert "Added: Video: beach (0-5s)" in changes.text
    assert len(bot.emulator.calls("run_sse")) == 1


async def test_agent_error_event_is_explained(bot: Harness) -> None:
    await connected(bot)
    bot.emulator.script("unsafe", Turn(texts=[], error="SAFETY", error_message="blocked by safety"))
    mark = await say(bot, "unsafe request")
    await bot.fake.wait_for_message(CHAT, "couldn't finish this one", after=mark)


async def test_out_of_credits_gives_the_registration_link(bot: Harness) -> None:
    await connected(bot)
    for account in bot.emulator.accounts.values():
        account.credits_available = 0
    mark = await say(bot, "make a video")
    message = await bot.fake.wait_for_message(CHAT, "out of credits", after=mark)
    user_id = (await bot.services.store.load_chat(str(CHAT))).user_id
    assert f"register?bind={user_id}" in message.source


async def test_expired_token_and_lost_session_are_invisible_to_the_user(bot: Harness) -> None:
    first = await connected(bot)
    bot.emulator.expire_tokens()
    bot.emulator.drop_sessions()
    mark = await say(bot, "hello again")
    await bot.fake.wait_for_message(CHAT, "on the timeline", after=mark)
    assert (await bot.services.store.load_chat(str(CHAT))).session_id != first


async def test_new_starts_a_fresh_session(bot: Harness) -> None:
    first = await connected(bot)
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.send_command(CHAT, "/new", user=ADA))
    await bot.fake.wait_for_message(CHAT, "fresh project", after=mark)
    assert (await bot.services.store.load_chat(str(CHAT))).session_id not in ("", first)


# -- uploads ----------------------------------------------------------------------------------


async def test_photo_is_uploaded_as_bytes_and_confirmed(bot: Harness) -> None:
    await connected(bot)
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.send_photo(CHAT, (MEDIA / "photo.jpg").read_bytes(), user=ADA))
    message = await bot.fake.wait_for_message(CHAT, "Added to your project", after=mark)
    assert "image" in message.text
    upload = bot.emulator.calls("upload")[-1]
    assert upload.files == [("photo_1.jpg", (MEDIA / "photo.jpg").stat().st_size)]
    assert bot.fake.token not in upload.raw.decode(errors="replace")


@pytest.mark.parametrize(
    ("name", "mime", "expected"),
    [
        ("clip.mov", "video/quicktime", "video"),
        ("clip.webm", "video/webm", "video"),
        ("tone.mp3", "audio/mpeg", "audio"),
        ("tone.wav", "audio/wav", "audio"),
        ("tone.m4a", "audio/mp4", "audio"),
        ("image.webp", "image/webp", "image"),
        ("anim.gif", "image/gif", "image"),
    ],
)
async def test_accepted_documents_are_uploaded(bot: Harness, name: str, mime: str, expected: str) -> None:
    await connected(bot)
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.send_document(CHAT, (MEDIA / name).read_bytes(), name, mime, user=ADA))
    message = await bot.fake.wait_for_message(CHAT, "Added to your project", after=mark)
    assert expected in message.text and name in message.text


@pytest.mark.parametrize(
    ("name", "mime", "reason"),
    [
        ("not_a_video.mp4", "video/mp4", "isn't a readable"),
        ("empty.mp4", "video/mp4", "empty"),
        ("truncated.mp4", "video/mp4", "incomplete"),
        ("photo.jpg.exe", "application/octet-stream", "exe is not a format"),
        ("voice.ogg", "audio/ogg", "voice notes"),
    ],
)
async def test_broken_or_disguised_files_are_refused_with_the_reason(
    bot: Harness, name: str, mime: str, reason: str
) -> None:
    await connected(bot)
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.send_document(CHAT, (MEDIA / name).read_bytes(), name, mime, user=ADA))
    message = await bot.fake.wait_for_message(CHAT, "Not added", after=mark)
    assert reason in message.text and name in message.text
    assert not bot.emulator.calls("upload")


async def test_voice_notes_are_refused_before_downloading(bot: Harness) -> None:
    await connected(bot)
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.send_voice(CHAT, (MEDIA / "voice.ogg").read_bytes(), user=ADA))
    await bot.fake.wait_for_message(CHAT, "voice notes", after=mark)
    assert not bot.fake.calls_to("getFile")


async def test_files_over_telegrams_limit_are_refused_without_download(bot: Harness) -> None:
    await connected(bot)
    mark = bot.fake.message_count(CHAT)
    data = (MEDIA / "clip.mp4").read_bytes()
    await bot.send(bot.fake.send_video(CHAT, data, user=ADA, size=30 * 1024 * 1024))
    message = await bot.fake.wait_for_message(CHAT, "Telegram lets bots download", after=mark)
    assert "link" in message.text and not bot.fake.calls_to("getFile")


async def test_files_over_the_profile_limit_are_refused(make_harness: MakeHarness) -> None:
    bot = await make_harness(max_upload_mb=1)
    await connected(bot)
    mark = bot.fake.message_count(CHAT)
    data = (MEDIA / "clip.mp4").read_bytes()
    await bot.send(bot.fake.send_video(CHAT, data, user=ADA, size=5 * 1024 * 1024))
    await bot.fake.wait_for_message(CHAT, "over the 1 MB limit", after=mark)


async def test_album_becomes_one_batch_and_one_reply(bot: Harness) -> None:
    await connected(bot)
    mark = bot.fake.message_count(CHAT)
    items = [
        ("photo", (MEDIA / "photo.jpg").read_bytes(), "a.jpg"),
        ("video", (MEDIA / "clip.mp4").read_bytes(), "clip.mp4"),
        ("photo", (MEDIA / "photo.png").read_bytes(), "b.png"),
    ]
    for update in bot.fake.send_album(CHAT, items, user=ADA):
        await bot.send(update)
    message = await bot.fake.wait_for_message(CHAT, "Added to your project", after=mark)
    await asyncio.sleep(0.4)
    assert message.text.count("•") == 3
    assert len(bot.emulator.calls("upload")) == 1 and len(bot.emulator.calls("upload")[0].files) == 3
    assert sum("Added to your project" in m.text for m in bot.fake.bot_messages(CHAT)[mark:]) == 1


async def test_caption_is_acted_on_after_the_upload(bot: Harness) -> None:
    await connected(bot)
    mark = bot.fake.message_count(CHAT)
    photo = (MEDIA / "photo.jpg").read_bytes()
    await bot.send(bot.fake.send_photo(CHAT, photo, caption="make a promo from this", user=ADA))
    await bot.fake.wait_for_message(CHAT, "Added to your project", after=mark)
    await bot.fake.wait_for_message(CHAT, "on the timeline", after=mark)
    assert bot.emulator.sessions[next(iter(bot.emulator.sessions))].messages == ["make a promo from this"]


async def test_links_are_uploaded_by_url(bot: Harness) -> None:
    await connected(bot)
    mark = await say(bot, "https://example.com/media/shop.jpg")
    message = await bot.fake.wait_for_message(CHAT, "Added to your project", after=mark)
    assert "shop.jpg" in message.text
    assert bot.emulator.calls("upload")[-1].json == {
        "urls": ["https://example.com/media/shop.jpg"],
        "source_type": "url",
    }


async def test_upload_word_explains_how(bot: Harness) -> None:
    mark = await say(bot, "upload")
    message = await bot.fake.wait_for_message(CHAT, "Send photos, videos or audio", after=mark)
    assert "500 MB" in message.text


async def test_backend_refusing_a_file_type_is_explained(bot: Harness) -> None:
    await connected(bot)
    bot.emulator.inject("upload", code=4001)
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.send_photo(CHAT, (MEDIA / "photo.jpg").read_bytes(), user=ADA))
    message = await bot.fake.wait_for_message(CHAT, "refused this file type", after=mark)
    assert "mp4" in message.text


# -- status and credits -----------------------------------------------------------------------


async def test_status_shows_the_timeline_and_media(bot: Harness) -> None:
    session_id = await connected(bot)
    mark = await say(bot, "status")
    await bot.fake.wait_for_message(CHAT, "timeline is empty", after=mark)
    bot.emulator.set_draft(session_id, sample_draft())
    await bot.send(bot.fake.send_video(CHAT, (MEDIA / "clip.mp4").read_bytes(), user=ADA))
    await bot.fake.wait_for_message(CHAT, "Added to your project", after=mark)
    mark = await say(bot, "show tracks")
    message = await bot.fake.wait_for_message(CHAT, "Timeline (3 tracks)", after=mark)
    assert (
        '1. Video: city timelapse (0-10s) 2. BGM: Lo-fi (0-10s, 35%) 3. Title: "Urban Dreams" (0-3s)'
        in message.text
    )
    assert "Media in this project: 1 (1 video)" in message.text


async def test_status_survives_a_draft_of_unknown_shape(bot: Harness) -> None:
    session_id = await connected(bot)
    bot.emulator.set_draft(session_id, {"t": [{"tt": 99, "sg": [{"weird": True}]}, "junk"], "x": 1})
    mark = await say(bot, "状态")
    await bot.fake.wait_for_message(CHAT, "Timeline (1 track)", after=mark)


async def test_credits_show_balance_and_link_only_for_anonymous(
    make_harness: MakeHarness, emulator: NemoEmulator
) -> None:
    bot = await make_harness()
    mark = await say(bot, "balance")
    message = await bot.fake.wait_for_message(CHAT, "Credits:", after=mark)
    assert "100 available, 0 frozen, 100 total" in message.text and "bind=anon_" in message.source
    await bot.stop()
    account = emulator.add_account("operator", registered=True)
    operator = await make_harness(nemo_token=account.token)
    mark = await say(operator, "credits", chat=CHAT + 1)
    message = await operator.fake.wait_for_message(CHAT + 1, "Credits:", after=mark)
    assert "bind=" not in message.source
    assert not [c for c in emulator.calls("anonymous_token") if c.headers.get("x-client-id") == "operator"]


# -- export -----------------------------------------------------------------------------------


async def test_export_with_an_empty_timeline_says_what_to_do(bot: Harness) -> None:
    await connected(bot)
    mark = await say(bot, "export")
    await bot.fake.wait_for_message(CHAT, "nothing on the timeline", after=mark)
    assert not bot.emulator.calls("render_start")


@pytest.mark.parametrize("shape", ["output", "success"])
async def test_export_delivers_the_mp4_once_with_progress(bot: Harness, shape: str) -> None:
    session_id = await connected(bot)
    bot.emulator.render_shape = shape
    bot.emulator.render_polls_per_step = 2
    bot.emulator.set_draft(session_id, sample_draft())
    mark = await say(bot, "export 1080p MP4")
    video = await bot.fake.wait_for_message(CHAT, kind="video", after=mark, timeout=15)
    assert video.file is not None and video.file.data == (MEDIA / "clip.mp4").read_bytes()
    assert "Download: http" in video.text
    progress = await bot.fake.wait_for_message(CHAT, "Export queued", after=mark)
    assert any("Rendering your video" in text for text in progress.history)
    start = bot.emulator.calls("render_start")[0].json
    assert start["sessionId"] == session_id and start["draft"] == sample_draft()
    assert start["output"] == {"format": "mp4", "quality": "high"} and start["id"].startswith("render_")
    await asyncio.sleep(0.3)
    assert sum(m.kind == "video" for m in bot.fake.bot_messages(CHAT)) == 1
    assert await bot.services.store.active_renders() == []


async def test_second_export_while_rendering_is_not_started_twice(bot: Harness) -> None:
    session_id = await connected(bot)
    bot.emulator.render_polls_per_step = 40
    bot.emulator.set_draft(session_id, sample_draft())
    await say(bot, "export")
    await bot.fake.wait_for_message(CHAT, "Export queued")
    mark = await say(bot, "export")
    await bot.fake.wait_for_message(CHAT, "already rendering", after=mark)
    assert len(bot.emulator.calls("render_start")) == 1


async def test_failed_render_says_why_and_retry_works(bot: Harness) -> None:
    session_id = await connected(bot)
    bot.emulator.set_draft(session_id, sample_draft())
    bot.emulator.render_fail = "GPU node crashed"
    mark = await say(bot, "export")
    failed = await bot.fake.wait_for_message(CHAT, "GPU node crashed", after=mark, timeout=15)
    assert [b["callback_data"] for b in failed.buttons] == ["act:retry"]
    bot.emulator.render_fail = None
    await bot.send(bot.fake.press_button(CHAT, failed.message_id, "act:retry", user=ADA))
    await bot.fake.wait_for_message(CHAT, kind="video", after=mark, timeout=15)
    ids = [c.json["id"] for c in bot.emulator.calls("render_start")]
    assert len(ids) == 2 and len(set(ids)) == 2


async def test_export_refused_by_plan_is_explained(bot: Harness) -> None:
    session_id = await connected(bot)
    bot.emulator.set_draft(session_id, sample_draft())
    bot.emulator.inject("render_start", http_status=402)
    mark = await say(bot, "export")
    message = await bot.fake.wait_for_message(CHAT, "registered or upgraded plan", after=mark)
    assert "not about credits" in message.text


async def test_a_render_too_large_for_telegram_is_sent_as_a_link(
    make_harness: MakeHarness, tmp_path: Any
) -> None:
    bot = await make_harness()
    session_id = await connected(bot)
    bot.emulator.set_draft(session_id, sample_draft())
    bot.services._renders._upload_limit = 1000  # the rendered clip is 30 KB
    mark = await say(bot, "export")
    message = await bot.fake.wait_for_message(CHAT, "too large to send here", after=mark, timeout=15)
    assert "/static/render/render_" in message.text
    assert not [m for m in bot.fake.bot_messages(CHAT) if m.kind == "video"]


async def test_a_restarted_bot_still_delivers_a_render_once(make_harness: MakeHarness) -> None:
    first = await make_harness()
    session_id = await connected(first)
    first.emulator.set_draft(session_id, sample_draft())
    first.emulator.render_polls_per_step = 1000  # stays pending while the first bot runs
    redis = first.services.store.redis
    await say(first, "export")
    await first.fake.wait_for_message(CHAT, "Export queued")
    await first.stop()
    first.emulator.render_polls_per_step = 1
    second = await make_harness()
    await second.services.store.redis.aclose()
    second.services.store.redis = redis  # the same Redis, as after a restart
    await second.fake.wait_for_message(CHAT, kind="video", timeout=15)
    await asyncio.sleep(0.3)
    assert sum(m.kind == "video" for m in second.fake.bot_messages(CHAT)) == 1


# -- robustness -------------------------------------------------------------------------------


async def test_backend_errors_get_short_messages_and_other_chats_keep_working(bot: Harness) -> None:
    await connected(bot)
    await connected(bot, chat=CHAT + 5)
    bot.emulator.inject("state", http_status=500, times=3)  # every retry fails too
    mark = await say(bot, "status")
    await bot.fake.wait_for_message(CHAT, "isn't answering", after=mark)
    other = await say(bot, "status", chat=CHAT + 5)
    await bot.fake.wait_for_message(CHAT + 5, "timeline is empty", after=other)


async def test_stickers_and_other_messages_get_a_clear_reply(bot: Harness) -> None:
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.send_sticker(CHAT, b"RIFF....WEBPVP8 ", user=ADA))
    await bot.fake.wait_for_message(CHAT, "I work with text, photos", after=mark)


async def test_edited_messages_are_ignored(bot: Harness) -> None:
    await connected(bot)
    sent = bot.fake.send_text(CHAT, "hello", user=ADA)
    await bot.send(sent)
    await bot.fake.wait_for_message(CHAT, "on the timeline")
    await turn_over(bot, CHAT)  # and the preview of the clip the agent made
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.edit_text(CHAT, sent["message"]["message_id"], "hello edited"))
    await asyncio.sleep(0.3)
    assert bot.fake.message_count(CHAT) == mark and len(bot.emulator.calls("run_sse")) == 1


async def test_forged_button_data_does_nothing(bot: Harness) -> None:
    await connected(bot)
    message = bot.fake.bot_messages(CHAT)[-1]
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.press_button(CHAT, message.message_id, "act:drop_tables", user=ADA, check=False))
    await asyncio.sleep(0.2)
    assert bot.fake.message_count(CHAT) == mark and bot.fake.calls_to("answerCallbackQuery")


# -- Telegram and backend faults --------------------------------------------------------------


async def test_flood_wait_is_honoured_and_the_reply_still_arrives(bot: Harness) -> None:
    await connected(bot)
    bot.fake.fail_next("sendMessage", error_code=429, retry_after=1)
    mark = await say(bot, "credits")
    await bot.fake.wait_for_message(CHAT, "Credits:", after=mark, timeout=15)
    failed = [c for c in bot.fake.calls_to("sendMessage") if not c.ok]
    assert len(failed) == 1


async def test_telegram_network_errors_are_retried(bot: Harness) -> None:
    await connected(bot)
    bot.fake.fail_next("sendMessage", error_code=502, retry_after=None)
    mark = await say(bot, "credits")
    await bot.fake.wait_for_message(CHAT, "Credits:", after=mark, timeout=15)


async def test_a_deleted_progress_message_is_replaced(bot: Harness) -> None:
    session_id = await connected(bot)
    bot.emulator.set_draft(session_id, sample_draft())
    bot.emulator.render_polls_per_step = 3
    bot.fake.fail_next(
        "editMessageText",
        error_code=400,
        description="Bad Request: message to edit not found",
        retry_after=None,
        times=5,
    )
    mark = await say(bot, "export")
    await bot.fake.wait_for_message(CHAT, kind="video", after=mark, timeout=15)
    assert await bot.fake.wait_for_message(CHAT, "Rendering your video", after=mark)


async def test_a_render_that_never_finishes_is_given_up_with_a_retry(make_harness: MakeHarness) -> None:
    bot = await make_harness(render_max_seconds=0.5)
    session_id = await connected(bot)
    bot.emulator.set_draft(session_id, sample_draft())
    bot.emulator.render_polls_per_step = 10_000
    mark = await say(bot, "export")
    message = await bot.fake.wait_for_message(CHAT, "stopped waiting for it", after=mark, timeout=10)
    assert [b["callback_data"] for b in message.buttons] == ["act:retry"]
    assert await bot.services.store.active_renders() == []
    for _ in range(40):  # the backend job is cancelled right after the message
        if bot.emulator.calls("render_cancel"):
            break
        await asyncio.sleep(0.05)
    assert bot.emulator.calls("render_cancel")


async def test_a_redis_outage_is_explained_to_the_user(bot: Harness) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    await connected(bot)

    async def down(*_args: Any, **_kwargs: Any) -> Any:
        raise RedisConnectionError("Connection refused")

    bot.services.store.load_chat = down  # type: ignore[method-assign]
    mark = await say(bot, "status")
    await bot.fake.wait_for_message(CHAT, "briefly unavailable", after=mark)


async def test_a_warm_credits_request_reads_the_chats_record_once(bot: Harness) -> None:
    """A connected chat's "credits": one read of its record (token, session and the register
    link's id together), where there used to be three."""
    await connected(bot)
    reads = 0
    load_chat = bot.services.store.load_chat

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await load_chat(*args, **kwargs)

    bot.services.store.load_chat = counted  # type: ignore[method-assign]
    mark = await say(bot, "credits")
    await bot.fake.wait_for_message(CHAT, "Credits:", after=mark)
    sent = [
        call.params["text"] for call in bot.fake.calls_to("sendMessage") if "Credits" in call.params["text"]
    ]
    assert "bind=" in sent[-1]  # the register link still names the account
    assert reads == 1
