"""/projects and /rename: the chat's several projects (/new starts another: handlers.start)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import chat_context, services_of


async def projects(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The chat's projects, each a button that makes it current."""
    if ctx := chat_context(update, context):
        await services_of(context).projects(ctx)


async def rename(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """`/rename <name>`: the current project's name."""
    if ctx := chat_context(update, context):
        await services_of(context).rename(ctx, " ".join(context.args or []))
