"""A chat's project on the backend: its token and agent session, kept in Redis and renewed alone.

`Projects.call` runs one backend operation for a chat under the contract's recovery rules:
an expired trial token (1001) is renewed with the same client id, a lost session (1002 / 404) is
replaced, and a 429 waits `RATE_LIMIT_WAIT_SECONDS`; each at most once, then the error stands.
Which account a chat runs on is `bot.core.accounts.choose`: a refused personal or operator token is
never renewed behind anyone's back, and a refused trial grant is answered at once.
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

from bot.core.accounts import (
    AccountKind,
    Vault,
    account_label,
    chat_of,
    choose,
    person_of,
    project_owner,
    session_fits,
)
from bot.nemo.client import Claim, NemoClient, ProjectState
from bot.nemo.errors import MissingClientId, NemoError, RateLimited, SessionNotFound, TokenExpired
from bot.nemo.sse import AgentEvent
from bot.state.chats import ChatRecord
from bot.state.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")
CLAIM_KEPT = 0.9  # of a claim token's lifetime: a link given out still opens for a while
TOKEN_MARGIN_SECONDS = 0  # renew at expiry (or on 1001): one anonymous token per client id per 7 days


class OperatorTokenRejected(NemoError):
    """The operator's NEMO_TOKEN was refused: nothing the bot can renew on its own."""


class TrialsUnavailable(NemoError):
    """The backend grants no trial token now (its cap per IP a week): the person needs another way."""


class PersonalTokenRefused(NemoError):
    """The person's own token was refused (revoked or expired): only they can put it right."""


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
    user_id: str  # the backend's user id (a trial's is the `bind` id of the registration link)
    account: AccountKind
    task_id: str = ""

    @property
    def anonymous(self) -> bool:
        return self.account is AccountKind.TRIAL


class Projects:
    def __init__(
        self,
        client: NemoClient,
        store: Store,
        *,
        operator_token: str | None,
        rate_limit_wait: float,
        trial_refusal_seconds: float = 3600,
        vault: Vault | None = None,
        setups_at_once: int = 16,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.client = client
        self.store = store
        self._operator_token = operator_token
        self._rate_limit_wait = rate_limit_wait
        self._trial_refusal_seconds = trial_refusal_seconds
        self._vault = vault  # None: personal accounts are off
        self._sleep = sleep
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._setups = asyncio.Semaphore(setups_at_once)

    async def connected(self, chat: ChatRef, language: str) -> Connection | None:
        """The chat's connection if it has an agent session (a stale token is renewed silently);
        None for a chat not set up yet. One Redis read when all is in place."""
        record = await self._load(chat, touch=True)
        if not record.session_id:
            return None
        return self._ready(chat, record) or await self.connect(chat, language)

    async def account(self, chat: ChatRef) -> tuple[AccountKind, str]:
        """Which account the chat runs on, and the backend user id known for it ("" if none yet)."""
        record = await self._load(chat)
        return self._kind(record), record.user_id

    async def connect(self, chat: ChatRef, language: str) -> Connection:
        """The chat's token and session, creating or renewing whatever is missing."""
        lock = self._locks.setdefault(chat.key, asyncio.Lock())
        async with lock:
            record = await self._load(chat, touch=True)
            if (ready := self._ready(chat, record)) is not None:
                return ready
            kind, token = self._credentials(chat, record)
            if token is None and await self.store.trials_refused():
                # Told at once, without a set-up slot or a request the backend would refuse again.
                raise TrialsUnavailable("the backend's refusal of trial tokens is remembered")
            # A crowd of new chats is set up a few at a time, first come first served: the first
            # answers go out at once instead of every chat finishing late together.
            async with self._setups:
                return await self._set_up(chat, record, kind, token, language)

    async def _set_up(
        self, chat: ChatRef, record: ChatRecord, kind: AccountKind, token: str | None, language: str
    ) -> Connection:
        """Get what the chat lacks: a trial token, an agent session on its account, or both."""
        label = account_label(kind, project_owner(chat.key))
        user_id = record.user_id
        if token is None:
            token, user_id = await self._grant(chat, record.client_id)
        session_id, task_id = record.session_id, record.task_id
        if not session_id or not session_fits(record.account, label):
            session = await self.client.create_session(token, language)
            session_id, task_id = session.session_id, session.task_id
            user_id = session.user_id or (user_id if kind is AccountKind.TRIAL else "")
            await self.store.save_chat(
                chat.key,
                session_id=session_id,
                task_id=task_id,
                language=language,
                user_id=user_id,
                account=label,
            )
            log.info("chat %s: new agent session on a %s account", chat.key, kind)
        return Connection(token, session_id, user_id, kind, task_id)

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
                if isinstance(err, TokenExpired):
                    await self._refused(chat, connection.account, err)
                if type(err) in recovered:
                    raise
                recovered.add(type(err))
                await self._recover(chat, err)

    async def _refused(self, chat: ChatRef, account: AccountKind, err: TokenExpired) -> None:
        """A refused token the bot cannot renew: the operator's, or a person's own (never swapped
        for a trial behind their back). A trial's is renewed (`_recover`)."""
        if account is AccountKind.OPERATOR:
            raise OperatorTokenRejected("NEMO_TOKEN was refused", code=err.code) from err
        if account is AccountKind.PERSONAL:
            owner = project_owner(chat.key)
            if owner is not None:
                await self.store.refuse_link(owner)
            log.info("chat %s: the owner's own token was refused", chat.key)
            raise PersonalTokenRefused("the personal token was refused", code=err.code) from err

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

    async def claim(self, chat: ChatRef, language: str, *, session_id: str = "", task_id: str = "") -> str:
        """A claim token that opens the chat's project (or the session given, a render's) in the
        browser; kept until shortly before it expires. It has no API access, unlike the token."""
        if session_id and (kept := await self.store.claim(session_id)):
            return kept

        async def ask(connection: Connection) -> tuple[str, Claim]:
            sid = session_id or connection.session_id
            if not session_id and (kept := await self.store.claim(sid)):  # the given one was looked up
                return sid, Claim(kept, 0)
            return sid, await self.client.claim_token(connection.token, task_id or connection.task_id, sid)

        sid, claim = await self.call(chat, language, ask)
        if claim.expires_in:
            await self.store.save_claim(sid, claim.token, claim.expires_in * CLAIM_KEPT)
        return claim.token

    async def new_project(self, chat: ChatRef, language: str) -> Connection:
        """Forget the chat's session and open a fresh one (the token and client id stay)."""
        await self.store.forget_session(chat.key)
        return await self.connect(chat, language)

    async def _grant(self, chat: ChatRef, client_id: str) -> tuple[str, str]:
        """A new trial token for the chat's client id (a new id if it has none or it is refused).

        A 429 here is the backend's cap on trials (per IP and per client id, a week): it is
        remembered for TRIAL_REFUSAL_MEMORY_SECONDS and raised at once, not waited out."""
        try:
            if not client_id:
                client_id = str(uuid.uuid4())
                await self.store.save_chat(chat.key, client_id=client_id)
            try:
                grant = await self.client.anonymous_token(client_id)
            except MissingClientId:
                client_id = str(uuid.uuid4())
                await self.store.save_chat(chat.key, client_id=client_id)
                grant = await self.client.anonymous_token(client_id)
        except RateLimited as err:
            await self.store.note_trials_refused(self._trial_refusal_seconds)
            log.warning(
                "the backend grants no trial token now (429): not asking again for %.0f s",
                self._trial_refusal_seconds,
            )
            raise TrialsUnavailable(
                "trial tokens refused", code=err.code, http_status=err.http_status
            ) from err
        sealed = self._vault.seal(chat_of(chat.key), grant.token) if self._vault else grant.token
        await self.store.save_token(chat.key, sealed, grant.expires_at)
        if grant.user_id:
            await self.store.save_chat(chat.key, user_id=grant.user_id)
        log.info("chat %s: trial token granted", chat.key)
        return grant.token, grant.user_id

    async def _load(self, chat: ChatRef, *, touch: bool = False) -> ChatRecord:
        """The chat's record, with its owner's linked account when personal accounts are on."""
        owner = project_owner(chat.key) if self._vault is not None else None
        return await self.store.load_chat(chat.key, touch=touch, owner=owner)

    def _kind(self, record: ChatRecord) -> AccountKind:
        linked = self._vault is not None and record.link is not None
        return choose(linked=linked, operator=self._operator_token is not None)

    def _credentials(self, chat: ChatRef, record: ChatRecord) -> tuple[AccountKind, str | None]:
        """The chat's account and its usable token (None: a trial whose token must be granted)."""
        kind = self._kind(record)
        if kind is AccountKind.PERSONAL:
            assert record.link is not None and self._vault is not None
            owner = project_owner(chat.key)
            token = self._vault.open(person_of(owner), record.link.sealed) if owner is not None else None
            if record.link.refused or token is None:  # refused, or sealed with another key
                raise PersonalTokenRefused("the personal token is refused or unreadable")
            return kind, token
        if kind is AccountKind.OPERATOR:
            return kind, self._operator_token
        fresh = record.token and self._token_fresh(record.token_expires_at)
        return kind, self._open_trial(chat, record.token) if fresh else None

    def _open_trial(self, chat: ChatRef, kept: str) -> str | None:
        """A trial token as the store keeps it: sealed when TOKEN_ENCRYPTION_KEY is set (in the clear
        without it, or from before it was set). None when it cannot be read: a new one is granted."""
        if kept.startswith("nmv_"):
            return kept
        return self._vault.open(chat_of(chat.key), kept) if self._vault else None

    def _ready(self, chat: ChatRef, record: ChatRecord) -> Connection | None:
        """The connection a record holds, if its token is usable and its session is on that account."""
        kind, token = self._credentials(chat, record)
        label = account_label(kind, project_owner(chat.key))
        if token is None or not record.session_id or not session_fits(record.account, label):
            return None
        return Connection(token, record.session_id, record.user_id, kind, record.task_id)

    @staticmethod
    def _token_fresh(expires_at: float) -> bool:
        return expires_at - TOKEN_MARGIN_SECONDS > time.time()
