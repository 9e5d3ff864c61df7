"""/start, /help, /new and /cancel."""

from __future__ import annotations

import re

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import chat_context, services_of

DEEP_LINK = re.compile(r"[A-Za-z0-9_-]{1,64}")  # Telegram's rule for a start payload


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greet with the profile's examples, then connect the chat. A deep link
    (`t.me/<bot>?start=<payload>`) arrives as `/start <payload>`."""
    if ctx := chat_context(update, context):
        payload = context.args[0] if context.args and DEEP_LINK.fullmatch(context.args[0]) else None
        await services_of(context).greet(ctx, payload)


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Explain what the bot does and how."""
    if ctx := chat_context(update, context):
        await services_of(context).help(ctx)


async def new_project(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Start a fresh project for the chat (the others stay in /projects)."""
    if ctx := chat_context(update, context):
        await services_of(context).new_project(ctx)


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stop waiting for the running chat turn."""
    if ctx := chat_context(update, context):
        await services_of(context).cancel(ctx)
