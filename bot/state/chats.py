"""A chat's project as Redis keeps it: its record (client, session, task, language, account) and
its token, kept apart with the token's own expiry; the record lives `chat_ttl` past its last use."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

from bot.core.accounts import Link
from bot.state.base import Section, as_text


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
    project: str = ""  # the current project's id ("" before projects: the first, "1")
    changed_at: str = ""  # when the current project was last used (a time.time() value)
    topics: str = ""  # with PROJECT_TOPICS: how many projects of this private chat have a topic


@dataclass(frozen=True)
class ChatAddress:
    """Where durable work answers: enough to rebuild the chat (and its languages) after a restart."""

    chat_id: int
    thread_id: int | None
    key: str  # the project: a chat, a forum topic, or one member's in a group
    language: str  # the reply language
    session_language: str  # the agent session's


class Chats(Section):
    async def load_chat(self, chat_key: str, *, touch: bool = False, owner: int | None = None) -> ChatRecord:
        """The chat's record, with the linked account of the project's `owner` when given; with
        `touch`, the chat (its projects, and the link) are in use and kept `chat_ttl` from now. One
        round trip."""
        key = self.keys.chat(chat_key)
        person = self.keys.person(owner) if owner is not None else None
        ttl = self.retention.chat
        raw, token, link, *_ = await self._pipe(
            lambda p: (
                p.hgetall(key),
                p.hgetall(self.keys.token(chat_key)),
                p.hgetall(person) if person else p.exists(key),  # a placeholder keeps the shape
                *((p.expire(key, ttl),) if touch else ()),
                # the chat's other projects live as long as the chat is used
                *((p.expire(self.keys.projects(chat_key), ttl),) if touch else ()),
                *((p.expire(self.keys.project_times(chat_key), ttl),) if touch else ()),
                *((p.expire(person, ttl),) if touch and person else ()),
            )
        )
        record = ChatRecord()
        for item in fields(ChatRecord):
            if item.name in raw and item.name not in ("token", "token_expires_at", "link"):
                setattr(record, item.name, as_text(raw[item.name]))
        if token:
            record.token = as_text(token.get("token", ""))
            record.token_expires_at = float(as_text(token.get("expires_at", "0")) or 0)
        if person and isinstance(link, dict) and link.get("sealed"):
            record.link = Link(as_text(link["sealed"]), refused=as_text(link.get("refused", "")) == "1")
        return record

    async def save_chat(self, chat_key: str, **values: str) -> None:
        key = self.keys.chat(chat_key)
        await self._pipe(lambda p: (p.hset(key, mapping=values), p.expire(key, self.retention.chat)))

    async def save_token(self, chat_key: str, token: str, expires_at: float) -> None:
        key = self.keys.token(chat_key)
        ttl = max(1, int(expires_at - time.time()))
        await self._pipe(
            lambda p: (
                p.hset(key, mapping={"token": token, "expires_at": str(expires_at)}),
                p.expire(key, ttl),
            )
        )

    async def note_changed(self, chat_key: str) -> None:
        """The current project changes now (a turn, an upload or an export begins)."""
        await self.save_chat(chat_key, changed_at=repr(time.time()))

    async def drop_token(self, chat_key: str) -> None:
        await self.redis.delete(self.keys.token(chat_key))

    async def forget_session(self, chat_key: str) -> None:
        await self.redis.hdel(self.keys.chat(chat_key), "session_id", "task_id", "account")
