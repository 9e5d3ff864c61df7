"""/export: render the timeline and deliver the MP4."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import chat_context, services_of


async def export(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Start a render of the current draft."""
    if ctx := chat_context(update, context):
        await services_of(context).export(ctx)
