"""What every handler needs: the services, and a ChatContext built from an update."""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from bot.chat.kit import ChatContext
from bot.chat.services import Services
from bot.core.texts import language_of, session_language
from handlers.addressing import project_of


def services_of(context: ContextTypes.DEFAULT_TYPE) -> Services:
    services: Services = context.application.bot_data["services"]
    return services


def chat_context(update: Update, context: ContextTypes.DEFAULT_TYPE) -> ChatContext | None:
    """Where the update came from and where replies go; None for updates without a chat."""
    chat, message, user = update.effective_chat, update.effective_message, update.effective_user
    if chat is None:
        return None
    shared = chat.type != ChatType.PRIVATE
    services = services_of(context)
    per_user = services.settings.group_projects == "per_user"
    ref = project_of(chat, message, user, per_user=per_user)
    code = user.language_code if user else None
    lang = language_of(code)
    # In shared chats, quote the message being answered so the reply is clearly addressed.
    quoted = message.message_id if message is not None and shared and update.callback_query is None else None
    out = services.output(chat.id, lang, thread_id=ref.thread_id, reply_to=quoted)
    user_id = user.id if user is not None else None
    asked = message.message_id if message is not None and update.callback_query is None else None
    return ChatContext(ref, lang, session_language(code), out, user_id, shared, asked)
