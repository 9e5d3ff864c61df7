"""The job queue for durable work (SAQ), on fakeredis and on a real redis-server.

What the renders rely on: a keyed step runs once at a time however often it is scheduled, a step
runs again when it asks to, a failing step is retried, the step of a replica that died is taken
over, and renders in flight without a job are adopted.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import fakeredis
import pytest
from redis.asyncio import Redis
from saq.job import Status

from bot.state.renders import RenderRecord
from bot.state.store import Store
from bot.work.jobs import Jobs, JobTimings, abandoned
from loopback.servers import RETENTION, RedisServer

TIMINGS = JobTimings(
    concurrency=4,
    heartbeat_seconds=0.6,
    sweep_seconds=0.2,
    schedule_seconds=0.02,
    retries=3,
    retry_seconds=0.05,
    dequeue_seconds=0.2,
)


@pytest.fixture(params=["fakeredis", "redis-server"])
async def redis(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Redis]:
    server = None
    if request.param == "fakeredis":
        client: Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    else:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed: the real-Redis tier needs it")
        server = RedisServer(tmp_path, appendonly=False)
        server.start()
        client = Redis.from_url(server.url)
    yield client
    await client.aclose()
    if server is not None:
        server.stop()


def jobs_on(redis: Redis) -> Jobs:
    return Jobs(redis, "nvb:test:work", TIMINGS, blocking=not isinstance(redis, fakeredis.FakeAsyncRedis))


async def until(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("status", "touched_ago", "due_ago", "left"),
    [
        (Status.ACTIVE, 0.1, 100, False),  # running, touched within its heartbeat
        (Status.ACTIVE, 5, 100, True),  # running, untouched for longer: its worker died
        (Status.QUEUED, 100, 0.1, False),  # just taken from the queue, not yet marked running
        (Status.QUEUED, 100, 5, True),  # taken long ago and never marked: its worker died
        (Status.ABORTING, 5, 100, True),
    ],
)
def test_which_running_jobs_a_dead_worker_left(
    status: Status, touched_ago: float, due_ago: float, left: bool
) -> None:
    from saq.job import Job

    now = time.time()
    job = Job(
        "render", heartbeat=1, timeout=0, status=status, scheduled=int(now - due_ago) if due_ago >= 1 else 0
    )
    job.queued = job.touched = int((now - touched_ago) * 1000)
    if due_ago < 1:  # due at once: it was queued a moment ago
        job.queued = int((now - due_ago) * 1000)
    assert abandoned(job, now) is left


async def test_a_keyed_step_runs_once_however_often_it_is_scheduled(redis: Redis) -> None:
    jobs = jobs_on(redis)
    runs: list[str] = []

    async def step(note: str) -> None:
        runs.append(note)
        await asyncio.sleep(0.2)

    jobs.register("deliver", step)
    assert await jobs.schedule("deliver", "render_1", note="first")
    assert not await jobs.schedule("deliver", "render_1", note="second")  # another replica, say
    jobs.start()
    try:
        await until(lambda: runs)
        assert not await jobs.schedule("deliver", "render_1", note="third")  # still running
        await asyncio.sleep(0.4)
        assert runs == ["first"]
        assert await jobs.unscheduled("deliver", ["render_1", "render_2"]) == ["render_1", "render_2"]
    finally:
        await jobs.stop(1)


async def test_a_step_runs_again_when_it_asks_and_stops_when_done(redis: Redis) -> None:
    jobs = jobs_on(redis)
    times: list[float] = []

    async def poll() -> float | None:
        times.append(time.monotonic())
        return 0.15 if len(times) < 4 else None

    jobs.register("poll", poll)
    jobs.start()
    try:
        due = time.monotonic()
        await jobs.schedule("poll", "render_1")
        await until(lambda: len(times) == 4)
        await asyncio.sleep(0.4)
        assert len(times) == 4  # done: not scheduled again
        # Each run is due 0.15 s after the one before was due, not after it ran: no drift.
        since = [at - due for at in times]
        assert all(after >= 0.15 * k for k, after in enumerate(since)), since
        assert since[3] < 0.45 + 0.25, since
        assert await jobs.unscheduled("poll", ["render_1"]) == ["render_1"]
    finally:
        await jobs.stop(1)


async def test_a_failing_step_is_retried(redis: Redis) -> None:
    jobs = jobs_on(redis)
    attempts: list[int] = []

    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("backend hiccup")

    jobs.register("flaky", flaky)
    jobs.start()
    try:
        await jobs.schedule("flaky", "x")
        await until(lambda: len(attempts) == 3)
        deadline = time.monotonic() + 5
        while (job := await jobs.queue.job("flaky:x")) is None or job.status != Status.COMPLETE:
            assert time.monotonic() < deadline, "the third attempt did not complete"
            await asyncio.sleep(0.02)
    finally:
        await jobs.stop(1)
    assert job.attempts == 3 and len(attempts) == 3


async def test_the_step_of_a_replica_that_died_is_taken_over(redis: Redis) -> None:
    """A replica took a step and died: the step is in Redis as running, and nobody touches it."""
    dead = jobs_on(redis)
    await dead.schedule("deliver", "render_1", note="cut")
    taken = await dead.queue.dequeue(timeout=1)  # what a worker does first: move it to active
    assert taken is not None
    taken.started, taken.attempts = int(time.time() * 1000), 1
    await taken.update(status=Status.ACTIVE)
    # ... and the process is gone: no heartbeat, no finish.

    alive = jobs_on(redis)
    runs: list[str] = []

    async def step(note: str) -> None:
        runs.append(note)

    alive.register("deliver", step)
    started = time.monotonic()
    alive.start()
    try:
        await until(lambda: runs, seconds=TIMINGS.heartbeat_seconds + 5)
    finally:
        await alive.stop(1)
    assert runs == ["cut"]
    assert time.monotonic() - started >= TIMINGS.heartbeat_seconds  # not before it was stale


async def test_a_live_long_step_is_not_taken_over(redis: Redis) -> None:
    """A step running longer than the heartbeat (a video upload) keeps its job touched."""
    first, second = jobs_on(redis), jobs_on(redis)
    runs: list[str] = []

    async def upload() -> None:
        runs.append("start")
        await asyncio.sleep(TIMINGS.heartbeat_seconds * 3)
        runs.append("end")

    for jobs in (first, second):
        jobs.register("upload", upload)
    await first.schedule("upload", "render_1")
    first.start()
    try:
        await until(lambda: runs)
        second.start()
        await until(lambda: "end" in runs, seconds=10)
        await asyncio.sleep(TIMINGS.sweep_seconds * 2)
    finally:
        await first.stop(1)
        await second.stop(1)
    assert runs == ["start", "end"]


async def test_renders_in_flight_without_a_job_are_adopted(redis: Redis) -> None:
    """Recorded by a process that stopped before scheduling the first poll: adopted once."""
    from bot.chat.renders import Renders, RenderTimings

    store = Store(redis, "nvb:test", RETENTION)
    jobs = jobs_on(redis)
    timings = RenderTimings(
        poll_seconds=60, max_seconds=600, lease_seconds=0.2, delivery_attempts=3, download_seconds=5
    )
    renders = Renders(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        store,
        None,  # type: ignore[arg-type]
        jobs,
        timings,
        upload_limit_mb=50,
        delivery_concurrency=1,
        web_url="https://nemovideo.com",
    )
    for index in range(3):
        assert await store.add_render(RenderRecord(f"render_{index}", f"chat{index}", index, "s"))
    await jobs.schedule("render", "render_1", delay=60, render_id="render_1")  # this one has its job
    assert await jobs.unscheduled("render", ["render_0", "render_1", "render_2"]) == ["render_0", "render_2"]
    assert await renders.adopt() == 0.2
    assert await jobs.unscheduled("render", ["render_0", "render_1", "render_2"]) == []
    job = await jobs.queue.job("render:render_0")
    assert job is not None and job.kwargs == {"render_id": "render_0"}
