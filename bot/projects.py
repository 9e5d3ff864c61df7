"""A chat's project on the backend: its token and agent session, kept in Redis and renewed alone.

`Projects.call` runs one backend operation for a chat under the contract's recovery rules:
an expired token (1001) is renewed with the same client id, a lost session (1002 / 404) is
replaced, and a 429 waits `RATE_LIMIT_WAIT_SECONDS`; each at most once, then the error stands.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from bot.errors import MissingClientId, NemoError, RateLimited, SessionNotFound, TokenExpired
from bot.nemo import NemoClient, ProjectState
from bot.sse import AgentEvent
from bot.store import ChatRecord, Store

log = logging.getLogger(__name__)
T = TypeVar("T")
TOKEN_MARGIN_SECONDS = 0  # renew at expiry (or on 1001): one anonymous token per client id per 7 days


class OperatorTokenRejected(NemoError):
    """The operator's NEMO_TOKEN was refused: nothing the bot can renew on its own."""


@dataclass(frozen=True)
class ChatRef:
    """Where replies go (a chat, or one forum topic of it) and which project `key` they belong to."""

    chat_id: int
    thread_id: int | None
    key: str

    @classmethod
    def of(cls, chat_id: int, thread_id: int | None = None) -> ChatRef:
        return cls(chat_id, thread_id, str(chat_id) if thread_id is None else f"{chat_id}:{thread_id}")


@dataclass(frozen=True)
class Connection:
    token: str
    session_id: str
    user_id: str
    anonymous: bool


class Projects:
    def __init__(
        self,
        client: NemoClient,
        store: Store,
        *,
        operator_token: str | None,
        rate_limit_wait: float,
        setups_at_once: int = 16,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.client = client
        self.store = store
        self._operator_token = operator_token
        self._rate_limit_wait = rate_limit_wait
        self._sleep = sleep
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._setups = asyncio.Semaphore(setups_at_once)

    @property
    def anonymous(self) -> bool:
        return self._operator_token is None

    async def connected(self, chat: ChatRef, language: str) -> Connection | None:
        """The chat's connection if it has an agent session (a stale token is renewed silently);
        None for a chat not set up yet. One Redis read when all is in place."""
        record = await self.store.load_chat(chat.key, touch=True)
        if not record.session_id:
            return None
        return self._ready(record) or await self.connect(chat, language)

    async def user_id(self, chat: ChatRef) -> str:
        """The backend user id of the chat's account ("" when not known yet)."""
        return (await self.store.load_chat(chat.key)).user_id

    async def connect(self, chat: ChatRef, language: str) -> Connection:
        """The chat's token and session, creating or renewing whatever is missing."""
        lock = self._locks.setdefault(chat.key, asyncio.Lock())
        async with lock:
            record = await self.store.load_chat(chat.key, touch=True)
            if (ready := self._ready(record)) is not None:
                return ready
            # A crowd of new chats is set up a few at a time, first come first served: the first
            # answers go out at once instead of every chat finishing late together.
            async with self._setups:
                return await self._set_up(chat, record, self._usable_token(record), language)

    async def _set_up(
        self, chat: ChatRef, record: ChatRecord, token: str | None, language: str
    ) -> Connection:
        """Get what the chat lacks: an anonymous token, an agent session, or both."""
        user_id = record.user_id
        if token is None:
            token, user_id = await self._grant(chat, record.client_id)
        session_id = record.session_id
        if not session_id:
            session = await self.client.create_session(token, language)
            session_id = session.session_id
            user_id = user_id or session.user_id
            await self.store.save_chat(
                chat.key, session_id=session_id, task_id=session.task_id, language=language, user_id=user_id
            )
            log.info("chat %s: new agent session", chat.key)
        return Connection(token, session_id, user_id, self.anonymous)

    async def call(
        self,
        chat: ChatRef,
        language: str,
        op: Callable[[Connection], Awaitable[T]],
        *,
        connection: Connection | None = None,
    ) -> T:
        """Run `op` with the chat's connection (the one given, for a first try), recovering once from
        each recoverable error."""
        recovered: set[type[NemoError]] = set()
        while True:
            if connection is None or recovered:
                connection = await self.connect(chat, language)
            try:
                return await op(connection)
            except (TokenExpired, SessionNotFound, RateLimited) as err:
                if isinstance(err, TokenExpired) and self._operator_token is not None:
                    raise OperatorTokenRejected("NEMO_TOKEN was refused", code=err.code) from err
                if type(err) in recovered:
                    raise
                recovered.add(type(err))
                await self._recover(chat, err)

    async def _recover(self, chat: ChatRef, err: NemoError) -> None:
        """Put right what the error says is stale: the token, the session, or the moment (429)."""
        if isinstance(err, TokenExpired):
            log.info("chat %s: token refused, renewing", chat.key)
            await self.store.drop_token(chat.key)
        elif isinstance(err, SessionNotFound):
            log.info("chat %s: session lost, creating a new one", chat.key)
            await self.store.forget_session(chat.key)
        else:
            log.info("chat %s: rate limited, waiting %.0fs", chat.key, self._rate_limit_wait)
            await self._sleep(self._rate_limit_wait)

    @asynccontextmanager
    async def open_turn(
        self, chat: ChatRef, language: str, text: str
    ) -> AsyncIterator[AsyncIterator[AgentEvent]]:
        """The agent's event stream for one message; recovery applies only until the stream starts."""
        async with AsyncExitStack() as stack:
            yield await self.call(
                chat,
                language,
                lambda c: stack.enter_async_context(self.client.stream_turn(c.token, c.session_id, text)),
            )

    async def state(
        self, chat: ChatRef, language: str, *, connection: Connection | None = None
    ) -> ProjectState:
        """The project's current state (timeline draft and media)."""
        return await self.call(
            chat, language, lambda c: self.client.state(c.token, c.session_id), connection=connection
        )

    async def new_project(self, chat: ChatRef, language: str) -> Connection:
        """Forget the chat's session and open a fresh one (the token and client id stay)."""
        await self.store.forget_session(chat.key)
        return await self.connect(chat, language)

    async def _grant(self, chat: ChatRef, client_id: str) -> tuple[str, str]:
        """A new anonymous token for the chat's client id (a new id if it has none or it is refused)."""
        if not client_id:
            client_id = str(uuid.uuid4())
            await self.store.save_chat(chat.key, client_id=client_id)
        try:
            grant = await self.client.anonymous_token(client_id)
        except MissingClientId:
            client_id = str(uuid.uuid4())
            await self.store.save_chat(chat.key, client_id=client_id)
            grant = await self.client.anonymous_token(client_id)
        except RateLimited:
            await self._sleep(self._rate_limit_wait)
            grant = await self.client.anonymous_token(client_id)
        await self.store.save_token(chat.key, grant.token, grant.expires_at)
        if grant.user_id:
            await self.store.save_chat(chat.key, user_id=grant.user_id)
        log.info("chat %s: anonymous token granted", chat.key)
        return grant.token, grant.user_id

    def _usable_token(self, record: ChatRecord) -> str | None:
        """The operator's token, or the chat's own while it is fresh."""
        if self._operator_token is not None:
            return self._operator_token
        return record.token if record.token and self._token_fresh(record.token_expires_at) else None

    def _ready(self, record: ChatRecord) -> Connection | None:
        """The connection a record holds, if its token is usable and it has a session."""
        token = self._usable_token(record)
        if token is None or not record.session_id:
            return None
        return Connection(token, record.session_id, record.user_id, self.anonymous)

    @staticmethod
    def _token_fresh(expires_at: float) -> bool:
        return expires_at - TOKEN_MARGIN_SECONDS > time.time()
