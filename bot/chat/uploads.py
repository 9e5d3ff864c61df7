"""Uploads: media from Telegram (one file or a whole album) and links, checked and sent to the backend.

Each file is checked by name and size before it is downloaded, and by content after; only then
are its bytes streamed to the backend under a sanitised name. The Telegram file URL (which holds
the bot token) never leaves the bot.

Why one module of this length: a single file, an album and a link take the same path (check,
fetch, forward, say what was added), and crash recovery replays that path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import logging
import math
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from telegram.error import TelegramError

from bot.chat.kit import ChatContext, Kit, resume
from bot.chat.projects import Connection, Projects
from bot.core import metrics
from bot.core.media import (
    ACCEPTED_LIST,
    KINDS,
    check_name,
    content_type,
    human_size,
    inspect_file,
    safe_filename,
)
from bot.core.texts import Lang, bullet_list, progress_bar, say
from bot.nemo.client import LocalFile, NemoClient, UploadedMedia
from bot.nemo.errors import FileTooLarge, UnsupportedFile
from bot.state.chats import ChatAddress
from bot.state.store import Store
from bot.telegram.flood import Thinned
from bot.telegram.output import CAPTION_LIMIT, ChatGone, Media, Telegram, plain
from bot.telegram.probe import image_thumbnail, probe_video
from bot.work.jobs import JobKind, Jobs

log = logging.getLogger(__name__)
MB = 1024 * 1024
TOKEN_IN_URL = re.compile(r"/bot\d+:[\w-]+", re.IGNORECASE)

CaptionHandler = Callable[[ChatContext, str], Awaitable[None]]


async def _ignore_caption(ctx: ChatContext, caption: str) -> None:
    return None


Orphaned = Callable[[set[str]], Awaitable[set[str]]]  # which of these replicas are gone


@dataclass(frozen=True)
class IncomingFile:
    """A file a user sent, as Telegram describes it before anything is downloaded."""

    file_id: str
    kind: str  # photo | video | animation | audio | document | video_note | voice
    name: str | None
    mime_type: str | None
    size: int | None
    message_id: int = 0

    @property
    def display_name(self) -> str:
        name = (self.name or self.kind.replace("_", " ")).replace("\n", " ")
        return name if len(name) <= 60 else name[:59] + "…"


@dataclass(frozen=True)
class UploadLimits:
    backend_mb: int
    telegram_download_mb: int
    progress_min_mb: float = math.inf  # uploads this large (in total) show a progress bar ...
    progress_seconds: float = 3.0  # ... edited at most this often


@dataclass
class Meter:
    """How much of an upload the backend connection has taken so far."""

    total: int
    sent: int = 0

    def add(self, count: int) -> None:
        self.sent += count


def upload_progress_text(lang: Lang, count: int, sent: int, total: int) -> str:
    """The upload progress message (pure): a bar, the percent, and how much of how much."""
    percent = min(100, sent * 100 // total) if total > 0 else 100
    return say(
        lang,
        "upload_progress",
        count=count,
        bar=progress_bar(percent),
        percent=percent,
        sent=human_size(min(sent, total)),
        total=human_size(total),
    )


def preview_of(file: IncomingFile, kind: str) -> Media | None:
    """How an added file is shown in its confirmation, without uploading it again (pure): a photo
    or video by the file id Telegram gave it; None for what must be drawn from the file itself
    (a document's thumbnail) or has no picture (audio)."""
    if file.kind == "photo":
        return Media("photo", file.file_id)
    if file.kind == "video" and kind == "video":
        return Media("video", file.file_id)
    return None


@dataclass(frozen=True)
class Batch:
    """Files sent on together, with the captions to act on once they are in."""

    files: list[IncomingFile]
    captions: list[str]


def close_album(parts: Iterable[tuple[IncomingFile, str | None]]) -> Batch:
    """What an album becomes when it closes (pure): its files in the order they were sent, whatever
    order they arrived in, each message once, and its captions in the same order."""
    by_message = {file.message_id: (file, caption) for file, caption in parts}
    ordered = [by_message[message_id] for message_id in sorted(by_message)]
    return Batch([file for file, _ in ordered], [caption for _, caption in ordered if caption])


class Uploads:
    def __init__(
        self,
        kit: Kit,
        projects: Projects,
        client: NemoClient,
        store: Store,
        telegram: Telegram,
        limits: UploadLimits,
        *,
        album_wait: float,
        owner: str,
        jobs: Jobs,
        adopt_seconds: float,
    ):
        self.kit = kit
        self.projects = projects
        self.client = client
        self.store = store
        self.telegram = telegram
        self.limits = limits
        self.album_wait = album_wait
        self.on_caption: CaptionHandler = _ignore_caption  # set by the services: act on it as text
        self.owner = owner  # this replica: the pending media it records are its own
        self.jobs = jobs
        self.adopt_seconds = adopt_seconds
        jobs.register(JobKind.ALBUM, self.flush_album)
        jobs.register(JobKind.ADOPT_ALBUMS, self.adopt_albums)

    async def receive(
        self, ctx: ChatContext, file: IncomingFile, *, album: str | None, caption: str | None
    ) -> None:
        """One file from a message: uploaded now, or gathered with the rest of its album.

        It is noted in Redis until its reply is sent, so a restarted bot forwards it all the same.
        An album is gathered in Redis too: its items may reach different replicas; its job
        (`flush_album`, keyed by the album) sends it on once it has been quiet for `album_wait`.
        """
        await self.store.add_pending_upload(
            ctx.chat.key, file.message_id, _pending(ctx, file, album, caption), self.owner
        )
        if album is None:
            try:
                await self.upload(ctx, [file], [caption] if caption else [])
            finally:
                await self.store.remove_pending_uploads(ctx.chat.key, [file.message_id])
            return
        await self.store.schedule_album(ctx.chat.key, album, time.time() + self.album_wait)
        await self._schedule_flush(ctx.chat.key, album, self.album_wait)

    async def _schedule_flush(self, chat_key: str, album: str, delay: float) -> bool:
        return await self.jobs.schedule(
            JobKind.ALBUM, f"{chat_key}|{album}", delay=delay, chat_key=chat_key, album=album
        )

    async def flush_album(self, chat_key: str, album: str) -> float | None:
        """An album's job step: once it has been quiet for `album_wait`, its files go on as one
        batch with one reply. Items that arrive while it is being sent go on in a second batch."""
        due = await self.store.album_due(chat_key, album)
        if due is None:
            return None  # sent on already
        if due > time.time():
            return due - time.time()  # an item arrived since this was scheduled
        try:
            await self._flush(chat_key, album)
        except Exception:
            log.exception("chat %s: album upload failed", chat_key)
        await self.store.album_done(chat_key, album)
        if await self.store.album_items(chat_key, album):  # arrived while the batch was sent
            await self.store.schedule_album(chat_key, album, time.time() + self.album_wait)
            return self.album_wait
        return None

    async def adopt_albums(self) -> float:
        """Give every album being gathered a job (one whose items arrived just as its job ended,
        or recorded by a process that stopped before scheduling it); every `adopt_seconds`."""
        albums = await self.store.albums()
        keys = [f"{chat_key}|{album}" for chat_key, album, _ in albums]
        missing = set(await self.jobs.unscheduled(JobKind.ALBUM, keys))
        for chat_key, album, due in albums:
            if f"{chat_key}|{album}" in missing:
                await self._schedule_flush(chat_key, album, due - time.time())
        return self.adopt_seconds

    async def _flush(self, chat_key: str, album: str) -> None:
        items = await self.store.album_items(chat_key, album)
        if not items:
            return
        batch = close_album((IncomingFile(**item["file"]), item.get("caption")) for item in items)
        await self.upload(_context(items[0], self.telegram), batch.files, batch.captions)
        await self.store.remove_pending_uploads(chat_key, [f.message_id for f in batch.files])

    async def sweep(self, orphaned: Orphaned) -> None:
        """Forward single files that a replica which has stopped had received but not yet sent on
        (albums are sent on by their jobs, whoever received them). Of replicas sweeping at
        once, each item goes to one."""
        owners = await self.store.pending_upload_owners() - {self.owner}
        dead = await orphaned(owners) if owners else set()
        if not dead:
            return
        for item in await self.store.take_over_uploads(dead, self.owner):
            if item.get("album"):
                continue
            chat_key, file = item["chat_key"], IncomingFile(**item["file"])
            log.info("chat %s: forwarding a file received before a restart", chat_key)
            try:
                caption = item.get("caption")
                await self.upload(_context(item, self.telegram), [file], [caption] if caption else [])
            except Exception as err:
                log.warning("chat %s: recovered upload failed: %s", chat_key, type(err).__name__)
            await self.store.remove_pending_uploads(chat_key, [file.message_id])

    async def upload(
        self, ctx: ChatContext, files: Sequence[IncomingFile], captions: Sequence[str] = ()
    ) -> bool:
        """Check, download and forward files with one progress message and one reply."""
        if not await self.kit.ensure_connected(ctx):
            return False
        declared = sum(file.size or 0 for file in files)
        big = declared >= self.limits.progress_min_mb * MB
        notice_id = await _notice(ctx, len(files), big=big)
        refused: list[str] = []
        previews: list[Media] = []
        with tempfile.TemporaryDirectory(prefix="nemo-upload-") as folder:
            ready: list[tuple[IncomingFile, LocalFile]] = []
            for index, file in enumerate(files):
                result = await self._prepare(ctx, file, Path(folder) / f"in-{index}", index)
                if isinstance(result, LocalFile):
                    ready.append((file, result))
                else:
                    refused.append(result)
            added: list[str] = []
            if ready:
                total = sum(local.path.stat().st_size for _, local in ready)
                meter = Meter(total)

                def send(c: Connection) -> Awaitable[list[UploadedMedia]]:
                    meter.sent = 0  # sent again with a renewed token: counted again
                    return self.client.upload_files(
                        c.token, c.session_id, [local for _, local in ready], on_bytes=meter.add
                    )

                shown = None
                if notice_id is not None and total >= self.limits.progress_min_mb * MB:
                    shown = asyncio.create_task(self._show_progress(ctx, notice_id, len(files), meter))
                try:
                    uploaded = await self.projects.call(ctx.chat, ctx.session_lang, send)
                except UnsupportedFile:
                    refused += [
                        say(ctx.lang, "backend_unsupported", name=f.display_name, formats=ACCEPTED_LIST)
                        for f, _ in ready
                    ]
                except FileTooLarge:
                    refused += [say(ctx.lang, "backend_too_large", name=f.display_name) for f, _ in ready]
                except Exception as err:
                    await self.kit.explain(ctx, err, message_id=notice_id)
                    return False
                else:
                    added = _describe_uploads(uploaded, ready)
                    previews = await _previews(ready, uploaded)
                finally:
                    if shown is not None:
                        shown.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await shown
        metrics.UPLOADS.labels("added").inc(len(added))
        metrics.UPLOADS.labels("refused").inc(len(refused))
        await _confirm(ctx, notice_id, _summary(ctx, added, refused), previews)
        if added:
            for caption in captions:
                await self.on_caption(ctx, caption)
        return bool(added)

    async def upload_links(self, ctx: ChatContext, urls: Sequence[str]) -> bool:
        """Have the backend fetch media by URL (bot-token URLs are refused, never forwarded)."""
        if any(TOKEN_IN_URL.search(url) for url in urls):
            await ctx.out.say(
                "unsupported", name="link", detail="a Telegram file link", formats=ACCEPTED_LIST
            )
            return False
        if not await self.kit.ensure_connected(ctx):
            return False
        notice_id = await _notice(ctx, len(urls))
        try:
            uploaded = await self.projects.call(
                ctx.chat,
                ctx.session_lang,
                lambda c: self.client.upload_urls(c.token, c.session_id, urls),
            )
        except UnsupportedFile:
            await ctx.out.edit_or_send(
                notice_id, say(ctx.lang, "backend_unsupported", name="link", formats=ACCEPTED_LIST)
            )
            return False
        except Exception as err:
            await self.kit.explain(ctx, err, message_id=notice_id)
            return False
        lines = [_describe(media, media.filename) for media in uploaded]
        await ctx.out.edit_or_send(notice_id, _summary(ctx, lines, []))
        return bool(lines)

    async def _show_progress(self, ctx: ChatContext, notice_id: int, count: int, meter: Meter) -> None:
        """Edit the notice with the upload's progress every `progress_seconds` while it moves (silent
        and cosmetic: dropped under load); cancelled when the upload ends."""
        shown = -1
        while True:
            await asyncio.sleep(self.limits.progress_seconds)
            if meter.sent == shown:
                continue
            shown = meter.sent
            try:
                await ctx.out.edit(
                    notice_id, upload_progress_text(ctx.lang, count, meter.sent, meter.total), cosmetic=True
                )
            except Thinned:
                continue
            except ChatGone:
                return
            except TelegramError as err:
                log.info("chat %s: upload progress not shown: %s", ctx.chat.key, type(err).__name__)

    async def _fetch(self, file: IncomingFile, path: Path) -> Path:
        """The file's bytes on local disk: with a local Bot API server, its own copy, read in place
        (copying gigabytes would stall every chat); else downloaded to `path`."""
        telegram_file = await self.telegram.bot.get_file(file.file_id)
        served = Path(telegram_file.file_path or "")
        if self.telegram.bot.local_mode and served.is_absolute() and await asyncio.to_thread(served.is_file):
            return served
        await telegram_file.download_to_drive(path, read_timeout=self.telegram.transfers.file_seconds)
        return path

    async def _prepare(self, ctx: ChatContext, file: IncomingFile, path: Path, index: int) -> LocalFile | str:
        """A checked local copy of the file, or the line that says why it was refused."""
        lang, name = ctx.lang, file.display_name
        declared, problem = check_name(file.name, file.mime_type)
        if problem is not None:
            return say(lang, problem.reason, name=name, detail=problem.detail, formats=ACCEPTED_LIST)
        if file.size is not None and file.size > self.limits.backend_mb * MB:
            return say(lang, "too_large", name=name, size=human_size(file.size), limit=self.limits.backend_mb)
        if file.size is not None and file.size > self.limits.telegram_download_mb * MB:
            size = human_size(file.size)
            return say(
                lang, "telegram_too_large", name=name, size=size, limit=self.limits.telegram_download_mb
            )
        try:
            path = await self._fetch(file, path)
        except TelegramError as err:
            log.warning("chat %s: download of a %s failed: %s", ctx.chat.key, file.kind, type(err).__name__)
            if "too big" in str(err).lower():
                size = human_size(file.size)
                return say(
                    lang, "telegram_too_large", name=name, size=size, limit=self.limits.telegram_download_mb
                )
            return say(lang, "download_failed", name=name)
        verdict = inspect_file(path, declared)
        if verdict.problem is not None:
            return say(
                lang, verdict.problem.reason, name=name, detail=verdict.problem.detail, formats=ACCEPTED_LIST
            )
        filename = safe_filename(file.name, verdict.extension, f"{file.kind}_{index + 1}")
        return LocalFile(path=path, filename=filename, content_type=content_type(verdict.extension))


async def _notice(ctx: ChatContext, count: int, *, big: bool = False) -> int | None:
    """The "uploading" notice's id; under load it is dropped and the summary comes alone. For a big
    upload it is where the progress bar goes: sent even under load (the user would otherwise see
    nothing for minutes), and silent."""
    try:
        notice = await ctx.out.say("uploading", count=count, cosmetic=not big, silent=big)
    except Thinned:
        return None
    return notice.message_id if notice else None


async def _previews(
    ready: list[tuple[IncomingFile, LocalFile]], uploaded: list[UploadedMedia]
) -> list[Media]:
    """A preview of each added picture or clip: by Telegram's file id where it has one of the right
    type (nothing uploaded), else a thumbnail drawn from the file while it is still on disk."""
    previews: list[Media] = []
    for index, (file, local) in enumerate(ready):
        kind = (
            uploaded[index].file_type
            if index < len(uploaded)
            else KINDS.get(local.filename.rsplit(".", 1)[-1], "")
        )
        preview = preview_of(file, kind)
        if preview is None and kind in ("image", "video"):
            draw = image_thumbnail if kind == "image" else _video_thumbnail
            thumbnail = await asyncio.to_thread(draw, local.path)
            preview = Media("photo", thumbnail, filename=f"preview_{index + 1}.jpg") if thumbnail else None
        if preview is not None:
            previews.append(preview)
    return previews


def _video_thumbnail(path: Path) -> bytes | None:
    return probe_video(path).thumbnail


async def _confirm(ctx: ChatContext, notice_id: int | None, summary: str, previews: list[Media]) -> None:
    """The one reply to an upload: its previews (one photo or video, or an album of them) with the
    summary as their caption, sent silently in place of the notice; where Telegram refuses that,
    the summary as text, as before."""
    if previews and len(plain(summary)) <= CAPTION_LIMIT:
        try:
            if len(previews) == 1:
                await ctx.out.send_media(previews[0], summary, silent=True)
            else:
                await ctx.out.send_album(previews, summary, silent=True)
        except TelegramError as err:
            log.info("chat %s: upload preview refused (%s), confirming in text", ctx.chat.key, err)
        else:
            if notice_id is not None:
                await ctx.out.delete(notice_id)
            return
    await ctx.out.edit_or_send(notice_id, summary)


def _pending(ctx: ChatContext, file: IncomingFile, album: str | None, caption: str | None) -> dict[str, Any]:
    """What any replica needs to forward a file: where it came from, who sent it, and Telegram's
    file id."""
    return {
        "chat_key": ctx.chat.key,
        "chat_id": ctx.chat.chat_id,
        "thread_id": ctx.chat.thread_id,
        "lang": ctx.lang,
        "session_lang": ctx.session_lang,
        "user_id": ctx.user_id,
        "shared": ctx.shared,
        "album": album,
        "caption": caption,
        "file": asdict(file),
    }


def _context(item: dict[str, Any], telegram: Telegram) -> ChatContext:
    """The chat and sender of a pending file, rebuilt from its record (see `_pending`)."""
    address = ChatAddress(
        item["chat_id"], item["thread_id"], item["chat_key"], item["lang"], item["session_lang"]
    )
    ctx = resume(address, telegram)
    return dataclasses.replace(ctx, user_id=item.get("user_id"), shared=bool(item.get("shared")))


def _describe(media: UploadedMedia, fallback_name: str, size: int | None = None) -> str:
    name = media.filename or fallback_name
    details = [media.file_type]
    if media.duration:
        details.append(f"{media.duration:.1f} s")
    elif media.width and media.height:
        details.append(f"{media.width}×{media.height}")
    elif size is not None:
        details.append(human_size(size))
    return f"{name} — {', '.join(details)}"


def _describe_uploads(
    uploaded: list[UploadedMedia], ready: list[tuple[IncomingFile, LocalFile]]
) -> list[str]:
    lines = []
    for index, (file, local) in enumerate(ready):
        media = (
            uploaded[index]
            if index < len(uploaded)
            else UploadedMedia(local.filename, KINDS.get(local.filename.rsplit(".", 1)[-1], "file"))
        )
        lines.append(
            _describe(media, local.filename, local.path.stat().st_size if local.path.exists() else file.size)
        )
    return lines


def _summary(ctx: ChatContext, added: list[str], refused: list[str]) -> str:
    """One reply for a batch: what was added (escaped here) and what was not (already escaped)."""
    parts = []
    if added:
        parts.append(say(ctx.lang, "uploaded") + "\n" + bullet_list([html.escape(line) for line in added]))
    if refused:
        parts.append(say(ctx.lang, "upload_refused") + "\n" + bullet_list(refused))
    return "\n\n".join(parts) or say(ctx.lang, "unexpected")
