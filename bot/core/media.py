"""Which files the backend takes, checked by name and by content: pure functions.

Names come from users and are untrusted: `safe_filename` reduces any name to a plain basename
with an accepted extension before it goes anywhere.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import filetype

KINDS: dict[str, str] = {
    "mp4": "video",
    "mov": "video",
    "avi": "video",
    "webm": "video",
    "mkv": "video",
    "jpg": "image",
    "png": "image",
    "gif": "image",
    "webp": "image",
    "mp3": "audio",
    "wav": "audio",
    "m4a": "audio",
    "aac": "audio",
}
ALIASES = {"jpeg": "jpg", "jpe": "jpg", "qt": "mov", "m4v": "mp4", "oga": "ogg", "opus": "ogg"}
MIME_EXTENSIONS = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/x-msvideo": "avi",
    "video/webm": "webm",
    "video/x-matroska": "mkv",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "audio/aac": "aac",
    "audio/ogg": "ogg",
}
CONTENT_TYPES = {ext: mime for mime, ext in reversed(MIME_EXTENSIONS.items())}
ISO_BMFF = {"mp4", "mov", "m4a"}  # one container family: a .mov named .mp4 is still fine
ACCEPTED_LIST = ", ".join(KINDS)
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Problem:
    """Why a file cannot be used; `reason` is a key of bot.core.texts."""

    reason: str
    detail: str = ""


def extension_of(name: str) -> str:
    ext = Path(name).suffix.lower().lstrip(".")
    return ALIASES.get(ext, ext)


def check_name(name: str | None, mime_type: str | None) -> tuple[str, Problem | None]:
    """The declared format of a file from its name (or MIME type when it has no name)."""
    ext = extension_of(name) if name else ""
    if not ext and mime_type:
        ext = MIME_EXTENSIONS.get(mime_type.lower(), "")
    if ext == "ogg":
        return ext, Problem("voice_format")
    if ext not in KINDS:
        return ext, Problem("unsupported", ext or (mime_type or "unknown"))
    return ext, None


def sniff(head: bytes) -> str | None:
    """The format the first bytes of a file show, as one of our extensions (or another name)."""
    if not head:
        return None
    kind = filetype.guess(head)
    if kind is None:
        return "aac" if head[:2] in (b"\xff\xf1", b"\xff\xf9") else None
    ext: str = ALIASES.get(kind.extension, kind.extension)
    return ext


def check_content(declared: str, head: bytes, size: int) -> Problem | None:
    """Does the content match an accepted format, and the one the name promises?"""
    if size == 0:
        return Problem("empty")
    actual = sniff(head)
    if actual is None:
        return Problem("unreadable", declared)
    if actual == "ogg":
        return Problem("voice_format")
    if actual not in KINDS:
        return Problem("unsupported", actual)
    same_family = actual == declared or {actual, declared} <= ISO_BMFF
    if not same_family and KINDS.get(declared) != KINDS[actual]:
        return Problem("mismatch", f"{declared}/{actual}")
    return None


def iso_bmff_complete(path: Path) -> bool:
    """True when an MP4/MOV/M4A file's top-level boxes add up to its size and include `moov`.

    A download cut short (or a truncated upload) fails this; a complete file passes.
    """
    size = path.stat().st_size
    seen: set[bytes] = set()
    offset = 0
    with path.open("rb") as handle:
        while offset < size:
            handle.seek(offset)
            header = handle.read(16)
            if len(header) < 8:
                return False
            box_size, box_type = struct.unpack(">I4s", header[:8])
            if box_size == 1:
                if len(header) < 16:
                    return False
                box_size = struct.unpack(">Q", header[8:16])[0]
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8 or offset + box_size > size:
                return False
            seen.add(box_type)
            offset += box_size
    return b"moov" in seen


@dataclass(frozen=True)
class FileCheck:
    extension: str  # the format to upload it as (what the content shows, when accepted)
    problem: Problem | None


def inspect_file(path: Path, declared: str) -> FileCheck:
    """Check a downloaded file's content against the format its name declared."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    problem = check_content(declared, head, size)
    actual = sniff(head) or declared
    extension = actual if actual in KINDS else declared
    if problem is None and extension in ISO_BMFF and not iso_bmff_complete(path):
        problem = Problem("truncated")
    return FileCheck(extension, problem)


def content_type(ext: str) -> str:
    return CONTENT_TYPES.get(ext, "application/octet-stream")


SAFE_CHARS = re.compile(r"[^\w.\- ]+")


def safe_filename(name: str | None, ext: str, fallback: str) -> str:
    """A plain basename ending in `.ext`: no directories, control characters or odd symbols."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFKC", base)
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    stem = SAFE_CHARS.sub("_", base).strip(" ._")
    while stem and extension_of(stem) in (*KINDS, *ALIASES, "exe", "bat", "cmd", "sh", "js", "ogg"):
        stem = stem.rsplit(".", 1)[0].strip(" ._")
    stem = stem[:80] or fallback
    return f"{stem}.{ext}"


def human_size(size: int | None) -> str:
    if size is None:
        return "unknown size"
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"
