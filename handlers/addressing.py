"""Who a message is for, and whose project it belongs to: the rules for private chats, groups,
forum topics and channels, in one place.

- In a private chat everything is for the bot.
- In a group or channel only what mentions the bot, replies to it or starts with a command (and the
  rest of an album whose captioned item mentioned it: only one item of an album has a caption).
- A project is the chat's, or one forum topic's; with GROUP_PROJECTS=per_user, each group member's.
"""

from __future__ import annotations

import re
import time

from telegram import Chat, Message, MessageEntity, User
from telegram.constants import ChatType
from telegram.ext import filters

from bot.chat.projects import ChatRef


def mentions_bot(message: Message) -> bool:
    """The message (or caption) @-mentions the bot, or is a reply to one of its messages."""
    bot = message.get_bot()
    reply = message.reply_to_message
    if reply is not None and reply.from_user is not None and reply.from_user.id == bot.id:
        return True
    username = f"@{bot.username}".lower() if bot.username else None
    entities = message.parse_entities() or message.parse_caption_entities()
    for entity, text in entities.items():
        if entity.type == MessageEntity.MENTION and username and text.lower() == username:
            return True
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot.id:
            return True
    return False


def is_addressed(chat: Chat, message: Message | None, *, button: bool = False) -> bool:
    """Whether an update speaks to the bot (a button press always does)."""
    if chat.type == ChatType.PRIVATE or button:
        return True
    if message is None:
        return False
    return bool(message.text and message.text.startswith("/")) or mentions_bot(message)


def without_mention(text: str, username: str | None) -> str:
    """The text with the bot's @username taken out, so "@bot export" routes like "export"."""
    if not username:
        return text.strip()
    return re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE).strip()


def project_of(chat: Chat, message: Message | None, user: User | None, *, per_user: bool) -> ChatRef:
    """Where replies go (the chat, or its forum topic) and the project they belong to."""
    thread_id = message.message_thread_id if message is not None and message.is_topic_message else None
    ref = ChatRef.of(chat.id, thread_id)
    if per_user and user is not None and chat.type not in (ChatType.PRIVATE, ChatType.CHANNEL):
        return ChatRef(chat.id, thread_id, f"{ref.key}:u{user.id}")  # each member's own project
    return ref


class Addressed(filters.MessageFilter):
    """The handlers' filter: messages meant for the bot (see the module), albums included; an
    album is remembered `album_memory` seconds after its addressed item."""

    def __init__(self, album_memory: float) -> None:
        super().__init__(name="Addressed")
        self._album_memory = album_memory
        self._albums: dict[str, float] = {}  # media_group_id -> when it was addressed

    def filter(self, message: Message) -> bool:
        if message.chat.type == ChatType.PRIVATE:
            return True
        now = time.monotonic()
        self._albums = {k: t for k, t in self._albums.items() if now - t < self._album_memory}
        if mentions_bot(message):
            if message.media_group_id:
                self._albums[message.media_group_id] = now
            return True
        return message.media_group_id is not None and message.media_group_id in self._albums
