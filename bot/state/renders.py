"""A render in Redis: its record, the state machine it moves through, and the moves themselves,
each a compare-and-set (two replicas polling one render never both deliver it)."""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass, field

from bot.state.base import Section, as_text, decode, encode
from bot.state.chats import ChatAddress


class RenderState(enum.StrEnum):
    """Where a render is, from its record before the backend has it to its delivery."""

    STARTING = "starting"  # recorded, the backend not yet asked (or not yet answered)
    PENDING = "pending"  # queued on the backend
    PROCESSING = "processing"
    COMPLETED = "completed"  # the video exists; not yet sent
    DELIVERING = "delivering"  # being sent: a cut delivery is followed by the link, never a resend
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"  # unfinished after RENDER_MAX_SECONDS
    UNDELIVERABLE = "undeliverable"  # the chat is gone, or Telegram kept refusing the delivery

    @classmethod
    def of_backend(cls, status: str) -> RenderState:
        """A backend status word as a state (an unfinished word it may add later counts as pending)."""
        known = {"processing": cls.PROCESSING, "completed": cls.COMPLETED, "failed": cls.FAILED}
        return known.get(status, cls.PENDING)


UNFINISHED = frozenset({RenderState.STARTING, RenderState.PENDING, RenderState.PROCESSING})
FINISHED = frozenset(
    {RenderState.DELIVERED, RenderState.FAILED, RenderState.EXPIRED, RenderState.UNDELIVERABLE}
)
# The allowed moves (a state may also stay, with new progress or attempts).
MOVES: dict[RenderState, frozenset[RenderState]] = {
    **{
        state: UNFINISHED
        | {RenderState.COMPLETED, RenderState.FAILED, RenderState.EXPIRED, RenderState.UNDELIVERABLE}
        for state in UNFINISHED
    },
    RenderState.COMPLETED: frozenset(
        {RenderState.COMPLETED, RenderState.DELIVERING, RenderState.DELIVERED, RenderState.UNDELIVERABLE}
    ),
    RenderState.DELIVERING: frozenset(
        {RenderState.DELIVERING, RenderState.DELIVERED, RenderState.UNDELIVERABLE}
    ),
    **{state: frozenset() for state in FINISHED},
}


def may_move(current: RenderState, to: RenderState) -> bool:
    """Whether a render may go from `current` to `to` (pure): never back from a video to a render
    in progress, never out of a finished state."""
    return to in MOVES[current]


class InvalidMove(Exception):
    """A render was asked to make a move its state does not allow (a bug, not a user error)."""


@dataclass
class RenderRecord:
    render_id: str
    chat_key: str
    chat_id: int
    session_id: str
    task_id: str = ""  # the project's task on the backend: its browser (claim) link needs both ids
    language: str = "en"  # the reply language
    session_language: str = "en"  # the agent session's language, to reconnect if needed
    thread_id: int | None = None
    progress_message_id: int | None = None
    started_at: float = field(default_factory=time.time)
    status: RenderState = RenderState.STARTING
    progress: int = 0
    url: str = ""
    delivery_attempts: int = 0
    size: int | None = None  # the MP4's size in bytes, as the backend gave it
    file_id: str = ""  # Telegram's id of the video once sent: sending it again uploads nothing
    draft_digest: str = ""  # which draft was rendered (`draft_digest`), to tell an unchanged one

    def __post_init__(self) -> None:
        if not isinstance(self.status, RenderState):  # read back from JSON, or an older record
            try:
                self.status = RenderState(self.status)
            except ValueError:
                self.status = RenderState.PENDING

    @property
    def address(self) -> ChatAddress:
        return ChatAddress(self.chat_id, self.thread_id, self.chat_key, self.language, self.session_language)


# KEYS: the render, the active set, the chat's render pointer; ARGV: the state the caller read,
# the new record, its retention when finished (else 0), the render id.
MOVE_RENDER = """
local raw = redis.call('GET', KEYS[1])
if not raw or cjson.decode(raw)['status'] ~= ARGV[1] then
    return 0
end
local keep = tonumber(ARGV[3])
if keep > 0 then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', keep)
    redis.call('SREM', KEYS[2], ARGV[4])
    if redis.call('GET', KEYS[3]) == ARGV[4] then
        redis.call('DEL', KEYS[3])
    end
else
    redis.call('SET', KEYS[1], ARGV[2])
end
return 1
"""


class Renders(Section):
    async def add_render(self, render: RenderRecord) -> bool:
        """Record a render before it starts; False when the chat already has one in flight.

        The record is written first, then the chat's pointer claimed: a double-tapped Export finds
        the first render's record behind the pointer and backs off.
        """
        pointer = self.keys.chat_render(render.chat_key)
        await self.redis.set(self.keys.render(render.render_id), encode(asdict(render)))
        if not await self.redis.set(pointer, render.render_id, nx=True):
            current = await self.redis.get(pointer)
            current_record = await self.get_render(as_text(current)) if current else None
            if current_record is not None and current_record.status not in FINISHED:
                await self.redis.delete(self.keys.render(render.render_id))
                return False
            await self.redis.set(pointer, render.render_id)  # left by a render that has ended
        await self.redis.sadd(self.keys.active_renders(), render.render_id)
        return True

    async def chat_render(self, chat_key: str) -> RenderRecord | None:
        render_id = await self.redis.get(self.keys.chat_render(chat_key))
        return await self.get_render(as_text(render_id)) if render_id else None

    async def get_render(self, render_id: str) -> RenderRecord | None:
        raw = await self.redis.get(self.keys.render(render_id))
        return decode(RenderRecord, raw) if raw else None

    async def note_delivered(self, render: RenderRecord) -> None:
        """Remember the render as the chat's last video (kept as long as its record)."""
        await self.redis.set(
            self.keys.chat_video(render.chat_key), render.render_id, ex=self.retention.finished_render
        )

    async def last_delivered(self, chat_key: str) -> RenderRecord | None:
        """The chat's last delivered render, or None (none yet, or forgotten)."""
        render_id = await self.redis.get(self.keys.chat_video(chat_key))
        record = await self.get_render(as_text(render_id)) if render_id else None
        return record if record is not None and record.status is RenderState.DELIVERED else None

    async def active_renders(self) -> list[str]:
        return sorted(as_text(item) for item in await self.redis.smembers(self.keys.active_renders()))

    async def move_render(self, render: RenderRecord, to: RenderState) -> bool:
        """Move a render to `to`, saving the record with it: only if the move is allowed and Redis
        still holds the render in the state this record was read in (compare and set, one script).
        A finished render leaves the active set and its chat. False: another process moved it."""
        if not may_move(render.status, to):
            raise InvalidMove(f"render {render.render_id}: {render.status} -> {to}")
        expected, render.status = render.status, to
        moved = await self._script(MOVE_RENDER)(
            client=self.redis,
            keys=[
                self.keys.render(render.render_id),
                self.keys.active_renders(),
                self.keys.chat_render(render.chat_key),
            ],
            args=[
                expected,
                encode(asdict(render)),
                self.retention.finished_render if to in FINISHED else 0,
                render.render_id,
            ],
        )
        if not moved:
            render.status = expected
        return bool(moved)

    async def forget_render(self, render_id: str) -> None:
        """Take a render off the active set (its record is gone, or it has ended)."""
        await self.redis.srem(self.keys.active_renders(), render_id)
