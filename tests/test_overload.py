"""Under overload, through the real handlers and the fake Bot API with Telegram's limits on: the
agent is read at its own pace, and what waits for Telegram is the chat's latest reply, sent once."""

from __future__ import annotations

import time

from loopback.emulator import DEFAULT_TEXTS
from loopback.fake_telegram import User
from tests.conftest import MakeHarness
from tests.harness import Harness, turn_over

ADA = User(321, "Ada", "ada", language_code="en")
SLOW_CHAT = {  # one message a chat per window: the reply must wait for the chat's next slot
    "telegram_chat_burst": 1,
    "reactions": False,
}


async def connected_directly(bot: Harness, user: User) -> None:
    """A chat used before: its token and session in the store, no messages sent."""
    account = bot.emulator.add_account(f"client-{user.id}")
    session = bot.emulator.add_session(account.user_id)
    store = bot.services.store
    await store.save_chat(
        str(user.id),
        client_id=account.client_id,
        session_id=session.session_id,
        task_id=session.task_id,
        language="en",
        user_id=account.user_id,
        account="trial",
    )
    await store.save_token(str(user.id), account.token, time.time() + 3600)


async def busy_chat_then_a_turn(bot: Harness) -> int:
    """The chat's window is taken by an answer, then a turn starts at once; the mark to wait after."""
    bot.fake.enable_flood_limits()
    await connected_directly(bot, ADA)
    await bot.send(bot.fake.send_text(ADA.id, "credits", user=ADA))
    await bot.fake.wait_for_message(ADA.id, "Credits:")
    mark = bot.fake.message_count(ADA.id)
    await bot.send(bot.fake.send_text(ADA.id, "make a teaser", user=ADA))
    return mark


async def test_a_reply_that_ends_while_it_waits_goes_out_once_whole_with_its_buttons(
    make_harness: MakeHarness,
) -> None:
    bot = await make_harness(telegram_chat_per_second=1, **SLOW_CHAT)
    mark = await busy_chat_then_a_turn(bot)
    reply = await bot.fake.wait_for_message(ADA.id, DEFAULT_TEXTS[1], after=mark)
    await turn_over(bot, ADA.id)
    assert DEFAULT_TEXTS[0] in reply.history[0] and DEFAULT_TEXTS[1] in reply.history[0]  # whole at once
    assert reply.edits == []  # one request: no edit followed
    assert any(b.get("callback_data") == "act:export" for b in reply.buttons)  # with its buttons
    texts = [m for m in bot.fake.bot_messages(ADA.id)[mark:] if DEFAULT_TEXTS[0] in m.sent_text]
    assert texts == [reply]
    assert bot.fake.too_many_requests == 0


async def test_a_queue_longer_than_the_turn_limit_still_delivers_the_reply_and_blames_nobody(
    make_harness: MakeHarness,
) -> None:
    bot = await make_harness(telegram_chat_per_second=0.6, sse_max_seconds=0.6, **SLOW_CHAT)
    bot.emulator.event_delay = 0.1  # the agent takes 0.3 s; Telegram's slot comes after 1.7 s
    mark = await busy_chat_then_a_turn(bot)
    reply = await bot.fake.wait_for_message(ADA.id, DEFAULT_TEXTS[1], after=mark)
    await turn_over(bot, ADA.id)
    shown = " ".join(text for m in bot.fake.bot_messages(ADA.id)[mark:] for text in m.history)
    assert "working for over" not in shown and "stopped waiting" not in shown
    assert DEFAULT_TEXTS[0] in reply.text and DEFAULT_TEXTS[1] in reply.text
