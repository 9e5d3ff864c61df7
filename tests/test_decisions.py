"""The watchers' decisions, without servers: a render's next step, what a status means, how a turn ends."""

from __future__ import annotations

import pytest

from bot.nemo import RenderStatus
from bot.renders import Reading, RenderTimings, Step, next_step, reading
from bot.store import RenderRecord
from bot.turns import Close, Ending, closing

TIMINGS = RenderTimings(
    poll_seconds=30, max_seconds=1800, lease_seconds=60, delivery_attempts=3, download_seconds=60
)
T0 = 1_800_000_000.0


def render(status: str = "pending", **fields: object) -> RenderRecord:
    return RenderRecord("render_1", "42", 42, "5529", started_at=T0, status=status, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "seconds_later", "step"),
    [
        (render("delivering", url="https://cdn/v.mp4"), 5, Step.RESEND_LINK),
        (render("delivering", url="https://cdn/v.mp4", delivery_attempts=3), 5, Step.ABANDON),
        (render("completed", url="https://cdn/v.mp4"), 5000, Step.DELIVER),  # late, but it is done
        (render("completed"), 5, Step.POLL),  # completed without a link: ask again
        (render("processing"), 1801, Step.GIVE_UP),
        (render("starting"), 30, Step.WAIT),  # its starter may still be at it
        (render("starting"), 61, Step.RESUME_START),  # its starter's lease is over
        (render("pending"), 5, Step.POLL),
    ],
)
def test_the_next_step_of_a_render(record: RenderRecord, seconds_later: float, step: Step) -> None:
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
