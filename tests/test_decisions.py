"""The decisions, without servers: a render's next step, what a status means, how a turn ends, the
limit check, the close of an album, and how a live reply is brought up to date."""

from __future__ import annotations

import pytest

from bot.chat.access import overflowing
from bot.chat.renders import Reading, RenderStep, RenderTimings, next_step, reading
from bot.chat.turns import Close, Ending, closing, ended_well
from bot.chat.uploads import IncomingFile, close_album
from bot.nemo.client import RenderStatus
from bot.state.renders import FINISHED, RenderRecord, RenderState, may_move
from bot.telegram.live import Change, due, messages, plan

TIMINGS = RenderTimings(
    poll_seconds=30,
    max_seconds=1800,
    lease_seconds=60,
    delivery_attempts=3,
    download_seconds=60,
)
T0 = 1_800_000_000.0


def render(status: str = "pending", **fields: object) -> RenderRecord:
    return RenderRecord("render_1", "42", 42, "5529", started_at=T0, status=status, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "seconds_later", "step"),
    [
        (render("delivering", url="https://cdn/v.mp4"), 5, RenderStep.RESEND_LINK),
        (render("delivering", url="https://cdn/v.mp4", delivery_attempts=3), 5, RenderStep.ABANDON),
        (render("completed", url="https://cdn/v.mp4"), 5000, RenderStep.DELIVER),  # late, but it is done
        (render("completed"), 5, RenderStep.POLL),  # completed without a link: ask again
        (render("processing"), 1801, RenderStep.GIVE_UP),
        (render("starting"), 30, RenderStep.WAIT),  # its starter may still be at it
        (render("starting"), 61, RenderStep.RESUME_START),  # its starter's lease is over
        (render("pending"), 5, RenderStep.POLL),
    ],
)
def test_the_next_step_of_a_render(record: RenderRecord, seconds_later: float, step: RenderStep) -> None:
    assert next_step(record, T0 + seconds_later, TIMINGS) is step


@pytest.mark.parametrize(
    ("status", "verdict", "reason"),
    [
        (RenderStatus("completed", 100, url="https://cdn/v.mp4"), Reading.COMPLETED, ""),
        (RenderStatus("completed", 100), Reading.FAILED, "no video in the result"),
        (RenderStatus("failed", 40, error="codec error"), Reading.FAILED, "codec error"),
        (RenderStatus("cancelled"), Reading.FAILED, "cancelled"),
        (RenderStatus("processing", 50), Reading.PROGRESSED, ""),
        (RenderStatus("pending", 0), Reading.UNCHANGED, ""),
    ],
)
def test_what_a_status_means(status: RenderStatus, verdict: Reading, reason: str) -> None:
    assert reading(status, render("pending")) == (verdict, reason)


@pytest.mark.parametrize(
    ("ending", "said_anything", "close"),
    [
        (Ending.CLOSED, True, Close.NOTHING),
        (Ending.CLOSED, False, Close.REPORT_CHANGES),  # a silent turn is explained
        (Ending.TIMED_OUT, True, Close.SAY_TIMEOUT),
        (Ending.TIMED_OUT, False, Close.SAY_TIMEOUT),
        (Ending.DROPPED, True, Close.WATCH_TIMELINE),  # never resent: the timeline tells
        (Ending.DROPPED, False, Close.WATCH_TIMELINE),
    ],
)
def test_the_end_of_a_turn(ending: Ending, said_anything: bool, close: Close) -> None:
    assert closing(ending, said_anything=said_anything) is close


@pytest.mark.parametrize(
    ("used", "limits", "amount", "refused_by"),
    [
        ([0, 0], [5, 20], 1, None),  # fresh: counted
        ([4, 19], [5, 20], 1, None),  # the last one fits both
        ([5, 3], [5, 20], 1, 0),  # the member is at her own limit: refused by her counter
        ([2, 20], [5, 20], 1, 1),  # the group is full: refused by the chat's counter
        ([5, 20], [5, 20], 1, 0),  # both full: the first is named
        ([3, 0], [5, 20], 3, 0),  # three links at once overflow what is left
        ([], [], 1, None),  # no limits set
    ],
)
def test_the_limit_check(used: list[int], limits: list[int], amount: int, refused_by: int | None) -> None:
    assert overflowing(used, limits, amount) == refused_by


def file(message_id: int) -> IncomingFile:
    return IncomingFile(f"f{message_id}", "photo", None, "image/jpeg", 10, message_id)


@pytest.mark.parametrize(
    ("arrived", "files", "captions"),
    [
        ([(12, None), (11, "make a montage"), (13, None)], [11, 12, 13], ["make a montage"]),
        ([(5, "b"), (4, "a")], [4, 5], ["a", "b"]),  # captions in the order they were sent
        ([(7, None), (7, None), (8, None)], [7, 8], []),  # an item seen twice is sent once
        ([], [], []),
    ],
)
def test_the_close_of_an_album(
    arrived: list[tuple[int, str | None]], files: list[int], captions: list[str]
) -> None:
    batch = close_album((file(message_id), caption) for message_id, caption in arrived)
    assert [f.message_id for f in batch.files] == files
    assert batch.captions == captions


S = RenderState


@pytest.mark.parametrize(
    ("current", "to", "allowed"),
    [
        (S.STARTING, S.PENDING, True),
        (S.PENDING, S.PROCESSING, True),
        (S.PROCESSING, S.PROCESSING, True),  # new progress
        (S.PROCESSING, S.COMPLETED, True),
        (S.PENDING, S.EXPIRED, True),
        (S.COMPLETED, S.DELIVERING, True),
        (S.DELIVERING, S.DELIVERING, True),  # one more attempt at the link
        (S.DELIVERING, S.DELIVERED, True),
        (S.COMPLETED, S.DELIVERED, True),  # sent as a link, without an upload
        (S.PROCESSING, S.UNDELIVERABLE, True),  # the chat is gone
        (S.COMPLETED, S.PROCESSING, False),  # never back from a video
        (S.DELIVERING, S.COMPLETED, False),  # a cut delivery is never sent again
        (S.STARTING, S.DELIVERED, False),  # nothing delivered without a video
        (S.DELIVERED, S.DELIVERING, False),
        (S.FAILED, S.PENDING, False),
    ],
)
def test_a_renders_moves(current: RenderState, to: RenderState, allowed: bool) -> None:
    assert may_move(current, to) is allowed


def test_finished_renders_move_nowhere() -> None:
    assert not [(a, b) for a in FINISHED for b in RenderState if may_move(a, b)]


@pytest.mark.parametrize(
    ("word", "state"),
    [("pending", S.PENDING), ("processing", S.PROCESSING), ("completed", S.COMPLETED), ("queued", S.PENDING)],
)
def test_the_backends_words_as_states(word: str, state: RenderState) -> None:
    assert RenderState.of_backend(word) is state


@pytest.mark.parametrize(
    ("close", "errors", "well"),
    [
        (Close.NOTHING, 0, True),  # the agent answered
        (Close.REPORT_CHANGES, 0, True),  # a silent turn, reported
        (Close.NOTHING, 1, False),  # an agent error event
        (Close.SAY_TIMEOUT, 0, False),
        (Close.WATCH_TIMELINE, 0, False),  # the stream dropped
        (None, 0, False),  # failed before it could close
    ],
)
def test_whether_a_turn_ended_well(close: Close | None, errors: int, well: bool) -> None:
    assert ended_well(close, errors=errors) is well


KEEP, EDIT, SEND, DROP = Change.KEEP, Change.EDIT, Change.SEND, Change.DROP
STOP_ = ("stop",)


@pytest.mark.parametrize(
    ("shown", "wanted", "steps"),
    [
        ([], [("Hi", STOP_)], [SEND]),  # the first text
        ([("Hi", STOP_)], [("Hi there", STOP_)], [EDIT]),  # more text
        ([("Hi", STOP_)], [("Hi", STOP_)], [KEEP]),  # nothing new
        ([("Hi", STOP_)], [("Hi", ("export",))], [EDIT]),  # the end: Stop gone, the reply's buttons
        ([("a" * 10, STOP_)], [("a" * 10, ()), ("b", STOP_)], [EDIT, SEND]),  # past 4096: a new part
        ([("a", ()), ("b", STOP_)], [("a", ()), ("b c", STOP_)], [KEEP, EDIT]),  # only the live end
        ([("a", ()), ("b", STOP_)], [("a b", ())], [EDIT, DROP]),  # the whole text came shorter
        ([("⏳", STOP_)], [("Hi", STOP_)], [EDIT]),  # "still working" becomes the reply
    ],
)
def test_what_a_live_reply_needs(
    shown: list[tuple[str, tuple[str, ...]]], wanted: list[tuple[str, tuple[str, ...]]], steps: list[Change]
) -> None:
    assert plan(shown, wanted) == steps


def test_a_long_reply_is_messages_with_the_buttons_under_the_last() -> None:
    text = "word " * 1000  # 5000 characters
    parts = messages(text, ("export",))
    assert len(parts) == 2 and all(len(html) <= 4096 for html, _ in parts)
    assert [buttons for _, buttons in parts] == [(), ("export",)]
    assert messages("  ", STOP_) == []


@pytest.mark.parametrize(
    ("now", "since", "first_delay", "pushed_at", "interval", "shown"),
    [
        (10.0, None, 0.0, 0.0, 1.0, False),  # nothing new
        (10.0, 10.0, 0.0, float("-inf"), 0.0, True),  # the first text goes at once
        (10.0, 9.5, 3.0, float("-inf"), 0.0, False),  # groups: replies close together wait ...
        (12.5, 9.5, 3.0, float("-inf"), 0.0, True),  # ... for the merge interval
        (10.0, 10.0, 0.0, 9.5, 1.0, False),  # an edit waits for the interval
        (10.5, 10.0, 0.0, 9.5, 1.0, True),
    ],
)
def test_when_a_live_reply_is_shown_again(
    now: float, since: float | None, first_delay: float, pushed_at: float, interval: float, shown: bool
) -> None:
    assert due(now, since=since, first_delay=first_delay, pushed_at=pushed_at, interval=interval) is shown
