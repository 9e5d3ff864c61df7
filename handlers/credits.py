"""/credits: the account's balance."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import chat_context, services_of


async def credits(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Show available, frozen and total credits."""
    if ctx := chat_context(update, context):
        await services_of(context).credits(ctx)
