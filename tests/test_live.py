"""A chat that feels alive, end to end: the real `python -m bot` against the fake Bot API and the
emulator. The reply shows as it is written (one message, edited within the flood budget), ends as one
message with its buttons, has a Stop button while it runs, and the request gets reactions."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from loopback.bot_process import BotProcess
from loopback.emulator import DEFAULT_TEXTS, NemoEmulator, Turn
from loopback.fake_telegram import BotCall, FakeTelegram, Message, User

CHAT = 5151
ADA = User(CHAT, "Ada", "ada", language_code="en")
GROUP = -1005559001
ANN = User(31, "Ann", "ann")
LONG_REPLY = " ".join(
    f"Scene {i}: a slow pan over the harbour at dawn, then a cut to the market." for i in range(1, 13)
)
EDIT_SECONDS = 0.25
DEFAULT_REPLY = "\n\n".join(DEFAULT_TEXTS)  # the emulator's default turn, as one message

Start = Callable[..., Awaitable[BotProcess]]


@pytest.fixture
async def start_bot(fake: FakeTelegram, emulator: NemoEmulator, tmp_path: Path) -> AsyncIterator[Start]:
    """Start the real bot with extra settings; it is stopped (and must exit cleanly) afterwards."""
    running: list[BotProcess] = []

    async def start(**settings: str) -> BotProcess:
        bot = BotProcess(fake, emulator, tmp_path, **{"SHUTDOWN_GRACE_SECONDS": "1", **settings})
        await bot.start()
        running.append(bot)
        return bot

    yield start
    for bot in running:
        print(bot.log[-4000:])
        assert await bot.stop() == 0, bot.log[-3000:]
        assert "Traceback" not in bot.log, bot.log[-3000:]


async def connect(fake: FakeTelegram, chat: int = CHAT, user: User = ADA) -> None:
    fake.send_command(chat, "/start", user=user)
    await fake.wait_for_message(chat, "Connected and ready", timeout=20)


def ask(fake: FakeTelegram, text: str, chat: int = CHAT, user: User = ADA) -> int:
    """The user writes `text`; the id of their message."""
    update = fake.send_text(chat, text, user=user)
    return int(update["message"]["message_id"])


async def settled(fake: FakeTelegram, chat: int, predicate: Callable[[], bool], timeout: float = 15) -> None:  # noqa: ASYNC109
    """Until `predicate` holds (the bot's calls are what change it), bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled within {timeout}s\n{fake.dump_calls(60)}")
        await asyncio.sleep(0.05)


def visible(fake: FakeTelegram, chat: int, after: int = 0) -> list[Message]:
    return [m for m in fake.bot_messages(chat)[after:] if not m.deleted]


async def finished_reply(fake: FakeTelegram, chat: int, text: str, after: int = 0) -> Message:
    """The one message that shows `text` in full with the Stop button gone (the turn's last edit)."""
    replies: list[Message] = []

    def finished() -> bool:
        replies[:] = [m for m in visible(fake, chat, after) if text[:20] in m.text]
        return len(replies) == 1 and replies[0].text == text and not stop_shown(replies[0])

    await settled(fake, chat, finished, timeout=30)
    return replies[0]


def stop_shown(message: Message) -> bool:
    return any(b.get("callback_data") == "act:stop" for b in message.buttons)


def edits_of(fake: FakeTelegram, chat: int, message_id: int) -> list[BotCall]:
    return [
        call
        for call in fake.activity(chat, ("editMessageText",))
        if call.ok and int(call.params.get("message_id", 0)) == message_id
    ]


# -- private chats ---------------------------------------------------------------------------------


async def test_a_streamed_reply_is_edited_live_within_the_chats_budget_and_ends_once_in_full(
    fake: FakeTelegram, emulator: NemoEmulator, start_bot: Start
) -> None:
    # Telegram's per-chat limit, scaled (4 a second, bursts of 3), on both sides: the fake answers 429
    # to anything past it, so "no 429" means the bot kept within it.
    fake.enable_flood_limits(chat_rate=4.0, chat_burst=3)
    await start_bot(
        AGENT_STREAMING="true",
        LIVE_EDIT_SECONDS=str(EDIT_SECONDS),
        TELEGRAM_CHAT_PER_SECOND="4",
        TELEGRAM_CHAT_BURST="3",
    )
    await connect(fake)
    emulator.script("storyboard", Turn(texts=[LONG_REPLY], tool_calls=False))
    emulator.delta_chars, emulator.event_delay = 12, 0.03  # about 70 deltas over 2 seconds
    mark, calls = fake.message_count(CHAT), len(fake.calls)
    asked = ask(fake, "write me a storyboard")
    await settled(fake, CHAT, lambda: fake.reactions_on(CHAT, asked)[-1:] == ["👍"])

    assert emulator.calls("run_sse")[-1].json["streaming"] is True
    replies = visible(fake, CHAT, mark)
    assert [m.text for m in replies] == [LONG_REPLY]  # one message, the whole text, once
    reply = replies[0]
    assert len(reply.history) >= 4  # shown as it was written: sent, then edited as it grew
    assert all(LONG_REPLY.startswith(text) for text in reply.history)  # never a doubled or stray text
    assert not stop_shown(reply)  # the Stop button went with the last edit
    shown = [c for c in fake.calls[calls:] if c.method in ("sendMessage", "editMessageText")]
    assert all(int(c.params.get("message_id", reply.message_id)) == reply.message_id for c in shown)
    times = [call.at for call in shown]  # when the reply was sent, and each edit, as the fake saw them
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps and min(gaps) >= EDIT_SECONDS, gaps  # at most one edit per LIVE_EDIT_SECONDS
    assert fake.too_many_requests == 0


@pytest.mark.parametrize("streaming", [True, False])
async def test_the_final_message_holds_each_reply_once_with_streaming_on_or_off(
    fake: FakeTelegram, emulator: NemoEmulator, start_bot: Start, streaming: bool
) -> None:
    await start_bot(AGENT_STREAMING=str(streaming).lower())
    await connect(fake)
    emulator.delta_chars, emulator.event_delay = 5, 0.05
    mark = fake.message_count(CHAT)
    asked = ask(fake, "combine these into a promo")  # the emulator's default turn: two replies, a tool call
    await settled(fake, CHAT, lambda: fake.reactions_on(CHAT, asked)[-1:] == ["👍"])

    body = emulator.calls("run_sse")[-1].json
    assert body.get("streaming", False) is streaming  # asked for only when AGENT_STREAMING is on
    [reply] = [m for m in visible(fake, CHAT, mark) if m.kind == "text"]  # (and the generated clip's preview)
    first, second = "Sure, give me a moment.", "is on the timeline"
    assert reply.text.startswith(first + "\n\n") and reply.text.count(first) == 1
    assert reply.text.count(second) == 1
    assert not stop_shown(reply)  # the Stop button went with the last edit, which put the quick actions
    assert "act:ratio_9_16" in [b["callback_data"] for b in reply.buttons]
    if streaming:  # the deltas were shown as they came
        assert any(not text.endswith(".") for text in reply.history)
    else:  # whole replies only: the first, then both
        assert reply.history[0] == first


@pytest.mark.parametrize("streaming", [True, False])
async def test_a_refused_edit_falls_back_to_plain_messages_without_losing_text(
    fake: FakeTelegram, emulator: NemoEmulator, start_bot: Start, streaming: bool
) -> None:
    await start_bot(AGENT_STREAMING=str(streaming).lower())
    await connect(fake)
    emulator.script("plan", Turn(texts=["First, the plan.", "Second, the cut.", "Third, the music."]))
    emulator.delta_chars, emulator.event_delay = 6, 0.3
    fake.fail_next("editMessageText", error_code=400, description="Bad Request: message can't be edited")
    mark = fake.message_count(CHAT)
    calls = len(fake.calls)
    asked = ask(fake, "make a plan")
    await settled(fake, CHAT, lambda: fake.reactions_on(CHAT, asked)[-1:] == ["👍"])

    shown = "\n".join(m.text for m in visible(fake, CHAT, mark))
    for text in ("First, the plan.", "Second, the cut.", "Third, the music."):
        assert shown.count(text) == 1, shown  # every reply once: nothing lost, nothing doubled
    edits = [c for c in fake.calls[calls:] if c.method == "editMessageText"]
    assert len(edits) == 1 and not edits[0].ok  # after the refusal, plain messages only
    assert not any(stop_shown(m) for m in visible(fake, CHAT, mark))  # no Stop left behind


async def test_a_stream_cut_mid_reply_keeps_what_was_shown(
    fake: FakeTelegram, emulator: NemoEmulator, start_bot: Start
) -> None:
    await start_bot(AGENT_STREAMING="true")
    await connect(fake)
    reply = "The first scene fades in over the harbour while the music starts."
    emulator.script("cut", Turn(texts=[reply], tool_calls=False, drop_after=3))  # 3 deltas, no whole reply
    emulator.delta_chars, emulator.event_delay = 10, 0.1
    mark = fake.message_count(CHAT)
    asked = ask(fake, "cut me off")
    await fake.wait_for_message(CHAT, "connection to the agent dropped", after=mark, timeout=20)
    await settled(fake, CHAT, lambda: fake.reactions_on(CHAT, asked)[-1:] == ["👎"])
    preview = visible(fake, CHAT, mark)[0]
    assert preview.text == reply[:30].strip() and not stop_shown(preview)  # kept as shown, Stop gone


# -- groups ----------------------------------------------------------------------------------------


async def test_in_a_group_live_edits_stay_within_the_groups_budget(
    fake: FakeTelegram, emulator: NemoEmulator, start_bot: Start
) -> None:
    # Telegram's limits (20 a minute in a group; per chat scaled to 4 a second) on both sides.
    fake.set_chat(GROUP, "supergroup", title="Launch team")
    fake.enable_flood_limits(group_limit=20, group_window=60.0, chat_rate=4.0, chat_burst=3)
    group_edit = 0.5
    await start_bot(
        AGENT_STREAMING="true",
        LIVE_GROUP_EDIT_SECONDS=str(group_edit),
        GROUP_MERGE_SECONDS="0.3",
        TELEGRAM_GROUP_PER_MINUTE="20",
        TELEGRAM_CHAT_PER_SECOND="4",
        TELEGRAM_CHAT_BURST="3",
    )
    emulator.script("storyboard", Turn(texts=[LONG_REPLY], tool_calls=False))
    emulator.delta_chars, emulator.event_delay = 8, 0.04  # about 4 seconds of deltas
    asked = ask(fake, "@nemo_test_bot write me a storyboard", chat=GROUP, user=ANN)
    reply = await finished_reply(fake, GROUP, LONG_REPLY)
    assert reply.reply_to == asked and len(reply.history) >= 3  # shown live, quoting the request
    activity = fake.activity(GROUP)
    edits = [c for c in activity if c.method == "editMessageText"]
    assert len(edits) >= 2 and len(activity) <= 20  # live, within the group's 20 a minute
    # The reply's own life (not the "setting up" notice of the group's first turn before it).
    times = [reply.sent_at, *(c.at for c in edits_of(fake, GROUP, reply.message_id))]
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.3  # no burst of edits
    assert fake.too_many_requests == 0


async def test_in_a_group_whose_budget_is_short_the_reply_comes_without_live_edits(
    fake: FakeTelegram, emulator: NemoEmulator, start_bot: Start
) -> None:
    fake.set_chat(GROUP, "supergroup", title="Busy team")
    await start_bot(
        AGENT_STREAMING="true",
        LIVE_GROUP_EDIT_SECONDS="0.3",
        GROUP_MERGE_SECONDS="0.2",
        TELEGRAM_GROUP_PER_MINUTE="20",
    )
    for _ in range(10):  # half of the group's minute used by answers
        fake.send_command(GROUP, "/help@nemo_test_bot", user=ANN)
    await settled(fake, GROUP, lambda: len(visible(fake, GROUP)) == 10)
    emulator.script("storyboard", Turn(texts=[LONG_REPLY], tool_calls=False))
    emulator.delta_chars, emulator.event_delay = 8, 0.04
    calls = len(fake.calls)
    ask(fake, "@nemo_test_bot write me a storyboard", chat=GROUP, user=ANN)
    await finished_reply(fake, GROUP, LONG_REPLY)
    edits = [c for c in fake.calls[calls:] if c.method == "editMessageText"]
    assert len(edits) <= 1  # at most the last edit (an answer): the cosmetic ones were left out


# -- Stop and reactions ----------------------------------------------------------------------------


async def test_the_stop_button_cancels_the_running_turn(
    fake: FakeTelegram, emulator: NemoEmulator, start_bot: Start
) -> None:
    await start_bot()
    await connect(fake)
    emulator.script("epic", Turn(texts=["Rendering the first scene.", "never shown"], duration=30))
    mark = fake.message_count(CHAT)
    asked = ask(fake, "make an epic")
    preview = await fake.wait_for_message(CHAT, "first scene", after=mark, timeout=20)
    await settled(fake, CHAT, lambda: stop_shown(preview) and fake.reactions_on(CHAT, asked) == ["👀"])

    fake.press_button(CHAT, preview.message_id, "act:stop", user=ADA)
    await fake.wait_for_message(CHAT, "Stopped waiting", after=mark, timeout=10)
    assert preview.text == "Rendering the first scene." and not stop_shown(preview)  # text kept, Stop gone
    await settled(fake, CHAT, lambda: fake.reactions_on(CHAT, asked)[-1:] == ["👎"])  # (too quick for 👀)
    fake.send_command(CHAT, "/cancel", user=ADA)
    await fake.wait_for_message(CHAT, "Nothing is running", after=mark, timeout=10)  # the turn is over
    await asyncio.sleep(0.3)
    assert not [m for m in fake.bot_messages(CHAT) if "never shown" in m.text]


async def test_reactions_follow_the_turn_and_a_refused_reaction_changes_nothing(
    fake: FakeTelegram, emulator: NemoEmulator, start_bot: Start
) -> None:
    await start_bot()
    await connect(fake)
    # A reply that takes a while to begin: 👀 while the agent works, then 👍.
    emulator.script("slow start", Turn(texts=["Thought it through."], duration=1.5))
    asked = ask(fake, "slow start please")
    await fake.wait_for_message(CHAT, "Thought it through.", timeout=20)
    await settled(fake, CHAT, lambda: fake.reactions_on(CHAT, asked) == ["👀", "👍"])

    # A reply that begins at once says "working" itself: the 👀 is left out (it would cost a
    # request per turn, and under load the slot of someone's first words); the end is 👍 all the same.
    asked = ask(fake, "combine these into a promo")
    await fake.wait_for_message(CHAT, "on the timeline", timeout=20)
    await settled(fake, CHAT, lambda: fake.reactions_on(CHAT, asked)[-1:] == ["👍"])

    emulator.script("unsafe", Turn(texts=[], error="SAFETY", error_message="blocked by safety"))
    asked = ask(fake, "something unsafe")
    await fake.wait_for_message(CHAT, "blocked by safety", timeout=20)
    await settled(fake, CHAT, lambda: fake.reactions_on(CHAT, asked)[-1:] == ["👎"])  # (too quick for 👀)

    # Reactions switched off in the chat: Telegram refuses them; the answer is the same.
    fake.fail_next("setMessageReaction", error_code=400, description="Bad Request: REACTION_INVALID", times=2)
    mark, calls = fake.message_count(CHAT), len(fake.calls)
    asked = ask(fake, "combine these into a promo again")
    await finished_reply(fake, CHAT, DEFAULT_REPLY, after=mark)
    await asyncio.sleep(0.5)
    refused = [c for c in fake.calls[calls:] if c.method == "setMessageReaction"]
    assert refused and not any(c.ok for c in refused) and fake.reactions_on(CHAT, asked) == []


async def test_reactions_off_sends_none(fake: FakeTelegram, emulator: NemoEmulator, start_bot: Start) -> None:
    await start_bot(REACTIONS="false")
    await connect(fake)
    ask(fake, "combine these into a promo")
    await finished_reply(fake, CHAT, DEFAULT_REPLY)
    await asyncio.sleep(0.3)
    assert fake.calls_to("setMessageReaction") == []
