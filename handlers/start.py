"""/start, /help, /new and /cancel."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import chat_context, services_of


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greet with the profile's examples, then connect the chat."""
    if ctx := chat_context(update, context):
        await services_of(context).greet(ctx)


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Explain what the bot does and how."""
    if ctx := chat_context(update, context):
        await services_of(context).help(ctx)


async def new_project(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Start a fresh agent session for the chat."""
    if ctx := chat_context(update, context):
        await services_of(context).new_project(ctx)


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stop waiting for the running chat turn."""
    if ctx := chat_context(update, context):
        await services_of(context).cancel(ctx)
