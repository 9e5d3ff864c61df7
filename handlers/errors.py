"""The last line of defence: log any handler failure (without secrets) and tell the user."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ContextTypes

from handlers.common import chat_context

log = logging.getLogger(__name__)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure; answer the chat it came from, if any, with a short apology."""
    log.error("handler failed: %s", type(context.error).__name__, exc_info=context.error)
    if not isinstance(update, Update) or not (ctx := chat_context(update, context)):
        return
    try:
        await ctx.out.say("unexpected")
    except Exception as err:
        log.info("could not send the apology: %s", type(err).__name__)
