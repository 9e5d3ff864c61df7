"""The gate before every handler: only allowed users and chats get through.

An outsider hears one polite refusal (per day), then nothing: no reply to every message, and in
groups nothing at all unless they address the bot.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes

from handlers.addressing import is_addressed
from handlers.common import chat_context, services_of


async def gate(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stop updates from users or chats the operator did not allow."""
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    services = services_of(context)
    user = update.effective_user
    chat = update.effective_chat
    if services.allows(user.id if user else None, chat.id):
        return
    addressed = is_addressed(chat, update.effective_message, button=update.callback_query is not None)
    if update.callback_query is not None:
        await update.callback_query.answer()
    if addressed and await services.first_refusal(user.id if user else None, chat.id):
        ctx = chat_context(update, context)
        if ctx is not None:
            await ctx.out.say("not_allowed")
    raise ApplicationHandlerStop
