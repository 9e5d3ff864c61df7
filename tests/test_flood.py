"""The FloodLimiter: Telegram's windows as pure arithmetic, and the limiter's promises as a user would
notice them (answers never dropped, cosmetic traffic thinned under load, a 429 stalls one chat only).

The limiter runs here without servers: its callback is a coroutine that records when it was called.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest
from telegram.error import RetryAfter

from bot.telegram.flood import (
    COSMETIC,
    FloodLimiter,
    FloodLimits,
    Priority,
    Thinned,
    Window,
    chat_of,
    cosmetic_may_go,
)

FAST = FloodLimits(
    global_per_second=30,
    global_burst=1,
    chat_burst=3,
    chat_per_second=20,
    group_per_minute=20,
    margin_seconds=0,
    retries=3,
)


# -- windows: pure ---------------------------------------------------------------------------------


def test_a_window_admits_its_limit_at_once_then_waits_for_the_oldest_to_leave() -> None:
    window = Window(limit=3, seconds=3.0)
    for _ in range(3):
        assert window.slot(10.0) == 10.0
        window.take(10.0)
    assert window.slot(10.5) == 13.0
    window.take(13.0)
    assert window.slot(13.0) == 13.0  # the first three have left


def test_a_window_forgets_what_left_it() -> None:
    window = Window(limit=2, seconds=1.0)
    window.take(0.0)
    window.take(0.5)
    assert window.used(0.9) == 2 and window.used(1.0) == 1 and window.used(1.6) == 0


def test_cosmetic_traffic_needs_a_free_slot_now_and_half_of_every_window_free() -> None:
    window = Window(limit=4, seconds=1.0)
    assert cosmetic_may_go([window], 0.0)
    window.take(0.0)
    assert cosmetic_may_go([window], 0.1)  # 1 of 4 used
    window.take(0.1)
    assert not cosmetic_may_go([window], 0.2)  # half used: what is left is for answers
    assert cosmetic_may_go([window], 1.2)


def test_the_chat_of_a_request() -> None:
    assert chat_of({"chat_id": 42}) == 42
    assert chat_of({"chat_id": "-100123"}) == -100123
    assert chat_of({"chat_id": "@channel"}) == "@channel"
    assert chat_of({"text": "no chat"}) is None


# -- the limiter -----------------------------------------------------------------------------------


class Recorder:
    """A Bot API stand-in: records (method, chat, time) and can refuse with 429."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, float]] = []
        self.refuse: list[float] = []  # retry_after of the next calls to refuse

    def callback(self, endpoint: str, data: dict[str, Any]) -> Any:
        async def call() -> bool:
            if self.refuse:
                raise RetryAfter(self.refuse.pop(0))  # type: ignore[arg-type]
            self.sent.append((endpoint, data.get("chat_id"), time.monotonic()))
            return True

        return call


async def send(
    limiter: FloodLimiter,
    recorder: Recorder,
    chat: int,
    *,
    endpoint: str = "sendMessage",
    priority: Priority | None = None,
) -> Any:
    data = {"chat_id": chat}
    return await limiter.process_request(recorder.callback(endpoint, data), (), {}, endpoint, data, priority)


async def test_answers_to_one_chat_keep_its_burst_then_its_pace() -> None:
    limiter, recorder = FloodLimiter(FAST), Recorder()
    await asyncio.gather(*(send(limiter, recorder, 1) for _ in range(5)))
    times = [t for _, _, t in recorder.sent]
    assert len(times) == 5
    assert times[3] - times[0] >= 3 / 20 - 0.005  # the 4th waits until the first has left the window


async def test_a_chat_at_its_limit_does_not_hold_up_other_chats() -> None:
    limiter, recorder = FloodLimiter(FAST), Recorder()
    flood = [send(limiter, recorder, 1) for _ in range(9)]  # 0.3 s of chat 1's pace
    others = [send(limiter, recorder, chat) for chat in range(2, 8)]
    await asyncio.gather(*flood, *others)
    last_other = max(t for _, chat, t in recorder.sent if chat != 1)
    last_flooded = max(t for _, chat, t in recorder.sent if chat == 1)
    assert last_other < last_flooded


async def test_under_load_typing_is_thinned_and_no_answer_is_lost() -> None:
    limiter, recorder = FloodLimiter(FAST), Recorder()
    answers = [send(limiter, recorder, chat) for chat in range(1, 41)]  # more than a second's budget
    typing = [
        send(limiter, recorder, chat, endpoint="sendChatAction", priority=COSMETIC) for chat in range(41, 81)
    ]
    results = await asyncio.gather(*answers, *typing, return_exceptions=True)
    assert results[:40] == [True] * 40
    thinned = [r for r in results[40:] if isinstance(r, Thinned)]
    assert thinned and limiter.thinned == len(thinned)
    sent_actions = sum(1 for endpoint, _, _ in recorder.sent if endpoint == "sendChatAction")
    assert sent_actions < 15  # at most half the second's budget went to typing


async def test_uncounted_methods_pass_straight_through() -> None:
    limiter, recorder = FloodLimiter(replace(FAST, global_per_second=1, chat_burst=1)), Recorder()
    for _ in range(5):
        await send(limiter, recorder, 1, endpoint="getFile")
    assert len(recorder.sent) == 5


async def test_a_429_blocks_its_chat_for_retry_after_and_the_answer_still_goes() -> None:
    limiter, recorder = FloodLimiter(FAST), Recorder()
    recorder.refuse = [0.2]
    started = time.monotonic()
    first, _ = await asyncio.gather(send(limiter, recorder, 1), send(limiter, recorder, 2))
    assert first is True
    by_chat = {chat: t - started for _, chat, t in recorder.sent}
    assert by_chat[1] >= 0.2  # chat 1 waited what Telegram asked, then its answer went
    assert by_chat[2] < 0.1  # chat 2 did not wait for chat 1
    assert limiter.flood_waits == 1


async def test_a_429_on_cosmetic_traffic_is_not_retried() -> None:
    limiter, recorder = FloodLimiter(FAST), Recorder()
    recorder.refuse = [5]
    with pytest.raises(RetryAfter):
        await send(limiter, recorder, 1, endpoint="sendChatAction", priority=COSMETIC)
    with pytest.raises(Thinned):  # the chat is blocked now: no more cosmetic traffic for it
        await send(limiter, recorder, 1, endpoint="sendChatAction", priority=COSMETIC)


# -- under overload: new messages first, the latest state once, a slower pace after a 429 ----------


async def test_under_overload_new_messages_go_before_edits_of_messages_already_shown() -> None:
    limiter, recorder = FloodLimiter(replace(FAST, global_per_second=20)), Recorder()
    edits = [
        asyncio.create_task(send(limiter, recorder, chat, endpoint="editMessageText"))
        for chat in range(1, 11)
    ]
    await asyncio.sleep(0)  # the edits are in line first
    firsts = [asyncio.create_task(send(limiter, recorder, chat)) for chat in range(11, 21)]
    await asyncio.gather(*edits, *firsts)
    order = [endpoint for endpoint, _, _ in recorder.sent]
    # Whatever had its turn already goes; every later slot is a new message's until none waits.
    first_send = order.index("sendMessage")
    assert order[first_send : first_send + 10] == ["sendMessage"] * 10
    assert first_send <= 2


async def test_a_message_that_follows_a_chats_answer_waits_behind_other_chats_first_words() -> None:
    limiter, recorder = FloodLimiter(replace(FAST, global_per_second=20)), Recorder()
    previews = [
        asyncio.create_task(send(limiter, recorder, chat, endpoint="sendVideo", priority=Priority.LATER))
        for chat in range(1, 8)
    ]
    await asyncio.sleep(0)
    firsts = [asyncio.create_task(send(limiter, recorder, chat)) for chat in range(11, 18)]
    await asyncio.gather(*previews, *firsts)
    order = [endpoint for endpoint, _, _ in recorder.sent]
    assert order.index("sendMessage") <= 2 and order[-5:] == ["sendVideo"] * 5


async def test_a_reserved_slot_carries_the_state_of_when_it_came() -> None:
    limiter, recorder = FloodLimiter(replace(FAST, chat_burst=1, chat_per_second=5)), Recorder()
    await send(limiter, recorder, 1)  # the chat's window is full for 0.2 s
    state = {"text": "first words"}

    async def show() -> None:
        async with limiter.reserve(1, Priority.ANSWER, 0):
            data = {"chat_id": 1, "text": state["text"]}  # built once the slot has come
            callback = recorder.callback("sendMessage", data)
            await limiter.process_request(callback, (), {}, "sendMessage", data, None)
            recorder.sent[-1] = (state["text"], 1, recorder.sent[-1][2])

    waiting = asyncio.create_task(show())
    await asyncio.sleep(0.05)
    state["text"] = "first words, and the last"  # the reply ended while it waited
    await waiting
    assert [text for text, _, _ in recorder.sent[1:]] == ["first words, and the last"]
    assert recorder.sent[1][2] - recorder.sent[0][2] >= 0.2 - 0.01  # it did wait for its slot


async def test_a_cosmetic_reservation_never_waits() -> None:
    limiter, recorder = FloodLimiter(replace(FAST, chat_burst=1, chat_per_second=5)), Recorder()
    await send(limiter, recorder, 1)
    with pytest.raises(Thinned):
        async with limiter.reserve(1, COSMETIC, 1):
            pass


async def test_after_a_429_the_pace_slows_for_a_while_then_returns() -> None:
    limits = replace(FAST, global_per_second=20, slowdown_factor=3.0, slowdown_seconds=0.8)
    limiter, recorder = FloodLimiter(limits), Recorder()

    async def spacing(count: int) -> float:
        start = len(recorder.sent)
        await asyncio.gather(*(send(limiter, recorder, 100 + i) for i in range(count)))
        times = sorted(t for _, _, t in recorder.sent[start:])
        return (times[-1] - times[0]) / (count - 1)

    normal = await spacing(6)
    recorder.refuse = [0]  # Telegram refuses one request (to be sent again at once)
    await send(limiter, recorder, 1)
    slowed = await spacing(4)  # within the slowdown
    await asyncio.sleep(0.3)  # the slowdown (0.8 s from the 429) is over
    recovered = await spacing(6)
    assert limiter.flood_waits == 1
    assert normal < 0.07 and slowed > 2.5 * normal and recovered < 0.07
