"""Each update is handled once, even when Telegram hands it out again after a crash.

Telegram re-sends updates whose receipt was not confirmed; a bot killed between fetching an update
and confirming it would otherwise run the same chat turn (and spend the same credits) twice.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes

from handlers.common import services_of

log = logging.getLogger(__name__)


async def once(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stop an update already seen by this bot (any process) from reaching the handlers."""
    if not isinstance(update, Update):
        return
    try:
        first = await services_of(context).first_sight(update.update_id)
    except RedisError:
        return  # better to risk a repeat than to drop the message
    if not first:
        log.info("update %s already handled, skipped", update.update_id)
        raise ApplicationHandlerStop
