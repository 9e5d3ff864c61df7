"""The Redis store: per-chat project state, the running turn, and renders in flight.

Redis is the one place state lives. Every key is built by `Keys`, under a namespace of the bot's
own id, so two bots can share one Redis. Tokens expire with their token; the chat record lives
`chat_ttl` past its last use.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import WatchError

from bot.core.accounts import Link

T = TypeVar("T")


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


@dataclass(frozen=True)
class Keys:
    namespace: str

    def chat(self, chat_key: str) -> str:
        return f"{self.namespace}:chat:{chat_key}"

    def token(self, chat_key: str) -> str:
        return f"{self.namespace}:token:{chat_key}"

    def turn(self, chat_key: str) -> str:
        return f"{self.namespace}:turn:{chat_key}"

    def render(self, render_id: str) -> str:
        return f"{self.namespace}:render:{render_id}"

    def active_renders(self) -> str:
        return f"{self.namespace}:renders:active"

    def chat_render(self, chat_key: str) -> str:
        return f"{self.namespace}:chat-render:{chat_key}"

    def chat_video(self, chat_key: str) -> str:
        return f"{self.namespace}:chat-video:{chat_key}"

    def update_seen(self, update_id: int) -> str:
        return f"{self.namespace}:update:{update_id}"

    def inbox(self) -> str:
        return f"{self.namespace}:inbox"

    def inbox_recorded(self, update_id: int) -> str:
        return f"{self.namespace}:inbox-recorded:{update_id}"

    def replica(self, replica_id: str) -> str:
        return f"{self.namespace}:replica:{replica_id}"

    def pending_uploads(self) -> str:
        return f"{self.namespace}:pending-uploads"

    def albums_due(self) -> str:
        return f"{self.namespace}:albums-due"

    def pending_owners(self) -> str:
        return f"{self.namespace}:pending-owners"

    def counter(self, name: str) -> str:
        return f"{self.namespace}:limit:{name}"

    def refused(self, who: str) -> str:
        return f"{self.namespace}:refused:{who}"

    def person(self, user_id: int) -> str:
        return f"{self.namespace}:person:{user_id}"

    def trials_refused(self) -> str:
        return f"{self.namespace}:trials-refused"

    def claim(self, session_id: str) -> str:
        return f"{self.namespace}:claim:{session_id}"

    def alerted(self, kind: str) -> str:
        return f"{self.namespace}:alerted:{kind}"

    def admin_languages(self) -> str:
        return f"{self.namespace}:admin-languages"

    def stats(self, day: str) -> str:
        return f"{self.namespace}:stats:{day}"

    def active_chats(self, day: str) -> str:
        return f"{self.namespace}:active:{day}"


@dataclass
class ChatRecord:
    """What the bot keeps for one chat's project (the token is stored apart, with its own expiry)."""

    client_id: str = ""
    user_id: str = ""  # the backend's anonymous user id: the `bind` id of the registration link
    session_id: str = ""
    task_id: str = ""
    language: str = ""
    account: str = ""  # the account the session was made on (`accounts.account_label`)
    token: str = ""
    token_expires_at: float = 0.0
    link: Link | None = None  # the project owner's linked account, when asked for and linked


@dataclass(frozen=True)
class ChatAddress:
    """Where durable work answers: enough to rebuild the chat (and its languages) after a restart."""

    chat_id: int
    thread_id: int | None
    key: str  # the project: a chat, a forum topic, or one member's in a group
    language: str  # the reply language
    session_language: str  # the agent session's


@dataclass
class TurnRecord:
    started_at: float
    text_preview: str  # first characters of the request, to tell the user what was interrupted
    chat_id: int = 0
    thread_id: int | None = None
    language: str = "en"
    session_language: str = "en"
    before: list[dict[str, Any]] | None = None  # the timeline when the turn began
    owner: str = ""  # the replica running it (bot.state.replicas); "" in records from before replicas
    request_id: int | None = None  # the user's message, whose 👀 becomes 👎 if the turn is cut off

    def address(self, chat_key: str) -> ChatAddress:
        return ChatAddress(self.chat_id, self.thread_id, chat_key, self.language, self.session_language)


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


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _decode(cls: type[T], raw: str | bytes) -> T:
    """A record from JSON, ignoring fields this version does not know (records outlive upgrades)."""
    data = json.loads(raw)
    known = {item.name for item in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in known})


ALLOWANCE_ATTEMPTS = 20  # a counter changed by another attempt is read again, this many times at most

# Moves that must not interleave with another process's, each one atomic round trip in Redis.
SCRIPTS = {
    # KEYS: the pending uploads, their owners; ARGV: the new owner, then the dead ones ("" for records without
    # an owner). Re-owns each item a dead replica held; returns them.
    "take_over_uploads": """
        local dead = {}
        for i = 2, #ARGV do dead[ARGV[i]] = true end
        local taken = {}
        local all = redis.call('HGETALL', KEYS[1])
        for i = 1, #all, 2 do
            local owner = redis.call('HGET', KEYS[2], all[i]) or ''
            if dead[owner] then
                redis.call('HSET', KEYS[2], all[i], ARGV[1])
                table.insert(taken, all[i + 1])
            end
        end
        return taken
    """,
    # KEYS: the render, the active set, the chat's render pointer; ARGV: the state the caller read,
    # the new record, its retention when finished (else 0), the render id.
    "move_render": """
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
    """,
    # KEYS: the turn; ARGV: started_at. Deletes the record only while it is that turn's.
    "end_turn": """
        local raw = redis.call('GET', KEYS[1])
        if raw and tostring(cjson.decode(raw)['started_at']) == tostring(tonumber(ARGV[1])) then
            return redis.call('DEL', KEYS[1])
        end
        return 0
    """,
    # KEYS: the turn; ARGV: started_at, the new record. Replaces it only while it is that turn's.
    "replace_turn": """
        local raw = redis.call('GET', KEYS[1])
        if raw and tostring(cjson.decode(raw)['started_at']) == tostring(tonumber(ARGV[1])) then
            return redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
        end
        return 0
    """,
}


@dataclass(frozen=True)
class Retention:
    """How long Redis keeps what outlives its use, in seconds (each from a setting)."""

    chat: int  # a silent chat's project
    update: int  # an update's id, so an update Telegram sends again is handled once
    refusal: int  # that an outsider heard their one polite refusal
    finished_render: int  # a finished render's record, for the log
    usage: int  # a day's usage counts


class Store:
    """Typed access to the bot's keys; the Redis client must use `decode_responses=True`."""

    def __init__(self, redis: Redis, namespace: str, retention: Retention):
        self.redis = redis
        self.keys = Keys(namespace)
        self.retention = retention
        self._chat_ttl = retention.chat
        self._scripts = {name: redis.register_script(source) for name, source in SCRIPTS.items()}

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # -- chats ----------------------------------------------------------------------------------

    async def load_chat(self, chat_key: str, *, touch: bool = False, owner: int | None = None) -> ChatRecord:
        """The chat's record, with the linked account of the project's `owner` when given; with
        `touch`, the chat (and the link) are in use and kept `chat_ttl` from now. One round trip."""
        key = self.keys.chat(chat_key)
        person = self.keys.person(owner) if owner is not None else None
        raw, token, link, *_ = await self._pipe(
            lambda p: (
                p.hgetall(key),
                p.hgetall(self.keys.token(chat_key)),
                p.hgetall(person) if person else p.exists(key),  # a placeholder keeps the shape
                *((p.expire(key, self._chat_ttl),) if touch else ()),
                *((p.expire(person, self._chat_ttl),) if touch and person else ()),
            )
        )
        record = ChatRecord()
        for item in fields(ChatRecord):
            if item.name in raw and item.name not in ("token", "token_expires_at", "link"):
                setattr(record, item.name, _text(raw[item.name]))
        if token:
            record.token = _text(token.get("token", ""))
            record.token_expires_at = float(_text(token.get("expires_at", "0")) or 0)
        if person and isinstance(link, dict) and link.get("sealed"):
            record.link = Link(_text(link["sealed"]), refused=_text(link.get("refused", "")) == "1")
        return record

    # -- accounts -------------------------------------------------------------------------------

    async def link(self, user_id: int) -> Link | None:
        raw = await self.redis.hgetall(self.keys.person(user_id))
        if not raw.get("sealed"):
            return None
        return Link(_text(raw["sealed"]), refused=_text(raw.get("refused", "")) == "1")

    async def save_link(self, user_id: int, sealed: str) -> None:
        """Keep a person's (encrypted) token; unused for `chat_ttl`, it is forgotten."""
        key = self.keys.person(user_id)
        await self._pipe(
            lambda p: (p.delete(key), p.hset(key, mapping={"sealed": sealed}), p.expire(key, self._chat_ttl))
        )

    async def refuse_link(self, user_id: int) -> None:
        """The backend refused the person's token: kept, marked, until they log in again or out."""
        key = self.keys.person(user_id)
        if await self.redis.exists(key):
            await self.redis.hset(key, "refused", "1")

    async def drop_link(self, user_id: int) -> bool:
        return bool(await self.redis.delete(self.keys.person(user_id)))

    async def trials_refused(self) -> bool:
        return bool(await self.redis.exists(self.keys.trials_refused()))

    async def note_trials_refused(self, seconds: float) -> None:
        """The backend refused a trial token: no new trial is asked for during `seconds`."""
        await self.redis.set(self.keys.trials_refused(), "1", ex=max(1, int(seconds)))

    async def claim(self, session_id: str) -> str | None:
        raw = await self.redis.get(self.keys.claim(session_id))
        return _text(raw) if raw else None

    async def save_claim(self, session_id: str, claim: str, seconds: float) -> None:
        await self.redis.set(self.keys.claim(session_id), claim, ex=max(1, int(seconds)))

    async def first_alert(self, kind: str, *, ttl: int | None = None) -> bool:
        """True once for each alert (`kind`) until `clear_alert` (or `ttl` seconds): admins hear it once."""
        return bool(await self.redis.set(self.keys.alerted(kind), "1", nx=True, ex=ttl))

    async def note_admin_language(self, user_id: int, lang: str) -> None:
        await self.redis.hset(self.keys.admin_languages(), str(user_id), lang)

    async def admin_languages(self) -> dict[int, str]:
        raw = await self.redis.hgetall(self.keys.admin_languages())
        return {int(_text(k)): _text(v) for k, v in raw.items()}

    async def clear_alert(self, *kinds: str) -> None:
        await self.redis.delete(*(self.keys.alerted(kind) for kind in kinds))

    async def save_chat(self, chat_key: str, **values: str) -> None:
        key = self.keys.chat(chat_key)
        await self._pipe(lambda p: (p.hset(key, mapping=values), p.expire(key, self._chat_ttl)))

    async def save_token(self, chat_key: str, token: str, expires_at: float) -> None:
        key = self.keys.token(chat_key)
        ttl = max(1, int(expires_at - time.time()))
        await self._pipe(
            lambda p: (
                p.hset(key, mapping={"token": token, "expires_at": str(expires_at)}),
                p.expire(key, ttl),
            )
        )

    async def drop_token(self, chat_key: str) -> None:
        await self.redis.delete(self.keys.token(chat_key))

    async def forget_session(self, chat_key: str) -> None:
        await self.redis.hdel(self.keys.chat(chat_key), "session_id", "task_id", "account")

    # -- the running turn -----------------------------------------------------------------------

    async def start_turn(self, chat_key: str, turn: TurnRecord, ttl_seconds: float) -> bool:
        """Claim the chat's one turn slot; False when a turn is already running."""
        ok = await self.redis.set(
            self.keys.turn(chat_key), _encode(asdict(turn)), nx=True, ex=int(ttl_seconds) + 1
        )
        return bool(ok)

    async def note_turn_timeline(self, chat_key: str, turn: TurnRecord) -> None:
        """Keep the timeline a turn started from (`turn.before`) with its record, while it is that
        turn's (same expiry)."""
        await self._scripts["replace_turn"](
            client=self.redis, keys=[self.keys.turn(chat_key)], args=[turn.started_at, _encode(asdict(turn))]
        )

    async def current_turn(self, chat_key: str) -> TurnRecord | None:
        raw = await self.redis.get(self.keys.turn(chat_key))
        return _decode(TurnRecord, raw) if raw else None

    async def turn_starts(self, chat_keys: list[str]) -> dict[str, float | None]:
        """When each chat's running turn started (None: no turn), in one round trip."""
        raws = await self.redis.mget([self.keys.turn(key) for key in chat_keys])
        return {
            key: _decode(TurnRecord, raw).started_at if raw else None
            for key, raw in zip(chat_keys, raws, strict=True)
        }

    async def end_turn(self, chat_key: str, started_at: float | None = None) -> bool:
        """Close the chat's turn record; with `started_at`, only if it is still that turn's (it may
        have expired, and a newer turn hold the slot now). True for the one caller that closed it."""
        if started_at is None:
            return bool(await self.redis.delete(self.keys.turn(chat_key)))
        return bool(
            await self._scripts["end_turn"](
                client=self.redis, keys=[self.keys.turn(chat_key)], args=[started_at]
            )
        )

    async def running_turns(self) -> list[tuple[str, TurnRecord]]:
        """Every turn recorded as running, by any replica (the caller picks the orphans)."""
        prefix = self.keys.turn("")
        keys = [_text(key) async for key in self.redis.scan_iter(match=f"{prefix}*", count=500)]
        raws = await self.redis.mget(keys) if keys else []  # one read for all, not one per turn
        return [
            (key[len(prefix) :], _decode(TurnRecord, raw)) for key, raw in zip(keys, raws, strict=True) if raw
        ]

    # -- renders --------------------------------------------------------------------------------

    async def add_render(self, render: RenderRecord) -> bool:
        """Record a render before it starts; False when the chat already has one in flight.

        The record is written first, then the chat's pointer claimed: a double-tapped Export finds
        the first render's record behind the pointer and backs off.
        """
        pointer = self.keys.chat_render(render.chat_key)
        await self.redis.set(self.keys.render(render.render_id), _encode(asdict(render)))
        if not await self.redis.set(pointer, render.render_id, nx=True):
            current = await self.redis.get(pointer)
            current_record = await self.get_render(_text(current)) if current else None
            if current_record is not None and current_record.status not in FINISHED:
                await self.redis.delete(self.keys.render(render.render_id))
                return False
            await self.redis.set(pointer, render.render_id)  # left by a render that has ended
        await self.redis.sadd(self.keys.active_renders(), render.render_id)
        return True

    async def chat_render(self, chat_key: str) -> RenderRecord | None:
        render_id = await self.redis.get(self.keys.chat_render(chat_key))
        return await self.get_render(_text(render_id)) if render_id else None

    async def get_render(self, render_id: str) -> RenderRecord | None:
        raw = await self.redis.get(self.keys.render(render_id))
        return _decode(RenderRecord, raw) if raw else None

    async def note_delivered(self, render: RenderRecord) -> None:
        """Remember the render as the chat's last video (kept as long as its record)."""
        await self.redis.set(
            self.keys.chat_video(render.chat_key), render.render_id, ex=self.retention.finished_render
        )

    async def last_delivered(self, chat_key: str) -> RenderRecord | None:
        """The chat's last delivered render, or None (none yet, or forgotten)."""
        render_id = await self.redis.get(self.keys.chat_video(chat_key))
        record = await self.get_render(_text(render_id)) if render_id else None
        return record if record is not None and record.status is RenderState.DELIVERED else None

    async def active_renders(self) -> list[str]:
        return sorted(_text(item) for item in await self.redis.smembers(self.keys.active_renders()))

    async def move_render(self, render: RenderRecord, to: RenderState) -> bool:
        """Move a render to `to`, saving the record with it: only if the move is allowed and Redis
        still holds the render in the state this record was read in (compare and set, one script).
        A finished render leaves the active set and its chat. False: another process moved it."""
        if not may_move(render.status, to):
            raise InvalidMove(f"render {render.render_id}: {render.status} -> {to}")
        expected, render.status = render.status, to
        moved = await self._scripts["move_render"](
            client=self.redis,
            keys=[
                self.keys.render(render.render_id),
                self.keys.active_renders(),
                self.keys.chat_render(render.chat_key),
            ],
            args=[
                expected,
                _encode(asdict(render)),
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

    async def first_sight(self, update_id: int) -> bool:
        """True the first time an update id is seen (Telegram keeps unconfirmed updates 24 h)."""
        key = self.keys.update_seen(update_id)
        return bool(await self.redis.set(key, "1", nx=True, ex=self.retention.update))

    # -- limits, refusals and usage --------------------------------------------------------------

    async def take_allowance(
        self,
        limits: dict[str, int],
        window_seconds: int,
        amount: int,
        refuse: Callable[[list[int], list[int], int], int | None],
    ) -> int:
        """Count `amount` against every named counter (fixed windows) unless `refuse` (given what
        each has used, their limits and the amount) names a counter it would overflow: then nothing
        is counted, and the answer is the seconds until that counter resets (else 0). Atomic: a
        concurrent attempt on the same counters makes this one read again (WATCH/MULTI)."""
        if not limits:
            return 0
        keys = [self.keys.counter(name) for name in limits]
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(ALLOWANCE_ATTEMPTS):
                try:
                    await pipe.watch(*keys)
                    used = [int(value or 0) for value in await pipe.mget(keys)]
                    full = refuse(used, list(limits.values()), amount)
                    if full is not None:
                        return max(1, int(await pipe.ttl(keys[full])))
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for key in keys:
                        pipe.incrby(key, amount)
                        pipe.expire(key, window_seconds, nx=True)
                    await pipe.execute()
                    return 0
                except WatchError:
                    continue
        raise WatchError("allowance counters kept changing")

    async def first_refusal(self, who: str) -> bool:
        """True once per day per outsider: they hear one polite refusal, not one per message."""
        return bool(await self.redis.set(self.keys.refused(who), "1", nx=True, ex=self.retention.refusal))

    async def count_usage(self, kind: str, chat_key: str, day: str) -> None:
        stats, active = self.keys.stats(day), self.keys.active_chats(day)
        keep = self.retention.usage
        await self._pipe(
            lambda p: (
                p.hincrby(stats, kind, 1),
                p.expire(stats, keep),
                p.sadd(active, chat_key),
                p.expire(active, keep),
            )
        )

    async def usage(self, day: str) -> tuple[dict[str, int], int]:
        counts, active = await self._pipe(
            lambda p: (p.hgetall(self.keys.stats(day)), p.scard(self.keys.active_chats(day)))
        )
        return {k: int(v) for k, v in counts.items()}, int(active)

    # -- media received but not yet forwarded ---------------------------------------------------

    async def add_pending_upload(
        self, chat_key: str, message_id: int, payload: dict[str, Any], owner: str
    ) -> None:
        """Note media received and not yet forwarded, held by replica `owner`."""
        item = f"{chat_key}|{message_id}"
        await self._pipe(
            lambda p: (
                p.hset(self.keys.pending_uploads(), item, _encode(payload)),
                p.hset(self.keys.pending_owners(), item, owner),
            )
        )

    async def remove_pending_uploads(self, chat_key: str, message_ids: list[int]) -> None:
        if message_ids:
            items = [f"{chat_key}|{m}" for m in message_ids]
            await self._pipe(
                lambda p: (
                    p.hdel(self.keys.pending_uploads(), *items),
                    p.hdel(self.keys.pending_owners(), *items),
                )
            )

    async def schedule_album(self, chat_key: str, album: str, due_at: float) -> None:
        """An album is flushed once it has been quiet until `due_at` (each item moves it later)."""
        await self.redis.zadd(self.keys.albums_due(), {f"{chat_key}|{album}": due_at})

    async def album_due(self, chat_key: str, album: str) -> float | None:
        """When an album being gathered falls quiet; None once it has been sent on."""
        due = await self.redis.zscore(self.keys.albums_due(), f"{chat_key}|{album}")
        return None if due is None else float(due)

    async def albums(self) -> list[tuple[str, str, float]]:
        """Every album being gathered: (chat key, album id, when it falls quiet)."""
        found = cast(
            list[tuple[str, float]], await self.redis.zrange(self.keys.albums_due(), 0, -1, withscores=True)
        )
        albums = []
        for member, due in found:
            chat_key, album = member.rsplit("|", 1)
            albums.append((chat_key, album, float(due)))
        return albums

    async def album_done(self, chat_key: str, album: str) -> None:
        await self.redis.zrem(self.keys.albums_due(), f"{chat_key}|{album}")

    async def album_items(self, chat_key: str, album: str) -> list[dict[str, Any]]:
        """The pending media of one album, whichever replica received each item."""
        items = await self.pending_uploads()
        return [item for item in items if item.get("album") == album and item.get("chat_key") == chat_key]

    async def depths(self) -> dict[str, int]:
        """How much work is in hand across replicas, for /metrics (counted, not read)."""
        renders, uploads = await self._pipe(
            lambda p: (p.scard(self.keys.active_renders()), p.hlen(self.keys.pending_uploads()))
        )
        turns = 0
        async for _ in self.redis.scan_iter(match=self.keys.turn("*"), count=500):
            turns += 1
        return {"renders_active": int(renders), "uploads_pending": int(uploads), "turns_running": turns}

    async def pending_upload_owners(self) -> set[str]:
        """The replicas holding media not yet forwarded ("" for items recorded without one)."""
        items, owners = await self._pipe(
            lambda p: (p.hkeys(self.keys.pending_uploads()), p.hgetall(self.keys.pending_owners()))
        )
        return {_text(owners.get(item, "")) for item in items}

    async def take_over_uploads(self, dead: set[str], me: str) -> list[dict[str, Any]]:
        """The pending media of replicas that died, now recorded as `me`'s (atomically: of two
        replicas taking over at once, each item goes to one)."""
        taken = await self._scripts["take_over_uploads"](
            client=self.redis,
            keys=[self.keys.pending_uploads(), self.keys.pending_owners()],
            args=[me, *sorted(dead)],
        )
        return [json.loads(_text(raw)) for raw in taken]

    async def pending_uploads(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.keys.pending_uploads())
        return [json.loads(value) for _, value in sorted(raw.items())]

    # -- helpers --------------------------------------------------------------------------------

    async def _pipe(self, build: Any) -> list[Any]:
        async with self.redis.pipeline(transaction=True) as pipe:
            build(pipe)
            return list(await pipe.execute())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
