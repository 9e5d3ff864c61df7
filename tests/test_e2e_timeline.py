"""End to end, the real `python -m bot` against the fake Bot API and the emulator: the timeline as a
picture, the quick-action buttons and the deep link into an example."""

from __future__ import annotations

from pathlib import Path

from bot.core.profiles import PROFILES
from loopback.bot_process import BotProcess
from loopback.emulator import NemoEmulator, sample_draft
from loopback.fake_telegram import FakeTelegram, Message, User
from tests.test_timeline_picture import bars

CHAT = 5151
ADA = User(CHAT, "Ada", "ada", language_code="en")
LI_CHAT = 5252
LI = User(LI_CHAT, "Li", "li", language_code="zh-hans")
SUMMARY = (
    '📋 Timeline (3 tracks): 1. Video: city timelapse (0-10s) 2. BGM: Lo-fi (0-10s, 35%) 3. Title: "Urban '
    'Dreams" (0-3s)'
)
QUICK = [
    "act:ratio_9_16",
    "act:ratio_16_9",
    "act:ratio_1_1",
    "act:export",
    "act:music",
    "act:title",
    "act:shorter",
    "act:longer",
]


def data(message: Message) -> list[str]:
    return [button["callback_data"] for button in message.buttons]


def sent_to_agent(emulator: NemoEmulator) -> list[str]:
    """The user texts the agent received, in order."""
    return [call.json["new_message"]["parts"][0]["text"] for call in emulator.calls("run_sse")]


def session_of(emulator: NemoEmulator, language: str) -> str:
    return next(sid for sid, session in emulator.sessions.items() if session.language == language)


async def test_status_is_a_picture_with_the_summary_and_buttons_that_ask_the_agent(
    fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path
) -> None:
    bot = BotProcess(fake, emulator, tmp_path)
    await bot.start()
    try:
        # A deep link (t.me/<bot>?start=ex1) opens the bot with the first example as a button.
        fake.send_command(CHAT, "/start ex1", user=ADA)
        greeting = await fake.wait_for_message(CHAT, "Try saying", timeout=20)
        first = PROFILES["maker-online-free"].examples[0]
        assert data(greeting) == ["act:ex1"] and first in greeting.buttons[0]["text"]
        mark = fake.message_count(CHAT)
        fake.press_button(CHAT, greeting.message_id, "act:ex1", user=ADA)
        await fake.wait_for_message(CHAT, f"🗣 {first}", after=mark)
        reply = await fake.wait_for_message(CHAT, "on the timeline", after=mark)
        assert sent_to_agent(emulator) == [first]
        # The reply is one message: its last state has the quick actions under it (while it is
        # written, only Stop), sent with it when the agent finished before it could leave, else in
        # its last edit.
        await fake.wait_for(
            lambda c: (
                c.method in ("sendMessage", "editMessageText") and c.ok and "act:ratio_9_16" in str(c.params)
            )
        )
        assert data(reply) == QUICK and reply.text.startswith("Sure, give me a moment.")

        # status: the timeline as a picture, the summary its caption, the quick actions under it.
        emulator.set_draft(session_of(emulator, "en"), sample_draft())
        mark = fake.message_count(CHAT)
        fake.send_text(CHAT, "status", user=ADA)
        picture = await fake.wait_for_message(CHAT, "Timeline", kind="photo", after=mark)
        assert picture.text.splitlines()[0] == SUMMARY and "Media in this project" in picture.text
        assert picture.file is not None and len(bars(picture.file.data)) == 3
        assert data(picture) == QUICK
        assert all(m.kind == "photo" for m in fake.bot_messages(CHAT)[mark:])  # no text besides

        # Telegram refuses the picture: today's text arrives instead.
        fake.fail_next("sendPhoto", error_code=400, description="Bad Request: IMAGE_PROCESS_FAILED")
        mark = fake.message_count(CHAT)
        fake.send_text(CHAT, "/status", user=ADA)
        text = await fake.wait_for_message(CHAT, "Timeline (3 tracks)", after=mark)
        assert text.kind == "text" and text.text == picture.text and data(text) == QUICK

        # The 9:16 button: a chat turn whose message is the instruction.
        mark = fake.message_count(CHAT)
        fake.press_button(CHAT, picture.message_id, "act:ratio_9_16", user=ADA)
        await fake.wait_for_message(CHAT, "on the timeline", after=mark)
        assert sent_to_agent(emulator)[-1] == "Change the aspect ratio to 9:16 (vertical)."

        # A Chinese user's 9:16 is asked in Chinese.
        fake.send_command(LI_CHAT, "/start", user=LI)
        greeting = await fake.wait_for_message(LI_CHAT, "试着说")
        assert data(greeting) == ["act:ex1", "act:ex2", "act:ex3"]
        mark = fake.message_count(LI_CHAT)
        fake.send_text(LI_CHAT, "状态", user=LI)
        empty = await fake.wait_for_message(LI_CHAT, "时间线是空的", after=mark)
        drawn = [call for call in fake.calls_to("sendPhoto") if call.params.get("chat_id") == LI_CHAT]
        assert empty.kind == "text" and not drawn  # nothing to draw
        emulator.set_draft(session_of(emulator, "zh-CN"), sample_draft())
        mark = fake.message_count(LI_CHAT)
        fake.send_text(LI_CHAT, "状态", user=LI)
        picture = await fake.wait_for_message(LI_CHAT, "Timeline", kind="photo", after=mark)
        assert "📱 9:16" in [button["text"] for button in picture.buttons]
        mark = fake.message_count(LI_CHAT)
        fake.press_button(LI_CHAT, picture.message_id, "act:ratio_9_16", user=LI)
        await fake.wait_for_message(LI_CHAT, "🗣 把画面比例改为 9:16（竖屏）。", after=mark)
        await fake.wait_for_message(LI_CHAT, "on the timeline", after=mark)
        assert sent_to_agent(emulator)[-1] == "把画面比例改为 9:16（竖屏）。"
    finally:
        code = await bot.stop()
    assert code == 0, bot.log[-3000:]
    problems = [line for line in bot.log.splitlines() if " ERROR " in line or "Traceback" in line]
    assert not problems, "\n".join(problems)
