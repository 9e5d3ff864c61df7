"""Previews of what the agent made: each image or clip it generated, shown in the chat as a photo or
a video (Telegram fetches it from the backend's CDN URL) instead of only being named.

The backend's `generated_media` items have no published schema, so they are read defensively: an
item without an http(s) URL, or of a kind that is not a picture or a clip, is left out.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from telegram.error import TelegramError

from bot.core.media import KINDS
from bot.core.texts import say
from bot.telegram.output import ALBUM_LIMIT, ChatOutput, Media

log = logging.getLogger(__name__)

URL_KEYS = ("url", "cdn_url", "file_url", "output_url", "src")
NAME_KEYS = ("name", "title", "filename", "file_name", "prompt")
KIND_KEYS = ("file_type", "media_type", "type", "kind")
IMAGE_WORDS = frozenset({"image", "photo", "picture", "img"})
VIDEO_WORDS = frozenset({"video", "clip", "movie"})
NAME_LENGTH = 60


@dataclass(frozen=True)
class Generated:
    kind: Literal["image", "video"]
    url: str
    name: str


def generated_items(items: Sequence[Any]) -> list[Generated]:
    """The images and clips among the state's `generated_media` (pure; odd items are left out)."""
    found = []
    for item in items:
        if not isinstance(item, dict):
            continue
        url = next((v for k in URL_KEYS if isinstance(v := item.get(k), str) and v), "")
        if not url.lower().startswith(("http://", "https://")):
            continue
        kind = _kind(item, url)
        if kind is None:
            continue
        found.append(Generated(kind, url, _name(item, url)))
    return found


def new_generated(before: Sequence[Generated], after: Sequence[Generated]) -> list[Generated]:
    """What a turn added (pure): items of `after` whose URL was not in `before`, each once, in order."""
    seen = {item.url for item in before}
    fresh = []
    for item in after:
        if item.url not in seen:
            seen.add(item.url)
            fresh.append(item)
    return fresh


async def show_generated(out: ChatOutput, items: Sequence[Generated]) -> None:
    """A silent photo or video of each new item, captioned with its name; where Telegram refuses
    one (it could not fetch it, or it is not what it claims), its name and link as text. Sent as
    answers: as cosmetic traffic they would give way even in a quiet chat, whose window a turn's
    first and last words have just half filled; but `later` ones, which under load wait behind
    other chats' first words."""
    for item in items[:ALBUM_LIMIT]:
        caption = say(
            out.lang, "generated_image" if item.kind == "image" else "generated_clip", name=item.name
        )
        try:
            await out.send_media(
                Media("photo" if item.kind == "image" else "video", item.url),
                caption,
                silent=True,
                later=True,
            )
        except TelegramError as err:
            log.info("generated %s not shown as media (%s): sent as a link", item.kind, err)
            await out.send(f"{caption}\n{html.escape(item.url)}", silent=True, later=True)


def _kind(item: dict[str, Any], url: str) -> Literal["image", "video"] | None:
    for key in KIND_KEYS:
        value = item.get(key)
        if isinstance(value, str):
            word = value.lower().split("/")[0]  # "image/png" too
            if word in IMAGE_WORDS:
                return "image"
            if word in VIDEO_WORDS:
                return "video"
    path = urlsplit(url).path
    extension = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    kind = KINDS.get(extension)
    return "image" if kind == "image" else "video" if kind == "video" else None


def _name(item: dict[str, Any], url: str) -> str:
    for key in NAME_KEYS:
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            text = " ".join(value.split())
            return text if len(text) <= NAME_LENGTH else text[: NAME_LENGTH - 1] + "…"
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]) or "media"
