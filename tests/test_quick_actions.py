"""The timeline picture, quick actions and example buttons through the real handlers (in process),
against the fake Bot API and the emulator: the cases around the end-to-end walk."""

from __future__ import annotations

import asyncio

import pytest

from bot.core.profiles import PROFILES
from loopback.emulator import Turn, sample_draft
from loopback.fake_telegram import Message, User
from tests.conftest import MakeHarness
from tests.harness import Harness, connect, turn_over, user_says
from tests.test_e2e_timeline import QUICK
from tests.test_timeline_picture import bars

CHAT = 888
ADA = User(CHAT, "Ada", "ada", language_code="en")
GROUP = -100888
BOT = "@nemo_test_bot"


@pytest.fixture
async def bot(make_harness: MakeHarness) -> Harness:
    return await make_harness()


def data(message: Message) -> list[str]:
    return [button["callback_data"] for button in message.buttons]


def agent_heard(bot: Harness) -> list[str]:
    return [m for s in bot.emulator.sessions.values() for m in s.messages]


async def test_a_summary_too_long_for_a_caption_follows_the_picture(bot: Harness) -> None:
    session_id = await connect(bot, CHAT, ADA)
    draft = {
        "t": [
            {"tt": 0, "sg": [{"d": 2000, "m": {"name": f"clip number {i} " + "x" * 40}}]} for i in range(20)
        ]
    }
    bot.emulator.set_draft(session_id, draft)
    mark = await user_says(bot, CHAT, "status", ADA)
    text = await bot.fake.wait_for_message(CHAT, "Timeline (20 tracks)", kind="text", after=mark)
    picture, after = bot.fake.bot_messages(CHAT)[mark:]
    assert after is text and picture.kind == "photo"
    assert picture.text == "📋 Timeline: 20 track(s), 2s in all. Details below."
    assert picture.file is not None and len(bars(picture.file.data)) == 12  # the rest counted, not drawn
    assert data(picture) == [] and "act:ratio_9_16" in data(text)  # the buttons under the last


async def test_quick_actions_follow_the_turn_rules(make_harness: MakeHarness) -> None:
    # three allowed: like a typed message, a press refused as busy has used one up
    bot = await make_harness(turns_per_user=3, turn_busy_grace_seconds=0)
    session_id = await connect(bot, CHAT, ADA)
    bot.emulator.set_draft(session_id, sample_draft())
    bot.emulator.script("slow", Turn(texts=["Done slowly."], duration=1.0))
    mark = await user_says(bot, CHAT, "slow one", ADA)
    # pressed while a turn runs: "wait or /cancel", and nothing reaches the agent
    greeting = bot.fake.bot_messages(CHAT)[0].message_id
    await bot.send(bot.fake.press_button(CHAT, greeting, "act:shorter", user=ADA, check=False))
    await bot.fake.wait_for_message(CHAT, "still working on your previous request", after=mark)
    reply = await bot.fake.wait_for_message(CHAT, "Done slowly.")
    await turn_over(bot, CHAT)
    assert agent_heard(bot) == ["slow one"]
    await bot.send(bot.fake.press_button(CHAT, reply.message_id, "act:longer", user=ADA))
    await bot.fake.wait_for_message(CHAT, "on the timeline", after=mark)
    await turn_over(bot, CHAT)
    assert agent_heard(bot)[-1] == "Make the video longer: give each part more time."
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.press_button(CHAT, reply.message_id, "act:music", user=ADA))
    await bot.fake.wait_for_message(CHAT, "try again in", after=mark)  # the user's limit holds
    assert len(agent_heard(bot)) == 2


async def test_the_export_button_of_the_picture_still_exports(bot: Harness) -> None:
    session_id = await connect(bot, CHAT, ADA)
    bot.emulator.set_draft(session_id, sample_draft())
    mark = await user_says(bot, CHAT, "status", ADA)
    picture = await bot.fake.wait_for_message(CHAT, "Timeline", kind="photo", after=mark)
    await bot.send(bot.fake.press_button(CHAT, picture.message_id, "act:export", user=ADA))
    await bot.fake.wait_for_message(CHAT, kind="video", after=mark, timeout=15)


async def test_examples_are_buttons_acted_on_as_if_typed(bot: Harness) -> None:
    await bot.send(bot.fake.send_command(CHAT, "/start", user=ADA))
    greeting = await bot.fake.wait_for_message(CHAT, "Try saying")
    assert data(greeting) == ["act:ex1", "act:ex2", "act:ex3"]
    assert [len(row) for row in greeting.reply_markup["inline_keyboard"]] == [1, 1, 1]  # type: ignore[index]
    # the second example is "export 1080p MP4": as typed, that is an export, not a chat turn
    assert PROFILES["maker-online-free"].examples[1] == "export 1080p MP4"
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.press_button(CHAT, greeting.message_id, "act:ex2", user=ADA))
    await bot.fake.wait_for_message(CHAT, "nothing on the timeline to export", after=mark)
    assert agent_heard(bot) == []


@pytest.mark.parametrize("payload", ["promo", "ex9", "ex0", "a" * 65, "ex1%20x"])
async def test_an_unknown_deep_link_payload_just_greets(bot: Harness, payload: str) -> None:
    await bot.send(bot.fake.send_command(CHAT, f"/start {payload}", user=ADA))
    greeting = await bot.fake.wait_for_message(CHAT, "Try saying")
    assert data(greeting) == ["act:ex1", "act:ex2", "act:ex3"] and "Tap to try" not in greeting.text
    await bot.send(bot.fake.press_button(CHAT, greeting.message_id, "act:ex9", user=ADA, check=False))
    await asyncio.sleep(0.2)
    assert agent_heard(bot) == []  # a forged example number does nothing


async def test_only_a_turns_last_reply_gets_the_quick_actions(bot: Harness) -> None:
    await connect(bot, CHAT, ADA)
    bot.emulator.script("gui", Turn(texts=["Working on it.", "All set! Click the Export button."]))
    mark = await user_says(bot, CHAT, "gui please", ADA)
    await bot.fake.wait_for_message(CHAT, "All set", after=mark)
    await turn_over(bot, CHAT)
    # One message grown by edits (the live reply); the last edit puts the actions under it.
    reply = [m for m in bot.fake.bot_messages(CHAT)[mark:] if m.kind == "text" and "All set" in m.text][-1]
    assert "Working on it." in reply.text
    assert data(reply) == QUICK


async def test_a_group_turns_merged_reply_gets_the_quick_actions(make_harness: MakeHarness) -> None:
    bot = await make_harness(group_merge_seconds=0.3)
    bot.fake.set_chat(GROUP, "supergroup")
    bot.emulator.script("chatty", Turn(texts=["Step 1.", "Step 2."]))
    await bot.send(bot.fake.send_text(GROUP, f"{BOT} be chatty"))
    merged = await bot.fake.wait_for_message(GROUP, "Step 2.", timeout=10)
    await turn_over(bot, GROUP)
    assert "Step 1." in merged.text and "act:ratio_9_16" in data(merged)


async def test_a_silent_turns_report_offers_the_quick_actions(bot: Harness) -> None:
    await connect(bot, CHAT, ADA)
    mark = await user_says(bot, CHAT, "silent edit", ADA)
    report = await bot.fake.wait_for_message(CHAT, "What changed on the timeline", after=mark)
    assert "act:ratio_9_16" in data(report) and "act:export" in data(report)
