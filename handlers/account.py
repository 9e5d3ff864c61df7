"""/login, /logout and /open: the person's own NemoVideo account, and the project in the browser."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import chat_context, services_of


async def login(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Explain how to link one's own account (a token sent with it is taken by `handlers.tokens`)."""
    if ctx := chat_context(update, context):
        await services_of(context).login(ctx)


async def logout(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Forget the person's linked account."""
    if ctx := chat_context(update, context):
        await services_of(context).logout(ctx)


async def open_project(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button that opens the chat's project on the website."""
    if ctx := chat_context(update, context):
        await services_of(context).open_in_browser(ctx)
