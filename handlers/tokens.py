"""The token guard, before every handler: a NemoVideo token in a message is never passed on.

In a private chat it is the person logging in (as the message after /login, or `/login <token>`).
In a group or channel, a message meant for the bot that holds one is a leak: it is deleted where
the bot may, and the sender is told to revoke the token. Nothing else sees the message.
"""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot.core.accounts import tokens_in
from handlers.addressing import is_addressed
from handlers.common import chat_context, services_of


async def guard(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Take a token sent in private as a login; stop one posted in a group or channel."""
    if not isinstance(update, Update) or (message := update.effective_message) is None:
        return
    found = tokens_in(message.text) or tokens_in(message.caption)
    if not found or update.effective_chat is None or not (ctx := chat_context(update, context)):
        return
    services = services_of(context)
    if update.effective_chat.type == ChatType.PRIVATE:
        await services.login(ctx, found[0], message.message_id)
    elif is_addressed(update.effective_chat, message):
        user = update.effective_user
        sender = user.first_name if user is not None else update.effective_chat.title or ""
        await services.token_leaked(ctx, message.message_id, sender)
    raise ApplicationHandlerStop
