"""/usage: the operator's view of today's activity (ADMIN_USER_IDS only)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.texts import say
from handlers.common import chat_context, services_of


async def usage(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Active chats, turns, uploads, renders and failures today; silence for anyone else."""
    services = services_of(context)
    user = update.effective_user
    if not services.guard.policy.is_admin(user.id if user else None) or not (
        ctx := chat_context(update, context)
    ):
        return
    counts, active = await services.guard.report()
    await ctx.out.send(say(ctx.lang, "usage", active=active, **counts))
