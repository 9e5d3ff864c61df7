"""The last line of defence: log any handler failure (without secrets) and tell the user."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from telegram import Update
from telegram.ext import ContextTypes

from bot.telegram.output import ChatGone
from handlers.common import chat_context

log = logging.getLogger(__name__)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure; answer the chat it came from, if any, with a short apology."""
    error = context.error
    if isinstance(error, ChatGone):  # the user blocked the bot or the chat is gone: nobody to tell
        log.info("chat gone while handling an update: %s", error)
        return
    if isinstance(error, RedisError):
        log.warning("Redis unavailable while handling an update: %s", type(error).__name__)
    else:
        log.error("handler failed: %s", type(error).__name__, exc_info=error)
    if not isinstance(update, Update) or not (ctx := chat_context(update, context)):
        return
    try:
        await ctx.out.say("storage_unavailable" if isinstance(error, RedisError) else "unexpected")
    except Exception as err:
        log.info("could not send the apology: %s", type(err).__name__)
