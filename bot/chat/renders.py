"""Exports: start a render, poll it, and deliver the MP4 into the chat once.

A render in flight is a record in Redis, not a coroutine, and its polls are steps of a keyed job
on the job queue (`bot.work.jobs`): whichever replica is alive runs the next poll, so a restarted bot
still finishes and delivers it, and no two processes poll or deliver the same render at once.

Why one module of this length: a render's whole life (start, polls, delivery, sending again, the
browser link) is one state machine whose steps call each other; its pure rules open the module.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import secrets
import tempfile
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from telegram import Message
from telegram.error import BadRequest, TelegramError

from bot.chat.access import today
from bot.chat.kit import ChatContext, Kit, browser_link, resume, studio_link
from bot.chat.projects import ChatRef, Connection, Projects
from bot.core import metrics
from bot.core.actions import Action
from bot.core.media import human_size
from bot.core.texts import Lang, clock, language_of, progress_bar, say
from bot.core.timeline import is_exportable
from bot.nemo.client import NemoClient, RenderStatus
from bot.nemo.errors import BackendRejected, BackendUnavailable, NemoError, SessionNotFound, TokenExpired
from bot.state.renders import FINISHED, RenderRecord, RenderState
from bot.state.store import Store
from bot.telegram.flood import Thinned
from bot.telegram.output import CAPTION_LIMIT, ChatGone, ChatOutput, Link, Telegram
from bot.telegram.probe import VideoInfo, probe_video
from bot.work.jobs import JobKind, Jobs

log = logging.getLogger(__name__)
ADOPT_BATCH = 1000  # renders checked for a job per Redis command while adopting


@dataclass(frozen=True)
class RenderTimings:
    poll_seconds: float
    max_seconds: float
    lease_seconds: float  # how often renders without a job are adopted
    delivery_attempts: int  # polls that may retry a cut delivery (by link) while Telegram keeps failing
    download_seconds: float  # the finished MP4 from the CDN


class RenderStep(enum.Enum):
    """What a poll does with a render, before anything is asked of the backend."""

    RESEND_LINK = "send the link of a cut delivery"
    ABANDON = "give up a delivery Telegram keeps refusing"
    DELIVER = "deliver a completed render"
    GIVE_UP = "give up a render that took too long"
    RESUME_START = "start a render whose starter stopped"
    WAIT = "leave a render that is being started"
    POLL = "ask the backend for the status"


def next_step(record: RenderRecord, now: float, timings: RenderTimings) -> RenderStep:
    """The next step for a render in flight (pure)."""
    if record.status == "delivering":
        return (
            RenderStep.ABANDON
            if record.delivery_attempts >= timings.delivery_attempts
            else RenderStep.RESEND_LINK
        )
    if record.status == "completed" and record.url:
        return RenderStep.DELIVER
    if now - record.started_at > timings.max_seconds:
        return RenderStep.GIVE_UP
    if record.status == "starting":
        return RenderStep.RESUME_START if now - record.started_at > timings.lease_seconds else RenderStep.WAIT
    return RenderStep.POLL


class Reading(enum.Enum):
    """What a status answer means for the render."""

    COMPLETED = "completed"
    FAILED = "failed"
    PROGRESSED = "progressed"
    UNCHANGED = "unchanged"


def reading(status: RenderStatus, record: RenderRecord) -> tuple[Reading, str]:
    """What the backend's status means, and the reason of a failure (pure)."""
    if status.status == "completed" and status.url:
        return Reading.COMPLETED, ""
    if status.status in ("failed", "cancelled", "completed"):  # completed without a video: failed
        return Reading.FAILED, status.error or (
            "no video in the result" if status.status == "completed" else status.status
        )
    if (status.status, status.progress) != (record.status, record.progress):
        return Reading.PROGRESSED, ""
    return Reading.UNCHANGED, ""


def restartable(err: BaseException) -> bool:
    """Whether a render that failed to start is started once more, with a new id (pure): after a
    backend failure, a timeout or a refusal the contract does not name; not after 402 (the plan),
    2001 (credits), or an account problem, which a second start would meet again."""
    return isinstance(err, BackendUnavailable | BackendRejected)


def new_render_id() -> str:
    """Unique across restarts and processes: a reused id is an error on the backend."""
    return f"render_{int(time.time() * 1000)}_{secrets.token_hex(4)}"


def progress_text(status: RenderStatus, lang: Lang, elapsed: float) -> str:
    """The one render progress message (pure): a bar, the percent and the time since export."""
    if status.status == "processing" or (status.status not in ("pending", "starting") and status.progress):
        return say(
            lang,
            "render_processing",
            bar=progress_bar(status.progress),
            progress=status.progress,
            elapsed=clock(elapsed),
        )
    return say(lang, "render_queued", elapsed=clock(elapsed))


def draft_digest(draft: dict[str, Any]) -> str:
    """A fingerprint of a draft (pure): equal for the same timeline, whatever its keys' order."""
    canonical = json.dumps(draft, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def reuse_video(last: RenderRecord | None, digest: str) -> bool:
    """Whether export can send the chat's last video again instead of rendering (pure): it went out
    as a file (Telegram keeps it under its file id) and was rendered from this very draft."""
    return last is not None and bool(last.file_id) and bool(last.draft_digest) and last.draft_digest == digest


class Renders:
    def __init__(
        self,
        kit: Kit,
        projects: Projects,
        client: NemoClient,
        store: Store,
        telegram: Telegram,
        jobs: Jobs,
        timings: RenderTimings,
        *,
        upload_limit_mb: int,
        delivery_concurrency: int,
        web_url: str,
        studio_url: str | None = None,
    ):
        self.kit = kit
        self.projects = projects
        self.client = client
        self.store = store
        self.telegram = telegram
        self.jobs = jobs
        self.timings = timings
        self.web_url = web_url  # browser links open the project there
        self.studio_url = studio_url  # MINI_APP_URL: a studio button under each video
        jobs.register(JobKind.RENDER, self.poll)
        jobs.register(JobKind.ADOPT_RENDERS, self.adopt)
        self._upload_limit = upload_limit_mb * 1024 * 1024
        self._delivery_slots = asyncio.Semaphore(delivery_concurrency)  # videos downloaded and sent at once
        # Each chat's connection as its last status poll used it, so the next poll needs no Redis
        # reads for the token; dropped when the backend refuses it, and when the render ends.
        self._connections: dict[str, Connection] = {}

    # -- starting -------------------------------------------------------------------------------

    async def export(self, ctx: ChatContext) -> None:
        """Render the project's current draft; its polls (job steps) take it from there."""
        if not (connection := await self.kit.ensure_connected(ctx)):
            return
        try:
            state = await self.projects.state(ctx.chat, ctx.session_lang, connection=connection)
        except Exception as err:
            await self.kit.explain(ctx, err)
            return
        if not is_exportable(state.draft):
            await ctx.out.say("export_empty")
            return
        digest = draft_digest(state.draft)
        last = await self.store.last_delivered(ctx.chat.key)
        if (
            last is not None
            and reuse_video(last, digest)
            and await self._send_again(ctx.out, last, "export_unchanged")
        ):
            return  # the same draft as the last video: that video again, nothing rendered or uploaded
        connection = await self.projects.connect(ctx.chat, ctx.session_lang)  # renewed if state needed it
        record = RenderRecord(
            render_id=new_render_id(),
            chat_key=ctx.chat.key,
            chat_id=ctx.chat.chat_id,
            thread_id=ctx.chat.thread_id,
            session_id=connection.session_id,
            task_id=connection.task_id,
            language=ctx.lang,
            session_language=ctx.session_lang,
            draft_digest=digest,
        )
        # Recorded before anything else, so a crash from here on leaves a record to pick up (its
        # first poll is scheduled at once; a crash between the two is caught by `adopt`).
        if not await self.store.add_render(record):
            await ctx.out.say("export_running")
            return
        await self.jobs.schedule(
            JobKind.RENDER, record.render_id, delay=self.timings.poll_seconds, render_id=record.render_id
        )
        notice = await ctx.out.say("render_pending", silent=True)  # progress: only the video rings
        record.progress_message_id = notice.message_id if notice else None
        await self.store.move_render(record, RenderState.STARTING)
        for attempt in (1, 2):
            try:
                status = await self._start(ctx.chat, record, state.draft)
                break
            except Exception as err:
                await self.store.move_render(record, RenderState.FAILED)
                if attempt == 1 and restartable(err) and (again := await self._renamed(record)):
                    log.info(
                        "render %s did not start (%s): once more as %s",
                        record.render_id,
                        err,
                        again.render_id,
                    )
                    record = again
                    continue
                metrics.RENDERS.labels("failed").inc()
                await self.kit.explain(
                    ctx, err, message_id=record.progress_message_id, buttons=(Action.RETRY,)
                )
                return
        metrics.RENDERS.labels("started").inc()
        record.progress = status.progress
        await self.store.move_render(record, RenderState.of_backend(status.status))
        log.info("chat %s: render %s started", ctx.chat.key, record.render_id)

    async def _renamed(self, record: RenderRecord) -> RenderRecord | None:
        """The same render under a new id (the backend refuses a reused one), recorded and with its
        polls scheduled; None when another export of the chat took its place meanwhile."""
        again = replace(
            record, render_id=new_render_id(), status=RenderState.STARTING, started_at=time.time()
        )
        if not await self.store.add_render(again):
            return None
        await self.jobs.schedule(
            JobKind.RENDER, again.render_id, delay=self.timings.poll_seconds, render_id=again.render_id
        )
        return again

    async def _start(self, chat: ChatRef, record: RenderRecord, draft: dict[str, Any]) -> RenderStatus:
        """Start the render under its own id (the backend refuses a reused id, so this never runs twice)."""
        return await self.projects.call(
            chat,
            record.session_language,
            lambda c: self.client.start_render(c.token, c.session_id, record.render_id, draft),
        )

    async def _status(self, chat: ChatRef, record: RenderRecord) -> RenderStatus:
        """The render's status, with the connection the chat's last poll used when there is one.

        A refused token or lost session takes the full path, `Projects.call`, which reloads the
        chat's connection from Redis and renews what is stale; other errors are the caller's (a
        rate-limited poll is retried at the next round).
        """
        known = self._connections.get(chat.key)
        if known is not None:
            try:
                return await self.client.render_status(known.token, record.render_id)
            except (TokenExpired, SessionNotFound):
                self._connections.pop(chat.key, None)

        def status(connection: Connection) -> Awaitable[RenderStatus]:
            self._connections[chat.key] = connection
            return self.client.render_status(connection.token, record.render_id)

        return await self.projects.call(chat, record.session_language, status)

    async def _resume_start(self, chat: ChatRef, record: RenderRecord, out: ChatOutput) -> None:
        """A render recorded by a process that stopped before (or while) starting it.

        If the backend knows its id, the watcher goes on as usual; if not, it was never started:
        start it now, under the same id, from the project's current draft.
        """
        try:
            status = await self._status(chat, record)
        except BackendRejected as err:
            if err.http_status != 404:
                raise
            state = await self.projects.state(chat, record.session_language)
            record.draft_digest = draft_digest(state.draft)
            status = await self._start(chat, record, state.draft)
            log.info("render %s: started after a restart", record.render_id)
        record.progress = status.progress
        if record.progress_message_id is None:
            notice = await out.say("render_pending", silent=True)
            record.progress_message_id = notice.message_id if notice else None
        await self.store.move_render(record, RenderState.of_backend(status.status))

    # -- polling --------------------------------------------------------------------------------

    async def poll(self, render_id: str) -> float | None:
        """One poll of a render, as a job step: show progress, deliver or report its end.

        Answers when to poll again (`poll_seconds`), or None once the render has ended. Whatever
        fails here is logged and polled again at the next interval: the render completes on the
        backend whether or not anyone is polling.
        """
        record = await self.store.get_render(render_id)
        if record is None or record.status in FINISHED:
            await self.store.forget_render(render_id)  # off the active set, if a process stopped first
            return None
        try:
            await self._advance(record)
        except ChatGone as err:
            log.info("render %s: chat gone, not delivered: %s", render_id, err)
            current = await self.store.get_render(render_id)
            if current is not None and current.status not in FINISHED:
                await self.store.move_render(current, RenderState.UNDELIVERABLE)
            record.status = RenderState.UNDELIVERABLE
        except Exception:
            log.exception("render %s: poll failed", render_id)
        if record.status in FINISHED:
            self._connections.pop(record.chat_key, None)
            return None
        return self.timings.poll_seconds

    async def adopt(self) -> float:
        """Give every render in flight a job: those recorded by a process that stopped before it
        scheduled the first poll, those whose job ran out of retries, and records written by an
        older version. Keyed jobs make this safe to run anywhere; it runs every lease period."""
        render_ids = await self.store.active_renders()
        for first in range(0, len(render_ids), ADOPT_BATCH):
            for render_id in await self.jobs.unscheduled(
                JobKind.RENDER, render_ids[first : first + ADOPT_BATCH]
            ):
                if await self.jobs.schedule(JobKind.RENDER, render_id, render_id=render_id):
                    log.info("render %s: adopted", render_id)
        return self.timings.lease_seconds

    async def _advance(self, record: RenderRecord) -> None:
        """Do the render's next step (`next_step`), and what its status says (`reading`)."""
        out = self._output(record)
        lang = language_of(record.language)
        step = next_step(record, time.time(), self.timings)
        if step is RenderStep.ABANDON:
            log.warning(
                "render %s: giving up delivery after %d attempts", record.render_id, record.delivery_attempts
            )
            await self.store.move_render(record, RenderState.UNDELIVERABLE)
        elif step is RenderStep.RESEND_LINK:
            # A delivery was cut (a stopped process, or Telegram failing): Telegram may have the
            # video. Send the link, not the video again: neither a duplicate nor silence.
            record.delivery_attempts += 1
            await self.store.move_render(record, RenderState.DELIVERING)
            links = await self._links(record, out)
            await out.send(say(lang, "video_ready_again", url=record.url), links=links)
            await self._delivered(record, sent_file=False)
        elif step is RenderStep.DELIVER:
            await self._deliver(record, out, None)
        elif step is RenderStep.GIVE_UP:
            await self._give_up(record, out)
        elif step is RenderStep.RESUME_START:
            await self._resume_start(ChatRef(record.chat_id, record.thread_id, record.chat_key), record, out)
        elif step is RenderStep.POLL:
            await self._poll_status(record, out, lang)

    async def _poll_status(self, record: RenderRecord, out: ChatOutput, lang: Lang) -> None:
        chat = ChatRef(record.chat_id, record.thread_id, record.chat_key)
        try:
            status = await self._status(chat, record)
        except NemoError as err:
            log.warning("render %s: status unavailable: %s", record.render_id, err.describe())
            return
        verdict, reason = reading(status, record)
        if verdict is Reading.COMPLETED:
            record.progress, record.url = 100, status.url or ""
            if not await self.store.move_render(record, RenderState.COMPLETED):
                return  # another process moved it since it was read: the next round reads it again
            await out.edit_or_send(record.progress_message_id, say(lang, "render_completed"), silent=True)
            await self._deliver(record, out, status)
        elif verdict is Reading.FAILED:
            await self.store.move_render(record, RenderState.FAILED)
            await out.edit_or_send(
                record.progress_message_id, say(lang, "render_failed", reason=reason), buttons=(Action.RETRY,)
            )
            log.info("render %s failed: %s", record.render_id, reason)
        elif verdict is Reading.PROGRESSED:
            try:  # progress is cosmetic: dropped under load, shown at a later poll; and silent
                record.progress_message_id = await out.edit_or_send(
                    record.progress_message_id,
                    progress_text(status, lang, time.time() - record.started_at),
                    cosmetic=True,
                    silent=True,
                )
            except Thinned:
                return
            record.progress = status.progress
            await self.store.move_render(record, RenderState.of_backend(status.status))

    async def _deliver(self, record: RenderRecord, out: ChatOutput, status: RenderStatus | None) -> None:
        """Send the MP4 (or its link when it is too large for Telegram), with the project's browser
        link under it, then close the record."""
        lang = language_of(record.language)
        if status is not None and status.size is not None:
            record.size = status.size
        size = record.size
        links = await self._links(record, out)
        sent = False
        if size is None or size <= self._upload_limit:
            async with self._delivery_slots:  # each holds a downloaded video while it is uploaded
                # The move is the claim: of two steps that read "completed", one sends the video.
                if not await self.store.move_render(record, RenderState.DELIVERING):
                    log.warning("render %s: moved by another process, left to it", record.render_id)
                    return
                sent = await self._send_file(record, out, status, links)
        if not sent and size is not None and size > self._upload_limit:
            await out.send(say(lang, "video_ready_link", url=record.url, size=human_size(size)), links=links)
        elif not sent:
            await out.send(say(lang, "video_ready_unattached", url=record.url), links=links)
        await self._delivered(record, sent_file=sent)

    async def _links(self, record: RenderRecord, out: ChatOutput) -> list[Link]:
        """The buttons under a video: "Open in browser" for the render's project (a claim link; none
        when the backend gives no claim token now: the video never waits for it), and the studio."""
        chat = ChatRef(record.chat_id, record.thread_id, record.chat_key)
        links = []
        try:
            claim = await self.projects.claim(
                chat, record.session_language, session_id=record.session_id, task_id=record.task_id
            )
            links.append(Link(say(out.lang, "button_open"), browser_link(self.web_url, claim)))
        except Exception as err:
            log.info("render %s: no browser link: %s", record.render_id, type(err).__name__)
        if (studio := studio_link(self.studio_url, out)) is not None:
            links.append(studio)
        return links

    async def _delivered(self, record: RenderRecord, *, sent_file: bool) -> None:
        metrics.RENDERS.labels("completed").inc()
        metrics.DELIVERIES.labels("video" if sent_file else "link").inc()
        if await self.store.move_render(record, RenderState.DELIVERED):
            await self.store.note_delivered(record)  # "send it again" finds it (and its file id)
        await self.store.count_usage("delivered", record.chat_key, today())
        log.info("render %s delivered (%s)", record.render_id, "file" if sent_file else "link")

    async def _send_file(
        self, record: RenderRecord, out: ChatOutput, status: RenderStatus | None, links: Sequence[Link]
    ) -> bool:
        """Download the MP4 (through the API when its URL fails), read its size, length and a
        thumbnail from it, and upload it (keeping Telegram's file id on the record); False when it
        could not go (the caller sends the link)."""
        lang = language_of(record.language)
        with tempfile.TemporaryDirectory(prefix="nemo-render-") as folder:
            path = Path(folder) / f"{record.render_id}.mp4"
            try:
                url_works = await self._download(record, path)
                # A link that failed is not offered: the browser button is the way to the project.
                caption = (
                    say(lang, "video_ready", url=record.url) if url_works else say(lang, "video_ready_plain")
                )
                link_after = (
                    len(caption) > CAPTION_LIMIT
                )  # a very long link: the video goes bare, the link follows
                info = await asyncio.to_thread(probe_video, path)
                message = await self._upload(out, path, "" if link_after else caption, info, status, links)
            except (NemoError, TelegramError) as err:
                log.warning("render %s: sending the file failed, sending the link: %s", record.render_id, err)
                return False
        if message is not None and message.video is not None:
            record.file_id = message.video.file_id
        if link_after:
            await out.send(caption)
        return True

    async def _download(self, record: RenderRecord, path: Path) -> bool:
        """Fetch the MP4 from its URL, or, when that fails (404, 5xx, a timeout), through the API's
        download endpoint with the chat's token. True when the URL itself worked."""
        seconds = self.timings.download_seconds
        try:
            await self.client.download(record.url, path, self._upload_limit, seconds=seconds)
            return True
        except NemoError as err:
            log.info("render %s: its URL failed (%s), fetching it through the API", record.render_id, err)
        chat = ChatRef(record.chat_id, record.thread_id, record.chat_key)
        await self.projects.call(
            chat,
            record.session_language,
            lambda c: self.client.download_render(
                c.token, record.render_id, path, self._upload_limit, seconds=seconds
            ),
        )
        return False

    async def _upload(
        self,
        out: ChatOutput,
        path: Path,
        caption: str,
        info: VideoInfo,
        status: RenderStatus | None,
        links: Sequence[Link],
    ) -> Message | None:
        duration = info.duration or (status.duration if status else None)
        try:
            return await out.send_video(
                path,
                "video.mp4",
                caption,
                duration=duration,
                width=info.width,
                height=info.height,
                thumbnail=info.thumbnail,
                links=links,
            )
        except BadRequest as err:  # refused (not sent): once more as before, without what the probe added
            if info == VideoInfo():
                raise
            log.warning("video refused with its size and thumbnail (%s), sending it without", err)
            return await out.send_video(path, "video.mp4", caption, duration=duration, links=links)

    # -- sending it again -----------------------------------------------------------------------

    async def resend(self, ctx: ChatContext) -> None:
        """ "Send it again": the chat's last video by its Telegram file id (nothing is uploaded twice);
        one that went as a link (too large for Telegram) by its link, with its size."""
        last = await self.store.last_delivered(ctx.chat.key)
        if last is None:
            await ctx.out.say("nothing_to_resend")
        elif not await self._send_again(ctx.out, last, "video_again"):
            if last.size is not None and last.size > self._upload_limit:
                await ctx.out.say("video_ready_link", url=last.url, size=human_size(last.size))
            else:
                await ctx.out.say("video_ready", url=last.url)

    async def _send_again(self, out: ChatOutput, last: RenderRecord, key: str) -> bool:
        """The last video again by its file id, under the caption `key` and its browser link; False
        when it has none or Telegram refuses it."""
        if not last.file_id:
            return False
        caption = say(out.lang, key, url=last.url)
        links = await self._links(last, out)
        try:
            await out.send_video(
                last.file_id, "video.mp4", caption if len(caption) <= CAPTION_LIMIT else "", links=links
            )
        except TelegramError as err:
            log.warning("render %s: sending it again by file id failed: %s", last.render_id, err)
            return False
        if len(caption) > CAPTION_LIMIT:
            await out.send(caption)
        metrics.DELIVERIES.labels("resent").inc()
        return True

    async def _give_up(self, record: RenderRecord, out: ChatOutput) -> None:
        metrics.RENDERS.labels("timed_out").inc()
        await self.store.move_render(record, RenderState.EXPIRED)
        minutes = round(self.timings.max_seconds / 60)
        text = say(language_of(record.language), "render_too_long", minutes=minutes)
        await out.edit_or_send(record.progress_message_id, text, buttons=(Action.RETRY,))
        chat = ChatRef(record.chat_id, record.thread_id, record.chat_key)
        try:
            await self.projects.call(
                chat,
                record.session_language,
                lambda c: self.client.cancel_render(c.token, record.render_id),
            )
        except NemoError as err:
            log.info("render %s: cancel refused: %s", record.render_id, err.describe())

    def _output(self, record: RenderRecord) -> ChatOutput:
        return resume(record.address, self.telegram).out
