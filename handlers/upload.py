"""Media messages (photos, videos, audio, documents, albums) and message types the bot can't use."""

from __future__ import annotations

from telegram import Message, Update
from telegram.ext import ContextTypes

from bot.chat.uploads import IncomingFile
from handlers.addressing import without_mention
from handlers.common import chat_context, services_of


def incoming_file(message: Message) -> IncomingFile | None:
    """The file a message carries, described as Telegram sent it (photos: the largest size)."""
    mid = message.message_id
    if message.photo:
        photo = message.photo[-1]
        return IncomingFile(photo.file_id, "photo", None, "image/jpeg", photo.file_size, mid)
    for kind in ("video", "animation", "audio", "document", "video_note", "voice"):
        media = getattr(message, kind)
        if media is not None:
            name = getattr(media, "file_name", None)
            mime = getattr(media, "mime_type", None) or ("video/mp4" if kind == "video_note" else None)
            return IncomingFile(media.file_id, kind, name, mime, media.file_size, mid)
    return None


async def on_media(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Upload the file (an album is gathered into one batch)."""
    message = update.effective_message
    if message is None or not (ctx := chat_context(update, context)):
        return
    file = incoming_file(message)
    if file is None:
        return
    caption = without_mention(message.caption, context.bot.username) if message.caption else None
    await services_of(context).receive_media(ctx, file, message.media_group_id, caption or None)


async def on_other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stickers, locations, polls...: say what the bot can work with."""
    if ctx := chat_context(update, context):
        await ctx.out.say("unsupported_message")
