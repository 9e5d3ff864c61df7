"""/status: the timeline summary and the project's media."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import chat_context, services_of


async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Show the timeline."""
    if ctx := chat_context(update, context):
        await services_of(context).status(ctx)
