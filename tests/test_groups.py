"""Groups, forum topics and channels; access control, limits and the operator's usage command."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopback.emulator import Turn, sample_draft
from loopback.fake_telegram import FakeTelegram, User
from loopback.servers import MEDIA
from tests.conftest import MakeHarness
from tests.harness import Harness

GROUP = -1001234
CHANNEL = -1009876
ANN = User(11, "Ann", "ann", language_code="en")
BEN = User(12, "Ben", "ben", language_code="en")
BOSS = User(13, "Boss", "boss", language_code="en")
OUTSIDER = User(66, "Eve", "eve", language_code="en")
BOT = "@nemo_test_bot"


@pytest.fixture
async def bot(make_harness: MakeHarness, fake: FakeTelegram) -> Harness:
    fake.set_chat(GROUP, "supergroup", title="Video team")
    return await make_harness()


async def group_says(
    bot: Harness, text: str, user: User = ANN, chat: int = GROUP, **kw: Any
) -> dict[str, Any]:
    update = bot.fake.send_text(chat, text, user=user, **kw)
    await bot.send(update)
    return update


async def settle(seconds: float = 0.3) -> None:
    await asyncio.sleep(seconds)


# -- groups -----------------------------------------------------------------------------------


async def test_plain_group_chatter_is_ignored_silently(bot: Harness) -> None:
    await group_says(bot, "lunch at noon?")
    await group_says(bot, "export the slides please")
    await settle()
    assert bot.fake.bot_messages(GROUP) == [] and bot.emulator.requests == []


async def test_a_mention_is_acted_on_and_the_reply_quotes_it(bot: Harness) -> None:
    update = await group_says(bot, f"{BOT} credits")
    message = await bot.fake.wait_for_message(GROUP, "Credits:")
    assert message.reply_to == update["message"]["message_id"]


async def test_commands_with_the_bot_name_work(bot: Harness) -> None:
    await bot.send(bot.fake.send_command(GROUP, "/status@nemo_test_bot", user=ANN))
    await bot.fake.wait_for_message(GROUP, "timeline is empty")


async def test_a_reply_to_the_bot_is_a_chat_turn(bot: Harness) -> None:
    await group_says(bot, f"{BOT} status")
    answer = await bot.fake.wait_for_message(GROUP, "timeline is empty")
    await group_says(bot, "make a 10 second promo", reply_to=answer.message_id)
    await bot.fake.wait_for_message(GROUP, "on the timeline")
    assert next(iter(bot.emulator.sessions.values())).messages == ["make a 10 second promo"]


async def test_media_counts_only_when_its_caption_mentions_the_bot(bot: Harness) -> None:
    photo = (MEDIA / "photo.jpg").read_bytes()
    await bot.send(bot.fake.send_photo(GROUP, photo, user=ANN, caption="our shop"))
    await settle()
    assert not bot.emulator.calls("upload")
    await bot.send(bot.fake.send_photo(GROUP, photo, user=ANN, caption=f"{BOT} our shop"))
    await bot.fake.wait_for_message(GROUP, "Added to your project")
    await bot.fake.wait_for_message(GROUP, "on the timeline")  # the caption, minus the mention, is a turn
    assert next(iter(bot.emulator.sessions.values())).messages == ["our shop"]


async def test_a_group_shares_one_project_by_default(bot: Harness) -> None:
    await group_says(bot, f"{BOT} credits", user=ANN)
    await bot.fake.wait_for_message(GROUP, "Credits:")
    await group_says(bot, f"{BOT} status", user=BEN)
    await bot.fake.wait_for_message(GROUP, "timeline")
    assert len(bot.emulator.sessions) == 1


async def test_per_user_projects_in_a_group(make_harness: MakeHarness, fake: FakeTelegram) -> None:
    fake.set_chat(GROUP, "supergroup")
    bot = await make_harness(group_projects="per_user")
    await group_says(bot, f"{BOT} credits", user=ANN)
    await bot.fake.wait_for_message(GROUP, "Credits:")
    await group_says(bot, f"{BOT} credits", user=BEN)
    await settle(0.5)
    assert len(bot.emulator.sessions) == 2


async def test_each_forum_topic_is_its_own_project_and_replies_stay_in_it(
    bot: Harness, fake: FakeTelegram
) -> None:
    fake.set_chat(GROUP, "supergroup", is_forum=True)
    first, second = fake.create_topic(GROUP, "Promo"), fake.create_topic(GROUP, "Teaser")
    await group_says(bot, f"{BOT} credits", thread_id=first)
    one = await bot.fake.wait_for_message(GROUP, "Credits:")
    await group_says(bot, f"{BOT} credits", thread_id=second)
    await settle(0.5)
    assert one.thread_id == first
    assert {m.thread_id for m in bot.fake.bot_messages(GROUP)} == {first, second}
    assert len(bot.emulator.sessions) == 2


async def test_group_replies_are_merged_to_respect_the_flood_limit(
    make_harness: MakeHarness, fake: FakeTelegram
) -> None:
    fake.set_chat(GROUP, "supergroup")
    fake.set_flood_limit(20, per_seconds=60, retry_after=30)
    bot = await make_harness(group_merge_seconds=0.5)
    bot.emulator.script("chatty", Turn(texts=[f"Step {i} done." for i in range(1, 26)], duration=0.5))
    await group_says(bot, f"{BOT} be chatty")
    await bot.fake.wait_for_message(GROUP, "Step 25 done.", timeout=15)
    sent = [m for m in bot.fake.bot_messages(GROUP) if "Step" in m.text]
    assert len(sent) <= 3
    assert all(call.ok for call in bot.fake.calls if call.method == "sendMessage")


# -- channels ---------------------------------------------------------------------------------


async def test_channel_posts_that_address_the_bot_get_results_in_the_channel(
    bot: Harness, fake: FakeTelegram
) -> None:
    fake.set_chat(CHANNEL, "channel", title="Promo channel")
    await bot.send(fake.send_text(CHANNEL, "Today's post: new arrivals"))
    await settle()
    assert fake.bot_messages(CHANNEL) == []
    await bot.send(fake.send_text(CHANNEL, f"{BOT} credits"))
    await fake.wait_for_message(CHANNEL, "Credits:")
    await bot.send(fake.send_command(CHANNEL, "/status"))
    await fake.wait_for_message(CHANNEL, "timeline is empty")


# -- command menus ----------------------------------------------------------------------------


async def test_command_menus_are_scoped_and_bilingual(bot: Harness) -> None:
    menus = {
        (call.params.get("scope", {}).get("type", "default"), call.params.get("language_code")): [
            c["command"] for c in call.params["commands"]
        ]
        for call in bot.fake.calls_to("setMyCommands")
    }
    assert "start" in menus[("all_private_chats", None)] and "start" not in menus[("all_group_chats", None)]
    assert ("all_group_chats", "zh") in menus and "export" in menus[("all_group_chats", "zh")]


# -- access -----------------------------------------------------------------------------------


async def test_outsiders_get_one_polite_refusal(make_harness: MakeHarness, fake: FakeTelegram) -> None:
    bot = await make_harness(allowed_user_ids=frozenset({ANN.id}), admin_user_ids=frozenset({BOSS.id}))
    for text in ("hello", "export", "credits"):
        await bot.send(fake.send_text(OUTSIDER.id, text, user=OUTSIDER))
    await fake.wait_for_message(OUTSIDER.id, "this bot is private")
    await settle()
    assert len(fake.bot_messages(OUTSIDER.id)) == 1 and bot.emulator.requests == []
    await bot.send(fake.send_text(ANN.id, "credits", user=ANN))
    await fake.wait_for_message(ANN.id, "Credits:")
    await bot.send(fake.send_text(BOSS.id, "credits", user=BOSS))
    await fake.wait_for_message(BOSS.id, "Credits:")


async def test_an_allowed_group_serves_all_its_members(make_harness: MakeHarness, fake: FakeTelegram) -> None:
    fake.set_chat(GROUP, "supergroup")
    bot = await make_harness(allowed_chat_ids=frozenset({GROUP}))
    await group_says(bot, f"{BOT} credits", user=BEN)
    await fake.wait_for_message(GROUP, "Credits:")
    await bot.send(fake.send_text(BEN.id, "credits", user=BEN))
    await fake.wait_for_message(BEN.id, "this bot is private")


async def test_outsiders_in_a_group_are_ignored_unless_they_address_the_bot(
    make_harness: MakeHarness, fake: FakeTelegram
) -> None:
    fake.set_chat(GROUP, "supergroup")
    bot = await make_harness(allowed_user_ids=frozenset({ANN.id}))
    await group_says(bot, "random chatter", user=OUTSIDER)
    await settle()
    assert fake.bot_messages(GROUP) == []
    await group_says(bot, f"{BOT} export", user=OUTSIDER)
    await fake.wait_for_message(GROUP, "this bot is private")


async def test_group_admin_only_actions(make_harness: MakeHarness, fake: FakeTelegram) -> None:
    fake.set_chat(GROUP, "supergroup")
    fake.set_member_status(GROUP, ANN.id, "administrator")
    fake.set_member_status(GROUP, BEN.id, "member")
    bot = await make_harness(group_admin_only=True)
    await group_says(bot, f"{BOT} make a promo", user=BEN)
    await fake.wait_for_message(GROUP, "on the timeline")
    await group_says(bot, f"{BOT} export", user=BEN)
    await fake.wait_for_message(GROUP, "only admins can")
    assert not bot.emulator.calls("render_start")
    await bot.send(fake.send_command(GROUP, "/new", user=BEN))
    await settle()
    assert len(bot.emulator.sessions) == 1
    await group_says(bot, f"{BOT} export", user=ANN)
    await fake.wait_for_message(GROUP, "/static/render/", kind="video", timeout=15)


async def test_turn_limits_say_when_to_come_back_and_spare_other_chats(
    make_harness: MakeHarness, fake: FakeTelegram
) -> None:
    bot = await make_harness(turns_per_user=2, turn_busy_grace_seconds=0)
    for text in ("one", "two"):
        await bot.send(fake.send_text(ANN.id, f"make clip {text}", user=ANN))
        await fake.wait_for_message(
            ANN.id, "on the timeline", after=fake.message_count(ANN.id) - 1, timeout=10
        )
        await asyncio.sleep(0.3)
    await bot.send(fake.send_text(ANN.id, "make clip three", user=ANN))
    message = await fake.wait_for_message(ANN.id, "try again in")
    assert "60 minute(s)" in message.text
    await bot.send(fake.send_text(BEN.id, "make clip for ben", user=BEN))
    await fake.wait_for_message(BEN.id, "on the timeline")


async def test_a_member_at_their_own_limit_does_not_use_up_the_groups_allowance(
    make_harness: MakeHarness, fake: FakeTelegram
) -> None:
    bot = await make_harness(turns_per_user=1, turns_per_chat=2, turn_busy_grace_seconds=0)
    await group_says(bot, f"{BOT} make clip one", user=ANN)
    await fake.wait_for_message(GROUP, "on the timeline")
    await asyncio.sleep(0.3)
    for attempt in range(3):  # refused each time: her own limit
        mark = fake.message_count(GROUP)
        await group_says(bot, f"{BOT} make clip {attempt}", user=ANN)
        await fake.wait_for_message(GROUP, "try again in", after=mark)
    mark = fake.message_count(GROUP)
    await group_says(bot, f"{BOT} make clip for ben", user=BEN)  # the group's second turn is still there
    await fake.wait_for_message(GROUP, "on the timeline", after=mark)


async def test_upload_limits(make_harness: MakeHarness, fake: FakeTelegram) -> None:
    bot = await make_harness(uploads_per_chat=1)
    photo = (MEDIA / "photo.jpg").read_bytes()
    await bot.send(fake.send_photo(ANN.id, photo, user=ANN))
    await fake.wait_for_message(ANN.id, "Added to your project")
    await bot.send(fake.send_photo(ANN.id, photo, user=ANN))
    await fake.wait_for_message(ANN.id, "lot of uploads")
    assert len(bot.emulator.calls("upload")) == 1


async def test_usage_is_for_admins_only(make_harness: MakeHarness, fake: FakeTelegram) -> None:
    bot = await make_harness(admin_user_ids=frozenset({BOSS.id}))
    await bot.send(fake.send_text(ANN.id, "make a promo", user=ANN))
    await fake.wait_for_message(ANN.id, "on the timeline")
    session = next(iter(bot.emulator.sessions.values()))
    bot.emulator.set_draft(session.session_id, sample_draft())
    await bot.send(fake.send_text(ANN.id, "export", user=ANN))
    await fake.wait_for_message(ANN.id, kind="video", timeout=15)
    await bot.send(fake.send_command(ANN.id, "/usage", user=ANN))
    await settle()
    assert not [m for m in fake.bot_messages(ANN.id) if "Today" in m.text]
    await bot.send(fake.send_command(BOSS.id, "/usage", user=BOSS))
    report = await fake.wait_for_message(BOSS.id, "Today")
    assert "1 active chat(s), 1 turn(s)" in report.text and "1 render(s)" in report.text


async def test_a_group_album_addressed_in_its_caption_is_uploaded_whole(bot: Harness) -> None:
    items = [
        ("photo", (MEDIA / "photo.jpg").read_bytes(), "a.jpg"),
        ("photo", (MEDIA / "photo.png").read_bytes(), "b.png"),
        ("video", (MEDIA / "clip.mp4").read_bytes(), "clip.mp4"),
    ]
    for update in bot.fake.send_album(GROUP, items, user=ANN, caption=f"{BOT} make a promo from these"):
        await bot.send(update)
    added = await bot.fake.wait_for_message(GROUP, "Added to your project")
    assert added.text.count("•") == 3
    assert len(bot.emulator.calls("upload")[0].files) == 3
