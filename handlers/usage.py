"""/usage: the operator's view of today's activity (ADMIN_USER_IDS only)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import chat_context, services_of


async def usage(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Active chats, turns, uploads, renders and failures today; silence for anyone else."""
    if ctx := chat_context(update, context):
        await services_of(context).usage(ctx)
