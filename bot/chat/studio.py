"""The studio's side of the chat layer: a project as the Mini App shows it, and a touch on one of its
segments turned into a clear instruction to the agent (as the quick-action buttons are).

The view never speaks in the chat: a project not connected yet shows empty, a failing backend
raises. What the studio asks for (an action, a segment's change, a switch) goes through `Services`,
behind the same gate as a typed message, and is answered in the chat.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from bot.chat.kit import ChatContext, Kit, browser_link
from bot.chat.renders import draft_digest
from bot.chat.switcher import Switcher
from bot.core.texts import words
from bot.core.timeline import StudioTrack, duration_ms, layout, studio_tracks
from bot.nemo.client import NemoClient
from bot.nemo.errors import NemoError

log = logging.getLogger(__name__)
SEGMENT_OPS = ("remove", "earlier", "later", "shorter")
MEDIA_NAME_KEYS = ("name", "file_name", "filename", "title", "prompt")


def track_json(track: StudioTrack) -> dict[str, Any]:
    return {
        "kind": track.kind,
        "label": track.label,
        "segments": [
            {
                "index": s.index,
                "name": s.name,
                "start_ms": s.start_ms,
                "length_ms": s.length_ms,
                "volume": s.volume,
                "title": s.title,
                "thumbnail": s.thumbnail,
            }
            for s in track.segments
        ],
    }


def media_json(item: dict[str, Any]) -> dict[str, Any]:
    """One of the project's media as the studio lists it (the backend's fields read defensively)."""
    url = item.get("url") if isinstance(item.get("url"), str) else None
    name = next((str(item[k]) for k in MEDIA_NAME_KEYS if isinstance(item.get(k), str) and item[k]), "")
    if not name and url:
        name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    kind = str(item.get("file_type") or item.get("type") or ("video" if "duration" in item else "file"))
    return {"name": name[:80], "kind": kind, "url": url if url and url.startswith("https://") else None}


def clock_text(ms: int) -> str:
    seconds = round(ms / 1000)
    return f"{seconds // 60}:{seconds % 60:02d}"


class Studio:
    def __init__(self, kit: Kit, client: NemoClient, switcher: Switcher, *, refresh_seconds: float):
        self.kit = kit
        self.projects = kit.projects
        self.store = kit.store
        self.client = client
        self.switcher = switcher
        self.refresh_seconds = refresh_seconds

    async def view(self, ctx: ChatContext) -> dict[str, Any]:
        """The current project as the studio draws it (one state read, one balance read)."""
        listing = await self.switcher.listing(ctx.chat, ctx.lang)
        current = next(p for p in listing if p.current)
        account, _ = await self.projects.account(ctx.chat)
        tracks: list[StudioTrack] = []
        media: list[dict[str, Any]] = []
        duration, available, digest, video = 0, None, "", None
        connection = await self.projects.connected(ctx.chat, ctx.session_lang)
        if connection is not None:
            account = connection.account
            state = await self.projects.state(ctx.chat, ctx.session_lang, connection=connection)
            digest = draft_digest(state.draft)
            tracks = studio_tracks(state.draft)
            duration = duration_ms(state.draft, layout(state.draft))
            media = [media_json(item) for item in state.media]
            balance = await self.projects.call(
                ctx.chat, ctx.session_lang, lambda c: self.client.credits(c.token), connection=connection
            )
            available = balance.available
            last = await self.store.last_delivered(ctx.chat.key)
            if last is not None and last.url and last.session_id == connection.session_id:  # this project's
                video = {"url": last.url, "name": "video.mp4"}
        return {
            "lang": ctx.lang,
            "refresh_seconds": self.refresh_seconds,
            "project": _project_json(current),
            "projects": [_project_json(p) | {"current": p.current} for p in listing],
            "duration_ms": duration,
            "tracks": [track_json(t) for t in tracks],
            "media": media,
            "credits": {"available": available, "account": str(account)},
            "video": video,
            "digest": digest,  # the draft drawn: a touch on a segment names it (`instruction`)
            "browser_url": await self._browser_url(ctx) if connection is not None else None,
        }

    async def instruction(
        self, ctx: ChatContext, track: int, segment: int, op: str, digest: str | None = None
    ) -> str | None:
        """What a touch on a segment asks of the agent, in the person's words; None if the segment
        is not (or no longer) on the timeline, the timeline changed since the studio drew it (its
        `digest`), or the change is not one the studio offers."""
        if (
            op not in SEGMENT_OPS
            or (connection := await self.projects.connected(ctx.chat, ctx.session_lang)) is None
        ):
            return None
        state = await self.projects.state(ctx.chat, ctx.session_lang, connection=connection)
        if digest is not None and digest != draft_digest(state.draft):
            return None
        tracks = studio_tracks(state.draft)
        if not 0 <= track < len(tracks) or not 0 <= segment < len(tracks[track].segments):
            return None
        chosen, seg = tracks[track], tracks[track].segments[segment]
        return words(
            ctx.lang,
            f"do_segment_{op}",
            name=seg.name,
            track=words(ctx.lang, f"track_{chosen.label}"),
            start=clock_text(seg.start_ms),
            end=clock_text(seg.start_ms + seg.length_ms),
        )

    async def _browser_url(self, ctx: ChatContext) -> str | None:
        if ctx.user_id is None or self.kit.site == "":
            return None
        try:
            return browser_link(self.kit.site, await self.projects.claim(ctx.chat, ctx.session_lang))
        except NemoError as err:  # the studio works without the link
            log.info("chat %s: no browser link for the studio: %s", ctx.chat.key, err.describe())
            return None


def _project_json(project: Any) -> dict[str, Any]:
    return {
        "id": project.project_id,
        "name": project.name,
        "updated_at": project.updated_at,
        "rendering": project.rendering,
    }
