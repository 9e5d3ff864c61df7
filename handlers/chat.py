"""Plain text: routed by intent to an action, or sent to the agent as a chat turn."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.addressing import without_mention
from handlers.common import chat_context, services_of


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Export, credits, status, upload help, links, or a chat turn."""
    message = update.effective_message
    if message is None or not message.text or not (ctx := chat_context(update, context)):
        return
    text = without_mention(message.text, context.bot.username)
    if text:
        await services_of(context).act_on_text(ctx, text)
