"""A turn's reply as the chat sees it while the agent writes it: one message, edited as text comes.

The first text of a reply is sent at once (in groups after `GROUP_MERGE_SECONDS`, so replies close
together still go out as one message) with a Stop button under it; then the message is edited as
more text arrives, at most once per interval (`LIVE_EDIT_SECONDS`, in groups
`LIVE_GROUP_EDIT_SECONDS`). Those edits are cosmetic: under load the flood limiter drops them and a
later edit shows the same text. The reply ends with one last edit that is an answer: the final
text with its buttons, the Stop button gone. Past 4096 characters the reply goes on in a new
message, and the one before keeps its part.

The agent is read at its own pace: `add` and `delta` only change the reply's state and wake the
turn's ticker, which shows it (`refresh`); nothing the stream reader does waits for Telegram. Each
update waits for its slot first and is built once it has one (`ChatOutput.reserved`), so under
load what goes out is the chat's latest state, once: a reply that ended while its first message
waited goes out whole, with its buttons, in one request (`closing` says so to an update waiting).

The text of a streamed reply is taken from its whole (`partial: false`) event, never from the
deltas before it, so nothing is shown twice. Whatever else the bot says during the turn (an
agent error) closes the current message first, and text after it starts a new one below.

Wherever Telegram refuses an edit (anything but "message is not modified"), the reply falls back
to plain messages for the rest of the turn: the refused message is deleted (it may show a stale
part) and its text goes out again, so nothing shown is lost and nothing stays doubled.

Why one module of this length: the pure plan (`plan`, `due`, `messages`) and the reply that follows
it are read together; the plan is tested alone (tests/test_decisions.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from telegram.error import NetworkError, RetryAfter

from bot.core.actions import Action
from bot.core.agent_text import ChatText, reply_actions, split_html, to_chat
from bot.core.texts import Lang
from bot.telegram.flood import Thinned
from bot.telegram.output import ChatOutput

log = logging.getLogger(__name__)


Wanted = tuple[str, tuple[str, ...]]  # one message: its HTML and the buttons under it


class Change(enum.Enum):
    """What one message of the reply needs."""

    KEEP = "it already shows that"
    EDIT = "edit it"
    SEND = "send it"
    DROP = "delete it: the reply no longer needs it"


def plan(shown: Sequence[Wanted], wanted: Sequence[Wanted]) -> list[Change]:
    """The steps, message by message, from what the chat shows to what it should show (pure)."""
    steps = [
        Change.SEND if index >= len(shown) else Change.KEEP if shown[index] == want else Change.EDIT
        for index, want in enumerate(wanted)
    ]
    return steps + [Change.DROP] * max(0, len(shown) - len(wanted))


def messages(html: str, buttons: tuple[str, ...]) -> list[Wanted]:
    """A reply's HTML as Telegram messages: split at 4096 characters, buttons under the last (pure)."""
    parts = split_html(html)
    return [(part, buttons if index == len(parts) - 1 else ()) for index, part in enumerate(parts)]


def due(now: float, *, since: float | None, first_delay: float, pushed_at: float, interval: float) -> bool:
    """Whether the live reply may be shown again now (pure): its first text after `first_delay`,
    every later change once `interval` has passed since the last time the chat was updated."""
    if since is None:  # nothing new to show
        return False
    if now - since < first_delay:
        return False
    return now - pushed_at >= interval


@dataclass(frozen=True)
class Shown:
    """One message of the reply as the chat shows it now."""

    message_id: int
    html: str
    buttons: tuple[str, ...] = ()

    @property
    def look(self) -> Wanted:
        return (self.html, self.buttons)


class LiveReply:
    """The running turn's reply in one chat (see the module). One per turn.

    `interval` None: no edits while the turn runs; each reply goes out whole, merged with those
    within `first_delay` (groups with live edits switched off)."""

    def __init__(
        self,
        out: ChatOutput,
        lang: Lang,
        *,
        interval: float | None,
        first_delay: float = 0.0,
        settle: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.out = out
        self.lang = lang
        self.interval = interval
        self.first_delay = first_delay
        self.settle = settle  # the last edit waits at most this long for the interval to pass
        self._clock = clock
        self._done: list[ChatText] = []  # this message's whole replies
        self._partial = ""  # the reply being streamed, as its deltas say so far
        self._footer = ""  # "still working", under the text until more text comes
        self._shown: list[Shown] = []  # this message (and its continuations), as the chat shows them
        self._since: float | None = None  # when the text not yet shown began to wait; None: nothing new
        self._has_text = False  # the chat shows some of this message's text (not just "still working")
        self._pushed_at = -math.inf  # when the chat was last updated
        self._plain = False  # an edit was refused: plain messages for the rest of the turn
        self._actions = False  # the final edit adds the quick actions (the turn's last words)
        self._lock = asyncio.Lock()  # one update of the chat at a time
        self._wake = asyncio.Event()  # set when there is something new to show
        self._closing = False  # the stream has ended: an update still waiting shows the final reply
        self._version = 0  # changes so far: an update only clears what it showed
        self.texts = 0  # replies shown (or sent), for "did the agent say anything"

    @property
    def plain(self) -> bool:
        return self._plain

    @property
    def started(self) -> bool:
        """Whether the agent has begun its reply: shown, or on its way to the chat."""
        return self._has_text or self.texts > 0 or bool(self._done) or bool(self._partial.strip())

    @property
    def patience(self) -> float:
        """How long cosmetic traffic about this reply (its final reaction) waits before trying again."""
        return self.interval or self.tick

    @property
    def tick(self) -> float:
        """How often the turn's ticker should look for text to show."""
        return min((x for x in (self.interval, self.first_delay) if x), default=1.0)

    # -- what the agent says ---------------------------------------------------------------------

    async def add(self, text: str) -> None:
        """A whole reply: the truth, which replaces the deltas streamed before it."""
        self._partial, self._footer = "", ""
        self.texts += 1
        chat_text = to_chat(text, self.lang)
        if self._plain:
            await self.out.send(chat_text.html, buttons=chat_text.buttons)
            return
        self._done.append(chat_text)
        self._changed()

    async def delta(self, text: str) -> None:
        """A streamed piece of the reply being written (shown live, replaced by the whole reply)."""
        self._partial += text
        if not self._plain and text.strip():
            self._footer = ""
            self._changed()

    def drop(self) -> None:
        """A whole reply that is not to be shown: the deltas streamed for it go too."""
        if self._partial.strip():
            self._changed()
        self._partial = ""

    async def tool(self) -> None:
        """Tool traffic: a streamed reply whose whole version never came is taken as it stands."""
        partial, self._partial = self._partial, ""
        if partial.strip():
            await self.add(partial)

    async def notice(self, html: str) -> None:
        """ "Still working": under the reply's text, or (before any text) a message of its own with
        the Stop button, which the reply's first text then replaces. Cosmetic."""
        with contextlib.suppress(Thinned):
            if self._plain:
                await self.out.send(html, cosmetic=True)
            elif self._done or self._partial.strip() or self._has_text:
                self._footer = html
                self._changed()
            elif not self._shown and not self._lock.locked():
                async with self._lock:  # noted before anything can cut it short (see `held`)
                    message = await self.out.send(html, buttons=(Action.STOP,), cosmetic=True)
                    if message is not None:
                        self._shown = [Shown(message.message_id, html, (Action.STOP,))]

    # -- showing it --------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Show what is new if it is due; skipped while another update is on its way."""
        if self._plain or self._lock.locked() or not self._due():
            return
        async with self._lock:
            if self.interval is None:  # no edits: this message goes whole, and the next is a new one
                await self._push(final=True)
                self._next_message()
            else:
                await self._push(final=False)

    async def wait(self, seconds: float) -> None:
        """Until there is something new to show, or `seconds` (the ticker's pace)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    def closing(self, *, actions: bool = False) -> None:
        """The stream has ended: an update waiting for its slot now shows the final reply (with
        `actions`, the quick actions), so `seal` has nothing left to send."""
        self._closing, self._actions = True, actions

    async def seal(self, *, actions: bool = False) -> None:
        """Finish the current message: its final text and buttons, Stop gone; with `actions` (the
        turn's last words), the quick actions too. Text that comes after starts a new message (below
        whatever the bot says in between)."""
        self.closing(actions=actions)
        async with self._lock:
            if self._partial.strip():  # a streamed reply whose whole never came: shown as it stands
                self.texts += 1
            if not self._plain:
                if self._shown and self.interval is not None and self.settle > 0:
                    # the last edit keeps the cadence too, waiting at most `settle`
                    wait = min(self.settle, self._pushed_at + self.interval - self._clock())
                    if wait > 0:
                        await asyncio.sleep(wait)
                await self._push(final=True)
            if self._plain and self._partial.strip():
                chat_text = to_chat(self._partial, self.lang)
                await self.out.send(chat_text.html, buttons=chat_text.buttons)
            self._next_message()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """No update of the chat starts meanwhile, and none is cut half-way (a message sent to
        Telegram but not yet noted here would be sent twice)."""
        async with self._lock:
            yield

    def _due(self) -> bool:
        first_delay = 0.0 if self._has_text else self.first_delay
        interval = (self.interval or 0.0) if self._has_text else 0.0
        return due(
            self._clock(),
            since=self._since,
            first_delay=first_delay,
            pushed_at=self._pushed_at,
            interval=interval,
        )

    def _changed(self) -> None:
        if self._since is None:
            self._since = self._clock()
        self._version += 1
        self._wake.set()

    def _html(self, final: bool) -> str:
        pieces = [item.html for item in self._done]
        if self._partial.strip():
            pieces.append(to_chat(self._partial, self.lang).html)
        if self._footer and not final:
            pieces.append(self._footer)
        return "\n\n".join(pieces)

    def _buttons(self) -> tuple[str, ...]:
        items = [*self._done, to_chat(self._partial, self.lang)] if self._partial.strip() else self._done
        return tuple(dict.fromkeys(button for item in items for button in item.buttons))

    def _wanted(self, final: bool) -> list[Wanted]:
        html = self._html(final)
        if (
            not html.strip()
        ):  # no text (yet): a "still working" message keeps its text, and loses Stop at the end
            return [(shown.html, () if final else shown.buttons) for shown in self._shown]
        if not final:
            return messages(html, (Action.STOP,))
        return messages(html, reply_actions(self._buttons()) if self._actions else self._buttons())

    async def _push(self, *, final: bool) -> None:
        """Bring the chat up to date. Not final: cosmetic edits (dropped under load, shown later).
        The first request waits for its slot before the update is built (see the module)."""
        first = self._first_request(final)
        if first is None:
            await self._apply(final=final)
            return
        edit, cosmetic = first
        try:
            async with self.out.reserved(edit=edit, cosmetic=cosmetic):
                await self._apply(final=final or self._closing)
        except Thinned:  # a cosmetic edit with no room now: the change stays pending
            log.debug("chat %s: live edit skipped under load", self.out.chat_id)

    def _first_request(self, final: bool) -> tuple[bool, bool] | None:
        """The first request an update needs: whether it edits, whether it is cosmetic; None if none."""
        wanted = self._wanted(final)
        for index, step in enumerate(plan([shown.look for shown in self._shown], wanted)):
            if step is Change.SEND:
                return False, False
            if step is Change.EDIT:
                return True, not final and self._has_text and index == len(wanted) - 1
            if step is Change.DROP:
                return True, False
        return None

    async def _apply(self, *, final: bool) -> None:
        shown_version = self._version
        wanted = self._wanted(final)
        steps = plan([shown.look for shown in self._shown], wanted)
        kept: list[Shown] = []
        updated = False
        for index, step in enumerate(steps):
            if step is Change.DROP:
                await self.out.delete(self._shown[index].message_id)
                updated = True
                continue
            html, buttons = wanted[index]
            if step is Change.KEEP:
                kept.append(self._shown[index])
            elif step is Change.SEND:
                message = await self.out.send(html, buttons=buttons)
                if message is None:
                    break
                kept.append(Shown(message.message_id, html, buttons))
                updated = True
            else:
                current = self._shown[index]
                # The live end of the reply, once its first text is out (which is an answer).
                cosmetic = not final and self._has_text and index == len(wanted) - 1
                try:
                    edited = await self.out.edit(current.message_id, html, buttons=buttons, cosmetic=cosmetic)
                except (Thinned, RetryAfter, NetworkError) as err:
                    if not cosmetic:
                        raise
                    log.debug("chat %s: live edit skipped: %s", self.out.chat_id, type(err).__name__)
                    self._shown = kept + self._shown[index:]
                    self._touched(updated)
                    return
                if not edited:
                    self._shown = kept + self._shown[index:]
                    await self._fall_back(index)
                    return
                kept.append(Shown(current.message_id, html, buttons))
                updated = True
        self._shown = kept
        self._touched(updated)
        if self._done or self._partial.strip():
            self._has_text = True
        if self._version == shown_version:  # else what changed meanwhile is still to show
            self._since = None

    def _touched(self, updated: bool) -> None:
        if updated:
            self._pushed_at = self._clock()

    async def _fall_back(self, index: int) -> None:
        """Telegram refused to edit message `index`: plain messages from now on, as before live
        replies. The refused message is deleted (it may show a stale part of the text) and its whole
        text, with all after it, is sent anew; the deltas of a reply still being written wait for
        its whole version."""
        self._plain = True
        log.info("chat %s: an edit was refused, plain messages for the rest of the turn", self.out.chat_id)
        for shown in self._shown[index:]:
            await self.out.delete(shown.message_id)
        done = "\n\n".join(item.html for item in self._done)
        buttons = tuple(dict.fromkeys(button for item in self._done for button in item.buttons))
        for html, markup in messages(done, buttons)[index:]:
            await self.out.send(html, buttons=markup)
        self._shown = self._shown[:index]
        self._done = []

    def _next_message(self) -> None:
        self._done, self._partial, self._footer, self._shown = [], "", "", []
        self._since, self._has_text, self._closing = None, False, False
