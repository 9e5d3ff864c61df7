"""What every handler needs: the services, a ChatContext built from an update, and the rule for
when a message in a group or channel is meant for the bot."""

from __future__ import annotations

import re
import time

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes, filters

from bot.flows import ChatContext
from bot.projects import ChatRef
from bot.services import Services
from bot.telegram_io import ChatOutput
from bot.texts import language_of, session_language

ALBUM_MEMORY_SECONDS = 60  # album items arrive within seconds of each other


def services_of(context: ContextTypes.DEFAULT_TYPE) -> Services:
    services: Services = context.application.bot_data["services"]
    return services


def chat_context(update: Update, context: ContextTypes.DEFAULT_TYPE) -> ChatContext | None:
    """Where the update came from and where replies go; None for updates without a chat."""
    chat, message, user = update.effective_chat, update.effective_message, update.effective_user
    if chat is None:
        return None
    shared = chat.type != ChatType.PRIVATE
    thread_id = message.message_thread_id if message is not None and message.is_topic_message else None
    code = user.language_code if user else None
    lang = language_of(code)
    # In shared chats, quote the message being answered so the reply is clearly addressed.
    quoted = message.message_id if message is not None and shared and update.callback_query is None else None
    out = ChatOutput(context.bot, chat.id, lang, thread_id=thread_id, reply_to=quoted)
    key = ChatRef.of(chat.id, thread_id).key
    per_user = (
        shared
        and chat.type != ChatType.CHANNEL
        and services_of(context).settings.group_projects == "per_user"
    )
    if per_user and user is not None:
        key = f"{key}:u{user.id}"  # each member of the group gets a project of their own
    user_id = user.id if user is not None else None
    return ChatContext(ChatRef(chat.id, thread_id, key), lang, session_language(code), out, user_id, shared)


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


class _Addressed(filters.MessageFilter):
    """Private chats: everything. Groups and channels: only what mentions or replies to the bot,
    and the rest of an album whose captioned item did (only one item of an album has a caption)."""

    def __init__(self) -> None:
        super().__init__(name="ADDRESSED")
        self._albums: dict[str, float] = {}  # media_group_id -> when it was addressed

    def filter(self, message: Message) -> bool:
        if message.chat.type == ChatType.PRIVATE:
            return True
        now = time.monotonic()
        self._albums = {k: t for k, t in self._albums.items() if now - t < ALBUM_MEMORY_SECONDS}
        if mentions_bot(message):
            if message.media_group_id:
                self._albums[message.media_group_id] = now
            return True
        return message.media_group_id is not None and message.media_group_id in self._albums


ADDRESSED = _Addressed()


def without_mention(text: str, username: str | None) -> str:
    """The text with the bot's @username taken out, so "@bot export" routes like "export"."""
    if not username:
        return text.strip()
    return re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE).strip()
