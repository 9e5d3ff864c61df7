"""One chat turn with the agent: stream its replies into the chat, one turn at a time per project.

A turn is recorded in Redis while it runs, so a second message is answered with "wait or /cancel"
(and a restarted bot knows a turn was cut off). The stream is never resent: when it drops, the
bot watches the timeline instead and reports what changed.

The reply is shown as it is written (`bot.telegram.live`), with a Stop button under it; the user's message
gets a 👀 reaction while the turn runs (when the agent has not begun its reply within a live-edit interval),
then 👍 when it ends well or 👎 when it fails or is stopped
(Telegram lets bots react only with its standard set, which has neither ✅ nor ❌).

Why one module of this length: the turn's slot, its stream, its live reply, its reactions and its
hand-over to another replica all act on the same running task and record.
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
from telegram.error import TelegramError

from bot.chat.kit import ChatContext, Kit, resume
from bot.chat.projects import Projects
from bot.core import metrics
from bot.core.actions import Action
from bot.core.agent_text import reply_actions, temporary_issue
from bot.core.aio import cancel_and_wait
from bot.core.texts import bullet_list, say
from bot.core.timeline import TrackSummary, describe_changes, tracks
from bot.nemo.client import ProjectState
from bot.nemo.errors import StreamDropped, StreamIdle
from bot.nemo.sse import AgentEvent
from bot.state.store import Store
from bot.state.turns import TurnRecord
from bot.telegram.flood import Thinned
from bot.telegram.live import LiveReply
from bot.telegram.output import ChatGone, Telegram
from bot.telegram.previews import generated_items, new_generated, show_generated
from bot.work.jobs import JobKind, Jobs

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
    live_edit: float = 1.0  # private chats: the live reply edited at most this often
    live_group_edit: float = 6.0  # groups; 0: no live edits, each reply goes out whole
    reactions: bool = True  # 👀, then 👍 or 👎, on the user's message


WORKING = "👀"  # the reaction while a turn runs
WELL = "👍"  # ... when it ended well
BADLY = "👎"  # ... when it failed or was stopped
# A final reaction dropped under load (it is cosmetic) is tried again, one live-edit interval apart:
# 10 tries outlast the chat's window (3 s) and, at the default 6 s in groups, the group's minute, so
# the 👀 does not stay behind.
REACTION_TRIES = 10


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


def ended_well(close: Close | None, *, errors: int) -> bool:
    """Whether the request's reaction says done (pure): the agent answered, or a silent turn was
    reported, without an agent error. None: the turn failed before it could close."""
    return close in (Close.NOTHING, Close.REPORT_CHANGES) and not errors


@dataclass
class _Progress:
    errors: int = 0
    quiet_since: float = field(default_factory=time.monotonic)  # last text or "still working" notice
    asked_at: float = field(default_factory=time.time)
    answered: bool = False  # the first text (or delta) came
    held: str = ""  # a "temporary issue" after normal replies: shown only if the agent goes on


class Turns:
    def __init__(
        self,
        kit: Kit,
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
        jobs.register(JobKind.TURN, self.watch)
        jobs.register(JobKind.ADOPT_TURNS, self.adopt)
        self.kit = kit
        self.projects = projects
        self.store = store
        self.timings = timings
        self.telegram = telegram
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._started: dict[str, float] = {}  # each running turn's record, by its start
        self._live = asyncio.Semaphore(timings.max_live)  # one backend stream each
        self._handing_over = False  # set at shutdown: cut turns stay recorded for the next process
        self._cleanups: dict[str, asyncio.Task[None]] = {}  # after a cancel: Stop removed, 👎
        self._reacting: set[asyncio.Task[None]] = set()  # reactions on their way

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
            request_id=ctx.message_id,
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
        cleanup = self._cleanups.get(ctx.chat.key)
        if cleanup is not None:  # the reply loses its Stop button before the chat hears "stopped"
            await asyncio.wait({cleanup})
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
        if self._cleanups and grace > 0:  # cut replies lose their Stop button while the bot can still send
            await asyncio.wait(set(self._cleanups.values()), timeout=grace)
        await cancel_and_wait(list(self._cleanups.values()))
        await cancel_and_wait(list(self._reacting))

    async def _watch(self, chat_key: str, started_at: float, delay: float | None = None) -> None:
        await self.jobs.schedule(
            JobKind.TURN,
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
            if self.timings.reactions and turn.request_id is not None:  # its 👀 would stay for good
                with contextlib.suppress(Thinned):
                    await out.react(turn.request_id, BADLY)
            if turn.before is not None:
                await self._report_after_drop(ctx, [TrackSummary(**t) for t in turn.before])
        except Exception as err:
            log.info("chat %s: could not report an interrupted turn: %s", chat_key, type(err).__name__)

    async def _guarded(self, ctx: ChatContext, text: str, record: TurnRecord) -> None:
        live = self._live_reply(ctx)
        seen = self._react(ctx, WORKING, unless_started=live)
        well = False
        try:
            well = await self.run(ctx, text, record, live)
        except asyncio.CancelledError:
            self._after_cancel(ctx, live, seen)
            raise
        except ChatGone as err:
            log.info("chat %s: gone during a turn: %s", ctx.chat.key, err)
        except Exception as err:
            await self._seal_safely(ctx, live)
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
        # Not reached when cancelled: that has its own ending (_after_cancel).
        self._react(ctx, WELL if well else BADLY, after=seen, patience=live.patience)

    def _live_reply(self, ctx: ChatContext) -> LiveReply:
        """Private chats: edited about once a LIVE_EDIT_SECONDS; groups: merged for
        GROUP_MERGE_SECONDS, then edited at most once a LIVE_GROUP_EDIT_SECONDS (20 a minute)."""
        timings = self.timings
        if ctx.shared:
            interval = timings.live_group_edit or None
            return LiveReply(
                ctx.out,
                ctx.lang,
                interval=interval,
                first_delay=timings.merge_seconds,
                settle=timings.live_edit,
            )
        return LiveReply(ctx.out, ctx.lang, interval=timings.live_edit, settle=timings.live_edit)

    def _after_cancel(self, ctx: ChatContext, live: LiveReply, seen: asyncio.Task[None] | None) -> None:
        """A stopped turn (Stop, /cancel here or on another replica, or a hand-over): its reply keeps
        its text and loses the Stop button, and the request gets 👎 (not at a hand-over: the next
        process reports the turn). In a task of its own: the turn's task is being cancelled."""

        async def clean_up() -> None:
            await self._seal_safely(ctx, live)
            if not self._handing_over:
                self._react(ctx, BADLY, after=seen, patience=live.patience)

        def forget(done: asyncio.Task[None]) -> None:
            if self._cleanups.get(ctx.chat.key) is done:
                del self._cleanups[ctx.chat.key]

        task = asyncio.create_task(clean_up(), name=f"stopped turn {ctx.chat.key}")
        self._cleanups[ctx.chat.key] = task
        task.add_done_callback(forget)

    async def _seal_safely(self, ctx: ChatContext, live: LiveReply) -> None:
        try:
            await live.seal()
        except Exception as err:
            log.info("chat %s: the reply could not be finished: %s", ctx.chat.key, type(err).__name__)

    def _react(
        self,
        ctx: ChatContext,
        emoji: str,
        *,
        after: asyncio.Task[None] | None = None,
        patience: float = 0.0,
        unless_started: LiveReply | None = None,
    ) -> asyncio.Task[None] | None:
        """Set the bot's reaction on the user's message, in the background (cosmetic: it never
        holds up the answer, and a refusal never affects it). With `patience`, one dropped under
        load is tried again that many seconds apart (REACTION_TRIES in all). With `unless_started`
        (the 👀), it waits one live-edit interval and goes, once, only if the agent has not begun
        that reply: a reply being written says "working" already, and under load a thousand 👀
        at the start of a thousand turns would take the slots of their first words."""
        if not self.timings.reactions or ctx.message_id is None:
            return None
        if unless_started is not None:
            task = asyncio.create_task(self._working(ctx, ctx.message_id, unless_started))
        else:
            tries = REACTION_TRIES if patience > 0 else 1
            task = asyncio.create_task(self._reaction(ctx, ctx.message_id, emoji, after, tries, patience))
        self._reacting.add(task)
        task.add_done_callback(self._reacting.discard)
        return task

    async def _working(self, ctx: ChatContext, message_id: int, live: LiveReply) -> None:
        await asyncio.sleep(live.patience)
        if not live.started:
            await self._reaction(ctx, message_id, WORKING, None, 1, 0.0)

    async def _reaction(
        self,
        ctx: ChatContext,
        message_id: int,
        emoji: str,
        after: asyncio.Task[None] | None,
        tries: int,
        patience: float,
    ) -> None:
        if after is not None:  # 👀 first, then the outcome; a 👀 still held back is no longer wanted
            after.cancel()
            await asyncio.wait({after})
        for attempt in range(1, tries + 1):
            try:
                await ctx.out.react(message_id, emoji)
                return
            except Thinned:
                if attempt < tries:
                    await asyncio.sleep(patience)
            except Exception as err:  # never the answer's business
                log.debug("chat %s: reaction failed: %s", ctx.chat.key, type(err).__name__)
                return

    async def run(self, ctx: ChatContext, text: str, record: TurnRecord, live: LiveReply) -> bool:
        """Send one message to the agent (the turn `record` holds the chat's slot) and show its
        replies as they come; True when it ended well."""
        if not await self.kit.ensure_connected(ctx):
            return False
        state = await self._state(ctx)  # read first: a silent turn may change the draft at once
        before = tracks(state.draft) if state is not None else None
        if before is not None:  # kept with the turn, so a restarted bot can report what changed
            record.before = [asdict(t) for t in before]
            await self.store.note_turn_timeline(ctx.chat.key, record)
        progress = _Progress()
        ticker = asyncio.create_task(self._tick(ctx, progress, live))
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
                    await self._show(ctx, event, progress, live)
        except StreamIdle:
            log.info("chat %s: stream idle, turn ends", ctx.chat.key)
        except TimeoutError:
            ending = Ending.TIMED_OUT
        except StreamDropped as err:
            log.warning("chat %s: stream dropped mid-turn: %s", ctx.chat.key, err.describe())
            ending = Ending.DROPPED
        finally:
            # The agent's last words get the quick actions, unless the turn was cut or went wrong;
            # an update of the chat still waiting for its slot shows them, whole.
            actions = ending is Ending.CLOSED and not progress.errors
            live.closing(actions=actions)
            async with live.held():  # the ticker is never cut half-way through showing the reply
                await cancel_and_wait([ticker])
        await live.seal(actions=actions)
        close = closing(ending, said_anything=bool(live.texts or progress.errors))
        metrics.TURNS.labels(TURN_OUTCOMES[close]).inc()
        after: ProjectState | None = None  # the state once the turn is over: read once for both uses
        if close is Close.SAY_TIMEOUT:
            await ctx.out.say("turn_timeout", minutes=round(self.timings.max_seconds / 60))
        elif close is Close.WATCH_TIMELINE:
            await ctx.out.say("turn_dropped")
            await self._report_after_drop(ctx, before)
        elif close is Close.REPORT_CHANGES:
            after = await self._state(ctx)
            await self._report_changes(ctx, before, tracks(after.draft) if after is not None else None)
        if state is not None:
            await self._show_new_media(ctx, state, after or await self._state(ctx))
        return ended_well(close, errors=progress.errors)

    async def _show(self, ctx: ChatContext, event: AgentEvent, progress: _Progress, live: LiveReply) -> None:
        if event.kind in ("text", "partial"):
            if not progress.answered:
                progress.answered = True
                metrics.TURN_FIRST_REPLY_SECONDS.observe(time.time() - progress.asked_at)
            progress.quiet_since = time.monotonic()
            if event.kind == "text" and temporary_issue(event.text) and live.texts and not progress.errors:
                # The skill: a trailing "I encountered a temporary issue" after normal replies is
                # noise. Held back, and shown only if more replies follow it.
                progress.held = event.text
                live.drop()
                return
            if progress.held:
                held, progress.held = progress.held, ""
                await live.add(held)
            if event.kind == "text":
                await live.add(event.text)
            else:
                await live.delta(event.text)
        elif event.kind == "tool":
            await live.tool()
        elif event.kind == "error":
            log.warning("chat %s: agent error event: %s", ctx.chat.key, event.text[:200])
            await live.seal()  # the reply so far stays above the error
            await ctx.out.say("agent_error", reason=event.text[:200])
            progress.errors += 1

    async def _tick(self, ctx: ChatContext, progress: _Progress, live: LiveReply) -> None:
        """Typing while the turn runs, the live reply shown when due; "still working" after each
        quiet interval."""
        while True:
            try:
                await self._ticks(ctx, progress, live)
            except ChatGone:
                log.info("chat %s: gone during a turn, no more progress notices", ctx.chat.key)
                return
            except TelegramError as err:  # a notice failed; the turn goes on, and so do the notices
                log.warning("chat %s: progress notice failed: %s", ctx.chat.key, type(err).__name__)
                await asyncio.sleep(self.timings.typing_interval)

    async def _ticks(self, ctx: ChatContext, progress: _Progress, live: LiveReply) -> None:
        step = min(self.timings.typing_interval, self.timings.still_working, live.tick)
        last_typing = 0.0
        while True:
            now = time.monotonic()
            if now - last_typing >= self.timings.typing_interval:
                await ctx.out.typing()
                last_typing = now
            await live.refresh()
            if now - progress.quiet_since >= self.timings.still_working:
                await live.notice(say(ctx.lang, "still_working"))  # under load, the next interval says it
                progress.quiet_since = now
            await live.wait(step)  # woken at once by new text

    async def _tracks(self, ctx: ChatContext) -> list[TrackSummary] | None:
        state = await self._state(ctx)
        return tracks(state.draft) if state is not None else None

    async def _state(self, ctx: ChatContext) -> ProjectState | None:
        try:
            return await self.projects.state(ctx.chat, ctx.session_lang)
        except Exception as err:
            log.info("chat %s: state unavailable: %s", ctx.chat.key, type(err).__name__)
            return None

    async def _show_new_media(
        self, ctx: ChatContext, before: ProjectState, after: ProjectState | None
    ) -> None:
        """A preview of each image or clip the agent generated during the turn (bot.telegram.previews)."""
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
                buttons=reply_actions((Action.EXPORT,)),
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

    async def _explain_safely(self, ctx: ChatContext, err: Exception) -> None:
        try:
            await self.kit.explain(ctx, err)
        except Exception:
            log.exception("chat %s: could not report a failure", ctx.chat.key)
