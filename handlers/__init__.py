"""Telegram handlers: one thin module per flow, registered here on the Application."""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.settings import Settings
from handlers import (
    access,
    account,
    buttons,
    chat,
    credits,
    dedupe,
    errors,
    export,
    projects,
    start,
    status,
    tokens,
    upload,
    usage,
)
from handlers.addressing import Addressed

NEW_POSTS = filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST  # edits never re-run anything
MEDIA = (
    filters.PHOTO
    | filters.VIDEO
    | filters.ANIMATION
    | filters.AUDIO
    | filters.Document.ALL
    | filters.VIDEO_NOTE
    | filters.VOICE
)


def register(application: Application, settings: Settings) -> None:  # type: ignore[type-arg]
    addressed = Addressed(settings.album_memory_seconds)
    application.add_handler(TypeHandler(Update, dedupe.once), group=-3)
    application.add_handler(TypeHandler(Update, access.gate), group=-2)
    application.add_handler(TypeHandler(Update, tokens.guard), group=-1)
    commands = {
        "start": start.start,
        "help": start.help_command,
        "new": start.new_project,
        "projects": projects.projects,
        "rename": projects.rename,
        "cancel": start.cancel,
        "export": export.export,
        "status": status.status,
        "credits": credits.credits,
        "usage": usage.usage,
        "login": account.login,
        "logout": account.logout,
        "open": account.open_project,
    }
    for name, callback in commands.items():
        application.add_handler(CommandHandler(name, callback, filters=NEW_POSTS))
    application.add_handler(CallbackQueryHandler(buttons.on_button, pattern=r"^act:"))
    application.add_handler(
        MessageHandler(NEW_POSTS & filters.TEXT & ~filters.COMMAND & addressed, chat.on_text)
    )
    application.add_handler(MessageHandler(NEW_POSTS & MEDIA & addressed, upload.on_media))
    application.add_handler(
        MessageHandler(NEW_POSTS & filters.ChatType.PRIVATE & ~filters.TEXT & ~MEDIA, upload.on_other)
    )
    application.add_handler(
        MessageHandler(NEW_POSTS & filters.ChatType.PRIVATE & filters.COMMAND, start.help_command)
    )
    application.add_error_handler(errors.on_error)
