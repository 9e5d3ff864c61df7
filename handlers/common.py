"""What every handler needs: the services, and a ChatContext built from an update."""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from bot.flows import ChatContext
from bot.projects import ChatRef
from bot.services import Services
from bot.telegram_io import ChatOutput
from bot.texts import language_of, session_language


def services_of(context: ContextTypes.DEFAULT_TYPE) -> Services:
    services: Services = context.application.bot_data["services"]
    return services


def chat_context(update: Update, context: ContextTypes.DEFAULT_TYPE) -> ChatContext | None:
    """Where the update came from and where replies go; None for updates without a chat."""
    chat, message, user = update.effective_chat, update.effective_message, update.effective_user
    if chat is None:
        return None
    thread_id = message.message_thread_id if message is not None and message.is_topic_message else None
    code = user.language_code if user else None
    lang = language_of(code)
    # In shared chats, quote the message being answered so the reply is clearly addressed.
    reply_to = message.message_id if message is not None and chat.type != ChatType.PRIVATE else None
    out = ChatOutput(context.bot, chat.id, lang, thread_id=thread_id, reply_to=reply_to)
    return ChatContext(ChatRef.of(chat.id, thread_id), lang, session_language(code), out)
