"""Durable work on SAQ, a maintained asyncio job queue over Redis.

Each kind of durable work (polling and delivering a render, sending an album on, watching a
running turn, adopting work that has no job) is a *step*: an async function that does one round
of the work and answers when it wants to run again, in seconds after this step was due (so a
render polled every 30 s is polled every 30 s however long each poll waited for a worker), or
None when the work is done. A step runs as a SAQ job keyed by its work, so the same work is never
scheduled or run twice at once, whichever replica asks; when a step answers a delay, the same key
is scheduled again as soon as SAQ has finished the job.

What SAQ brings: scheduled jobs, retries with backoff when a step fails, and the sweep that finds
the jobs of a replica that died (a job untouched for `heartbeat_seconds`) and runs them again
elsewhere. Every running step touches its job three times a heartbeat, so a long step (a video
upload) is never mistaken for a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from saq.job import Job, Status
from saq.queue.redis import RedisQueue
from saq.types import PartialTimersDict
from saq.worker import Worker

log = logging.getLogger(__name__)

EMBEDDED_POLL_SECONDS = 0.02
JobStep = Callable[..., Awaitable[float | None]]  # one step of a job: seconds until the next, or None: done


class JobKind(enum.StrEnum):
    """Every kind of durable work, named once (the job's key in Redis starts with it)."""

    RENDER = "render"  # a render's next poll, or its delivery
    ALBUM = "album"  # an album sent on once it has been quiet
    TURN = "turn"  # a turn another replica runs, watched until it ends
    ADOPT_RENDERS = "adopt_renders"  # renders a stopped process left without a job
    ADOPT_ALBUMS = "adopt_albums"
    ADOPT_TURNS = "adopt_turns"
    OPERATOR_CREDITS = "operator_credits"  # the shared account's balance, read now and then


@dataclass(frozen=True)
class JobTimings:
    concurrency: int  # steps run at once by one replica
    heartbeat_seconds: float  # a running step untouched this long belongs to a dead replica
    sweep_seconds: float  # how often a replica looks for such steps (SAQ's sweep)
    schedule_seconds: float  # how often due steps are moved to the queue (SAQ's schedule)
    retries: int  # attempts of a step that raised, before it is left to the adoption pass
    retry_seconds: float  # the first retry's delay (then doubled, with jitter)
    dequeue_seconds: float = 1.0  # a worker's blocking wait for a step; below Redis's socket timeout


def abandoned(job: Job, now: float) -> bool:
    """Whether a job on the running list was left by a worker that stopped (pure).

    Marked running: when untouched for its heartbeat. Not yet marked: when it has been due for a
    heartbeat, so the moment between a worker's two steps of taking a job is never mistaken.
    """
    if job.status in (Status.ACTIVE, Status.ABORTING):
        return job.stuck
    since = max(job.queued, job.touched) / 1000
    return now - max(since, job.scheduled) > (job.heartbeat or 0)


class Queue(RedisQueue):
    """SAQ's Redis queue, with two of its upkeep steps adapted.

    - Its sweep takes a job that is on the running list but not yet marked running for one a dead
      worker left; but a worker takes a job in two steps (moved to the running list, then marked),
      and a sweep between the two would run the job twice. Here such a job is abandoned only once
      it has sat there for a heartbeat (`abandoned`). SAQ's sweep also waits up to 5 s for a dead
      worker to confirm an abort, one job at a time; here it waits a moment.
    - Its schedule and sweep hold a lock for their interval so that one replica does each per
      interval; the lock is set in whole seconds (SETEX), so an interval below a second (in tests,
      or for renders polled more often) rounds the lock up and clears the schedule lock after use.
    - SAQ publishes every change of a job for listeners (its `listen` and `refresh`); nothing here
      listens, and at 10,000 renders that is two commands per poll for nobody: not published.
    - The embedded in-process store (fakeredis) answers a blocking pop at once instead of waiting,
      so on it a worker slot polls every `EMBEDDED_POLL_SECONDS` instead.
    """

    def __init__(self, redis: Redis, name: str, *, blocking: bool = True):
        super().__init__(redis, name=name)
        self.blocking = blocking

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:  # noqa: ASYNC109 (SAQ's signature)
        if self.blocking:
            return await super().dequeue(timeout, poll_interval)
        job_id = await self.redis.lmove(self._queued, self._active, "LEFT", "RIGHT")
        if job_id is None:
            await asyncio.sleep(EMBEDDED_POLL_SECONDS)
            return None
        return await self._get_job_by_id(job_id)

    async def notify(self, job: Job) -> None:
        return None

    async def schedule(self, lock: int = 1) -> list[str]:
        moved = await super().schedule(max(1, math.ceil(lock)))
        if lock < 1:
            await self.redis.delete(self.namespace("schedule"))
        return moved

    async def sweep(self, lock: int = 60, abort: float = 0.05) -> list[str]:
        """SAQ's sweep with `abandoned` deciding which running jobs a dead worker left."""
        if not await self.redis.set(self._sweep, 1, nx=True, ex=max(1, math.ceil(lock))):
            return []  # another replica swept within the interval
        swept: list[str] = []
        for job_id in await self.redis.lrange(self._active, 0, -1):
            job = await self._get_job_by_id(job_id)
            if job is None:  # its record expired: nothing to run
                await self.redis.lrem(self._active, 0, cast(str, job_id))
                await self.redis.zrem(self._incomplete, job_id)
                continue
            if not abandoned(job, time.time()):
                continue
            log.info("job %s: its worker stopped, running it again", job.key)
            swept.append(job.key)
            await self.abort(job, error=self.swept_error_message)
            with contextlib.suppress(TimeoutError):
                await job.refresh(abort)
            if job.retryable:
                await self.retry(job, error=self.swept_error_message)
            else:
                await self.finish(job, Status.ABORTED, error=self.swept_error_message)
        return swept


class Jobs:
    def __init__(self, redis: Redis, name: str, timings: JobTimings, *, blocking: bool = True):
        self.queue = Queue(redis, name, blocking=blocking)
        self.timings = timings
        self._steps: dict[str, JobStep] = {}
        self._worker: Worker[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def register(self, kind: JobKind, step: JobStep) -> None:
        self._steps[kind] = step

    def key(self, kind: str, key: str) -> str:
        return f"{kind}:{key}"

    async def schedule(self, kind: JobKind | str, key: str, *, delay: float = 0.0, **kwargs: Any) -> bool:
        """Run `kind`'s step for `key` in `delay` seconds; False if it is scheduled or running already."""
        job = await self.queue.enqueue(
            kind,
            key=self.key(kind, key),
            scheduled=time.time() + delay if delay > 0 else 0,
            timeout=0,  # a delivery may take long: liveness is the heartbeat's business
            heartbeat=self.timings.heartbeat_seconds,
            retries=self.timings.retries,
            retry_delay=self.timings.retry_seconds,
            retry_backoff=True,
            ttl=max(60, int(self.timings.heartbeat_seconds * 10)),  # kept a while for inspection
            **kwargs,
        )
        return job is not None

    async def unscheduled(self, kind: str, keys: Iterable[str]) -> list[str]:
        """Those of `keys` with no step of `kind` scheduled or running (one command for all)."""
        keys = list(keys)
        if not keys:
            return []
        ids = [self.queue.job_id(self.key(kind, key)) for key in keys]
        scores = await self.queue.redis.zmscore(self.queue.namespace("incomplete"), ids)
        return [key for key, score in zip(keys, scores, strict=True) if score is None]

    async def depths(self) -> dict[str, int]:
        """Steps waiting for a worker, running, and scheduled for later, for /metrics."""
        queued = await self.queue.count("queued")
        active = await self.queue.count("active")
        incomplete = await self.queue.count("incomplete")
        return {"jobs_queued": queued, "jobs_running": active, "jobs_scheduled": incomplete - queued - active}

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        worker: Worker[Any] = Worker(
            self.queue,
            [(kind, self._run) for kind in self._steps],
            concurrency=self.timings.concurrency,
            # SAQ types these as whole seconds; `Queue` takes fractions (its locks round up)
            timers=cast(
                PartialTimersDict,
                {"schedule": self.timings.schedule_seconds, "sweep": self.timings.sweep_seconds},
            ),
            dequeue_timeout=self.timings.dequeue_seconds,
            after_process=self._again,
        )
        worker.SIGNALS = []  # python-telegram-bot owns SIGINT and SIGTERM: it stops us in turn
        self._worker = worker
        self._task = asyncio.create_task(worker.start(), name="jobs")
        return self._task

    async def stop(self, grace: float) -> None:
        """Let the steps in hand finish for up to `grace` seconds; the rest go back to the queue
        (SAQ retries a cancelled job), so another replica, or the next process, runs them."""
        if self._worker is None:
            return
        for task in list(self._worker.tasks):  # upkeep loops sleep up to 10 s: they need no grace
            if task.get_name() != "process":
                task.cancel()
        self._worker._shutdown_grace_period_s = max(1, round(grace))
        await self._worker.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def close(self) -> None:
        await self.queue.disconnect()

    async def _run(self, ctx: dict[str, Any], **kwargs: Any) -> float | None:
        """One step, its job touched while it runs so the sweep knows this replica is alive."""
        job: Job = ctx["job"]
        toucher = asyncio.create_task(self._touch(job))
        try:
            return await self._steps[job.function](**kwargs)
        finally:
            toucher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await toucher

    async def _touch(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self.timings.heartbeat_seconds / 3)
            try:
                await job.update()
            except Exception as err:  # the sweep may take the step over; the step itself goes on
                log.warning("job %s not touched: %s", job.key, type(err).__name__)

    async def _again(self, ctx: dict[str, Any]) -> None:
        """After a step: schedule the same work again when it asked to run again."""
        job: Job = ctx["job"]
        if job.status != Status.COMPLETE or ctx.get("exception") is not None:
            return
        delay = job.result
        if isinstance(delay, int | float):
            kind, _, key = job.key.partition(":")
            was_due = job.scheduled or job.queued / 1000
            await self.schedule(kind, key, delay=was_due + delay - time.time(), **(job.kwargs or {}))
