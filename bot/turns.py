"""One chat turn with the agent: stream its replies into the chat, one turn at a time per project.

A turn is recorded in Redis while it runs, so a second message is answered with "wait or /cancel"
(and a restarted bot knows a turn was cut off). The stream is never resent: when it drops, the
bot watches the timeline instead and reports what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

from redis.exceptions import RedisError
from telegram import Message
from telegram.error import TelegramError

from bot import metrics
from bot.agent_text import ChatText, reply_actions, to_chat
from bot.aio import cancel_and_wait
from bot.errors import StreamDropped, StreamIdle
from bot.flood import Thinned
from bot.flows import ChatContext, Flows, resume
from bot.jobs import Jobs
from bot.nemo import ProjectState
from bot.previews import generated_items, new_generated, show_generated
from bot.projects import Projects
from bot.sse import AgentEvent
from bot.store import Store, TurnRecord
from bot.telegram_io import ChatGone, Telegram
from bot.texts import bullet_list, say
from bot.timeline import TrackSummary, describe_changes, tracks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnTimings:
    still_working: float
    max_seconds: float
    typing_interval: float
    dropped_poll_seconds: float
    dropped_polls: int
    busy_grace: float
    merge_seconds: float
    max_live: int  # turns streaming at once; more wait in line


class Ending(enum.Enum):
    """How a turn's stream ended."""

    CLOSED = "the server closed it (or it went idle)"
    TIMED_OUT = "the turn ran past SSE_MAX_SECONDS"
    DROPPED = "the connection was cut mid-turn"


class Close(enum.Enum):
    """What the chat hears when a turn ends (after any replies still held back)."""

    NOTHING = "the agent's replies said it all"
    SAY_TIMEOUT = "say the bot stopped waiting"
    WATCH_TIMELINE = "say the stream dropped, then watch the timeline and report what changed"
    REPORT_CHANGES = "a silent turn: report what changed on the timeline"


TURN_OUTCOMES = {  # how /metrics names the end of a turn
    Close.NOTHING: "answered",
    Close.SAY_TIMEOUT: "timed_out",
    Close.WATCH_TIMELINE: "dropped",
    Close.REPORT_CHANGES: "silent",
}


def closing(ending: Ending, *, said_anything: bool) -> Close:
    """The end of a turn (pure): a dropped stream is never resent, a silent one is explained."""
    if ending is Ending.TIMED_OUT:
        return Close.SAY_TIMEOUT
    if ending is Ending.DROPPED:
        return Close.WATCH_TIMELINE
    return Close.NOTHING if said_anything else Close.REPORT_CHANGES


@dataclass
class _Progress:
    texts: int = 0
    errors: int = 0
    quiet_since: float = field(default_factory=time.monotonic)  # last text or "still working" notice
    merged: list[ChatText] = field(default_factory=list)  # replies waiting to go out as one (groups)
    merged_since: float = 0.0
    asked_at: float = field(default_factory=time.time)
    last_reply: tuple[int, tuple[str, ...]] | None = None  # the latest reply sent, and its buttons


class Turns:
    def __init__(
        self,
        flows: Flows,
        projects: Projects,
        store: Store,
        timings: TurnTimings,
        telegram: Telegram,
        *,
        owner: str,
        jobs: Jobs,
        orphaned: Callable[[set[str]], Awaitable[set[str]]],
        watch_seconds: float,
    ):
        self.owner = owner  # this replica: the turns it records are its own
        self.jobs = jobs
        self.orphaned = orphaned  # which of some owners have stopped
        self.watch_seconds = watch_seconds  # how often a running turn's owner is checked
        jobs.register("turn", self.watch)
        jobs.register("adopt_turns", self.adopt)
        self.flows = flows
        self.projects = projects
        self.store = store
        self.timings = timings
        self.telegram = telegram
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._started: dict[str, float] = {}  # each running turn's record, by its start
        self._live = asyncio.Semaphore(timings.max_live)  # one backend stream each
        self._handing_over = False  # set at shutdown: cut turns stay recorded for the next process

    async def start(self, ctx: ChatContext, text: str) -> asyncio.Task[None] | None:
        """Run a turn in the background; None (after saying so) when one is already running."""
        record = TurnRecord(
            time.time(),
            text[:80],
            ctx.chat.chat_id,
            ctx.chat.thread_id,
            ctx.lang,
            ctx.session_lang,
            owner=self.owner,
        )
        ttl = self.timings.max_seconds + 60
        if not await self.store.start_turn(ctx.chat.key, record, ttl):
            # A reply often arrives a moment before its turn closes: a quick follow-up waits for that.
            running = self._tasks.get(ctx.chat.key)
            if running is not None:
                await asyncio.wait({running}, timeout=self.timings.busy_grace)
            if not await self.store.start_turn(ctx.chat.key, record, ttl):
                metrics.TURNS.labels("busy").inc()
                await ctx.out.say("busy")
                return None
        await self._watch(ctx.chat.key, record.started_at)
        task = asyncio.create_task(self._guarded(ctx, text, record), name=f"turn {ctx.chat.key}")
        self._tasks[ctx.chat.key] = task
        self._started[ctx.chat.key] = record.started_at
        return task

    async def cancel(self, ctx: ChatContext) -> bool:
        """Stop waiting for the chat's running turn; False when there is none."""
        task = self._tasks.get(ctx.chat.key)
        if task is None or task.done():
            if await self.store.current_turn(ctx.chat.key) is None:
                return False
            await self.store.end_turn(ctx.chat.key)  # left by a process that is gone
            return True
        await cancel_and_wait([task])
        return True

    async def follow_cancels(self, interval: float) -> None:
        """Stop this replica's turns whose record has gone: /cancel reached another replica (which
        closed the record and said so). One Redis round trip per `interval` for all of them."""
        while True:
            await asyncio.sleep(interval)
            running = [key for key, task in self._tasks.items() if not task.done() and key in self._started]
            if not running:
                continue
            try:
                current = await self.store.turn_starts(running)
            except RedisError as err:
                log.info("cancellations not checked, Redis unavailable: %s", type(err).__name__)
                continue
            for key in running:
                task = self._tasks.get(key)
                if task is not None and current.get(key) != self._started.get(key):
                    log.info("chat %s: turn cancelled from another replica", key)
                    task.cancel()

    async def hand_over(self, grace: float) -> None:
        """At shutdown: let running turns finish for `grace` seconds, then cut the rest.

        A cut turn keeps its Redis record, so the next process tells its chat what happened
        (once) instead of this one saying something half-way.
        """
        running = [task for task in self._tasks.values() if not task.done()]
        if running:
            log.info("waiting up to %.0fs for %d running turn(s)", grace, len(running))
            await asyncio.wait(running, timeout=grace)
        self._handing_over = True
        await cancel_and_wait(list(self._tasks.values()))

    async def _watch(self, chat_key: str, started_at: float, delay: float | None = None) -> None:
        await self.jobs.schedule(
            "turn",
            f"{chat_key}|{started_at}",
            delay=self.watch_seconds if delay is None else delay,
            chat_key=chat_key,
            started_at=started_at,
        )

    async def watch(self, chat_key: str, started_at: float) -> float | None:
        """A running turn's job step: while its owner lives, look again in `watch_seconds`; once
        the owner has stopped, tell the chat its turn was cut off, then what changed on the
        timeline. The request itself is never sent again: the agent may have done it already."""
        turn = await self.store.current_turn(chat_key)
        if turn is None or turn.started_at != started_at:
            return None  # it ended
        if turn.owner == self.owner:
            running = self._tasks.get(chat_key)
            if running is not None and not running.done():
                return self.watch_seconds
        elif turn.owner not in await self.orphaned({turn.owner}):
            return self.watch_seconds
        # Closed first, so a crash here cannot make anyone say it twice.
        if await self.store.end_turn(chat_key, started_at) and turn.chat_id:
            await self._report_interrupted(chat_key, turn)
        return None

    async def adopt(self) -> float:
        """Give every running turn a watch (recorded by a process that stopped before it
        scheduled one, or by an older version); every `watch_seconds`."""
        for chat_key, turn in await self.store.running_turns():
            if turn.owner != self.owner or chat_key not in self._tasks:
                await self._watch(chat_key, turn.started_at, delay=0)
        return self.watch_seconds

    async def _report_interrupted(self, chat_key: str, turn: TurnRecord) -> None:
        ctx = resume(turn.address(chat_key), self.telegram)
        out = ctx.out
        try:
            await out.say("turn_interrupted", request=turn.text_preview)
            if turn.before is not None:
                await self._report_after_drop(ctx, [TrackSummary(**t) for t in turn.before])
        except Exception as err:
            log.info("chat %s: could not report an interrupted turn: %s", chat_key, type(err).__name__)

    async def _guarded(self, ctx: ChatContext, text: str, record: TurnRecord) -> None:
        try:
            await self.run(ctx, text, record)
        except ChatGone as err:
            log.info("chat %s: gone during a turn: %s", ctx.chat.key, err)
        except Exception as err:
            await self._explain_safely(ctx, err)
        finally:
            if not self._handing_over:
                try:
                    await self.store.end_turn(ctx.chat.key, record.started_at)
                except RedisError as err:  # the record expires on its own (TTL)
                    log.warning(
                        "chat %s: could not close the turn record: %s", ctx.chat.key, type(err).__name__
                    )
            # Only now: a quick follow-up waits for this task, and must find the slot free after it.
            if self._tasks.get(ctx.chat.key) is asyncio.current_task():
                del self._tasks[ctx.chat.key]
                self._started.pop(ctx.chat.key, None)

    async def run(self, ctx: ChatContext, text: str, record: TurnRecord) -> None:
        """Send one message to the agent (the turn `record` holds the chat's slot) and show its
        replies as they come."""
        if not await self.flows.ensure_connected(ctx):
            return
        state = await self._state(ctx)  # read first: a silent turn may change the draft at once
        before = tracks(state.draft) if state is not None else None
        if before is not None:  # kept with the turn, so a restarted bot can report what changed
            record.before = [asdict(t) for t in before]
            await self.store.note_turn_timeline(ctx.chat.key, record)
        progress = _Progress()
        ticker = asyncio.create_task(self._tick(ctx, progress))
        ending = Ending.CLOSED
        try:
            if self._live.locked():
                await ctx.out.say("turn_queued")
            async with (
                self._live,  # acquired first: waiting in line does not count toward the turn's limit
                asyncio.timeout(self.timings.max_seconds),
                self.projects.open_turn(ctx.chat, ctx.session_lang, text) as events,
            ):
                async for event in events:
                    await self._show(ctx, event, progress)
        except StreamIdle:
            log.info("chat %s: stream idle, turn ends", ctx.chat.key)
        except TimeoutError:
            ending = Ending.TIMED_OUT
        except StreamDropped as err:
            log.warning("chat %s: stream dropped mid-turn: %s", ctx.chat.key, err.describe())
            ending = Ending.DROPPED
        finally:
            await cancel_and_wait([ticker])
        await self._flush(ctx, progress)
        close = closing(ending, said_anything=bool(progress.texts or progress.errors))
        metrics.TURNS.labels(TURN_OUTCOMES[close]).inc()
        if close is Close.NOTHING:
            await self._offer_actions(ctx, progress)
        if close is Close.SAY_TIMEOUT:
            await ctx.out.say("turn_timeout", minutes=round(self.timings.max_seconds / 60))
        elif close is Close.WATCH_TIMELINE:
            await ctx.out.say("turn_dropped")
            await self._report_after_drop(ctx, before)
        elif close is Close.REPORT_CHANGES:
            await self._report_changes(ctx, before, await self._tracks(ctx))
        if state is not None:
            await self._show_new_media(ctx, state)

    async def _show(self, ctx: ChatContext, event: AgentEvent, progress: _Progress) -> None:
        if event.kind == "text":
            chat_text = to_chat(event.text, ctx.lang)
            if not progress.texts:
                metrics.TURN_FIRST_REPLY_SECONDS.observe(time.time() - progress.asked_at)
            progress.texts += 1
            progress.quiet_since = time.monotonic()
            if ctx.shared and self.timings.merge_seconds > 0:
                # Groups allow 20 messages a minute: replies close together go out as one message.
                if not progress.merged:
                    progress.merged_since = time.monotonic()
                progress.merged.append(chat_text)
            else:
                sent = await ctx.out.send(chat_text.html, buttons=chat_text.buttons)
                _note_reply(progress, sent, chat_text.buttons)
        elif event.kind == "error":
            log.warning("chat %s: agent error event: %s", ctx.chat.key, event.text[:200])
            await ctx.out.say("agent_error", reason=event.text[:200])
            progress.errors += 1

    async def _flush(self, ctx: ChatContext, progress: _Progress) -> None:
        """Send the replies merged so far (taken at once, so the ticker and the end never both do)."""
        merged, progress.merged = progress.merged, []
        if merged:
            buttons = tuple(dict.fromkeys(b for item in merged for b in item.buttons))
            try:
                sent = await ctx.out.send("\n\n".join(item.html for item in merged), buttons=buttons)
                _note_reply(progress, sent, buttons)
            except TelegramError:
                progress.merged[:0] = merged  # kept for the next flush, not lost
                raise

    async def _tick(self, ctx: ChatContext, progress: _Progress) -> None:
        """Typing while the turn runs; "still working" after each quiet interval."""
        while True:
            try:
                await self._ticks(ctx, progress)
            except ChatGone:
                log.info("chat %s: gone during a turn, no more progress notices", ctx.chat.key)
                return
            except TelegramError as err:  # a notice failed; the turn goes on, and so do the notices
                log.warning("chat %s: progress notice failed: %s", ctx.chat.key, type(err).__name__)
                await asyncio.sleep(self.timings.typing_interval)

    async def _ticks(self, ctx: ChatContext, progress: _Progress) -> None:
        step = min(
            self.timings.typing_interval, self.timings.still_working, self.timings.merge_seconds or 1.0
        )
        last_typing = 0.0
        while True:
            now = time.monotonic()
            if now - last_typing >= self.timings.typing_interval:
                await ctx.out.typing()
                last_typing = now
            if progress.merged and now - progress.merged_since >= self.timings.merge_seconds:
                await self._flush(ctx, progress)
            if now - progress.quiet_since >= self.timings.still_working:
                with contextlib.suppress(Thinned):  # under load, the next interval says it
                    await ctx.out.say("still_working", cosmetic=True)
                progress.quiet_since = now
            await asyncio.sleep(step)

    async def _tracks(self, ctx: ChatContext) -> list[TrackSummary] | None:
        state = await self._state(ctx)
        return tracks(state.draft) if state is not None else None

    async def _state(self, ctx: ChatContext) -> ProjectState | None:
        try:
            return await self.projects.state(ctx.chat, ctx.session_lang)
        except Exception as err:
            log.info("chat %s: state unavailable: %s", ctx.chat.key, type(err).__name__)
            return None

    async def _show_new_media(self, ctx: ChatContext, before: ProjectState) -> None:
        """A preview of each image or clip the agent generated during the turn (bot.previews)."""
        after = await self._state(ctx)
        if after is None:
            return
        fresh = new_generated(generated_items(before.generated), generated_items(after.generated))
        await show_generated(ctx.out, fresh)

    async def _report_changes(
        self, ctx: ChatContext, before: list[TrackSummary] | None, after: list[TrackSummary] | None
    ) -> bool:
        """Tell the user what a silent turn changed; True when something changed."""
        changes = describe_changes(before or [], after) if after is not None else []
        if changes:
            await ctx.out.send(
                say(ctx.lang, "turn_changes", changes=bullet_list(changes)),
                buttons=reply_actions(("export",)),
            )
            return True
        await ctx.out.say("turn_no_changes", buttons=("status",))
        return False

    async def _report_after_drop(self, ctx: ChatContext, before: list[TrackSummary] | None) -> None:
        """Watch the timeline a few times after a dropped stream, and report the first change."""
        for _ in range(self.timings.dropped_polls):
            await asyncio.sleep(self.timings.dropped_poll_seconds)
            after = await self._tracks(ctx)
            if after is not None and describe_changes(before or [], after):
                await self._report_changes(ctx, before, after)
                return
        await ctx.out.say("turn_no_changes", buttons=("status",))

    async def _offer_actions(self, ctx: ChatContext, progress: _Progress) -> None:
        """The quick actions under the turn's last reply, known only once the stream has ended."""
        if progress.last_reply is None:
            return
        message_id, buttons = progress.last_reply
        try:
            await ctx.out.set_buttons(message_id, reply_actions(buttons))
        except TelegramError as err:  # the reply itself arrived: buttons are not worth an error message
            log.info("chat %s: quick actions not offered: %s", ctx.chat.key, type(err).__name__)

    async def _explain_safely(self, ctx: ChatContext, err: Exception) -> None:
        try:
            await self.flows.explain(ctx, err)
        except Exception:
            log.exception("chat %s: could not report a failure", ctx.chat.key)


def _note_reply(progress: _Progress, sent: Message | None, buttons: tuple[str, ...]) -> None:
    if sent is not None:
        progress.last_reply = (sent.message_id, buttons)
