"""Inline buttons: Export, Timeline and Retry act on the chat the button is pressed in."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.telegram.output import CALLBACK_PREFIX
from handlers.common import chat_context, services_of


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Run the button's action; unknown or forged data is answered and ignored."""
    query = update.callback_query
    if query is None:
        return
    await query.answer()
    action = (query.data or "").removeprefix(CALLBACK_PREFIX)
    if not (ctx := chat_context(update, context)):
        return
    await services_of(context).press(ctx, action)
