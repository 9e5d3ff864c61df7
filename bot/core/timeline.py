"""Timeline summaries of the agent's draft: pure functions that never fail on an odd draft.

The draft uses short keys (`t` tracks, `tt` track type, `sg` segments, `d` duration in ms, `m`
metadata) and has no public schema, so every read here is defensive: a missing, extra or
mistyped key changes the wording, never raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bot.core.texts import sendable

TRACK_KINDS = {0: "Video", 1: "Audio", 7: "Text"}
NAME_KEYS = ("title", "text", "name", "desc", "description", "prompt", "file_name", "filename", "url")
START_KEYS = ("st", "s", "start", "start_time", "offset")


@dataclass(frozen=True)
class TrackSummary:
    label: str  # "Video", "BGM", "Title", ...
    name: str
    start_ms: int
    end_ms: int
    segments: int
    volume: int | None = None  # percent

    def describe(self) -> str:
        name = f'"{self.name}"' if self.label == "Title" else self.name
        extra = f" +{self.segments - 1} more" if self.segments > 1 else ""
        span = f"{_seconds(self.start_ms)}-{_seconds(self.end_ms)}s"
        volume = f", {self.volume}%" if self.volume is not None else ""
        return f"{self.label}: {name}{extra} ({span}{volume})"


@dataclass(frozen=True)
class SegmentSpan:
    """One segment on the time axis (what the timeline picture draws as a bar)."""

    start_ms: int
    end_ms: int
    name: str  # "" when the segment names nothing


@dataclass(frozen=True)
class TrackLayout:
    """A track's summary and its segments' spans, read by the same rules."""

    summary: TrackSummary
    segments: tuple[SegmentSpan, ...]


def tracks(draft: object) -> list[TrackSummary]:
    """The draft's tracks that hold at least one segment, in order."""
    return [summary for track in _raw_tracks(draft) if (summary := _track(track)) is not None]


def layout(draft: object) -> list[TrackLayout]:
    """The draft's tracks with their segments' spans and names (for drawing the timeline)."""
    result = []
    for track in _raw_tracks(draft):
        segments = _segments(track)
        if not segments:
            continue
        summary = _summarise(track, segments, spans := _spans(segments))
        names = [_name(_meta(segment)) for segment in segments]
        names[0] = names[0] or summary.name  # the name the summary gives the track
        result.append(
            TrackLayout(summary, tuple(SegmentSpan(s, e, n) for (s, e), n in zip(spans, names, strict=True)))
        )
    return result


def duration_ms(draft: object, layouts: list[TrackLayout]) -> int:
    """The timeline's length: its last segment's end, or the draft's own `d` where that is longer."""
    own = _first_number(draft, ("d", "duration")) if isinstance(draft, dict) else None
    return max([own or 0, *(t.summary.end_ms for t in layouts)])


def is_exportable(draft: object) -> bool:
    """The contract's rule: some track has a non-empty `sg`."""
    return bool(tracks(draft))


def format_timeline(summaries: list[TrackSummary]) -> str:
    """`Timeline (3 tracks): 1. Video: city timelapse (0-10s) 2. BGM: Lo-fi (0-10s, 35%) ...`."""
    if not summaries:
        return "Timeline: empty"
    noun = "track" if len(summaries) == 1 else "tracks"
    items = " ".join(f"{i}. {s.describe()}" for i, s in enumerate(summaries, 1))
    return f"Timeline ({len(summaries)} {noun}): {items}"


def describe_changes(before: list[TrackSummary], after: list[TrackSummary]) -> list[str]:
    """What a turn changed on the timeline, as short lines ("Added: ...", "Removed: ...")."""
    lines = []
    remaining = list(before)
    for track in after:
        if track in remaining:
            remaining.remove(track)
            continue
        same_slot = next((b for b in remaining if (b.label, b.name) == (track.label, track.name)), None)
        if same_slot is not None:
            remaining.remove(same_slot)
            lines.append(f"Changed: {track.describe()}")
        else:
            lines.append(f"Added: {track.describe()}")
    lines.extend(f"Removed: {track.describe()}" for track in remaining)
    return lines


# -- the studio's view: every segment, with what the studio draws ---------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
THUMBNAIL_KEYS = ("thumbnail", "thumb", "cover", "poster")
KINDS = {0: "video", 1: "audio", 7: "text"}


@dataclass(frozen=True)
class StudioSegment:
    index: int
    name: str
    start_ms: int
    length_ms: int
    volume: int | None  # percent, on audio
    title: str | None  # a text segment's words
    thumbnail: str | None  # an https image the backend gave for it


@dataclass(frozen=True)
class StudioTrack:
    kind: str  # "video", "audio", "text" or "track"
    label: str  # "Video", "BGM", "Voice", "Title", "Track"
    segments: tuple[StudioSegment, ...]


def studio_tracks(draft: object) -> list[StudioTrack]:
    """The draft's tracks and every segment, read by the same rules as the summaries (pure; the
    indexes are the draft's own, so an instruction about a segment names the one the person saw)."""
    result = []
    for track in _raw_tracks(draft):
        segments = _segments(track)
        if not segments:
            continue
        kind = track.get("tt")
        label = _label(kind, _meta(track))
        items = []
        for index, (segment, (start, end)) in enumerate(zip(segments, _spans(segments), strict=True)):
            meta = _meta(segment)
            name = _name(meta) or _name(_meta(track)) or label.lower()
            volume = _first_volume(meta, _meta(track)) if kind == 1 else None
            title = name if kind == 7 else None
            items.append(
                StudioSegment(index, name, start, max(0, end - start), volume, title, _thumbnail(meta))
            )
        result.append(
            StudioTrack(KINDS.get(kind, "track") if isinstance(kind, int) else "track", label, tuple(items))
        )
    return result


def _thumbnail(meta: dict[str, Any]) -> str | None:
    """An https image for the segment: a named thumbnail, or its own media when that is a picture."""
    for key in THUMBNAIL_KEYS:
        value = meta.get(key)
        if isinstance(value, str) and value.startswith("https://"):
            return value
    url = meta.get("url")
    if (
        isinstance(url, str)
        and url.startswith("https://")
        and url.split("?")[0].lower().endswith(IMAGE_SUFFIXES)
    ):
        return url
    return None


def _first_volume(*metas: dict[str, Any]) -> int | None:
    for meta in metas:
        if (volume := _volume(meta)) is not None:
            return volume
    return None


def _raw_tracks(draft: object) -> list[dict[str, Any]]:
    raw = draft.get("t") if isinstance(draft, dict) else None
    return [track for track in raw if isinstance(track, dict)] if isinstance(raw, list) else []


def _segments(track: dict[str, Any]) -> list[dict[str, Any]]:
    raw = track.get("sg")
    return [s for s in raw if isinstance(s, dict)] if isinstance(raw, list) else []


def _spans(segments: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Each segment's (start, end) in ms: its own start, else right after the previous one."""
    cursor = 0
    spans = []
    for segment in segments:
        seg_start = _first_number(segment, START_KEYS)
        seg_start = cursor if seg_start is None else seg_start
        seg_end = seg_start + (_first_number(segment, ("d", "duration")) or 0)
        spans.append((seg_start, seg_end))
        cursor = seg_end
    return spans


def _track(track: dict[str, Any]) -> TrackSummary | None:
    segments = _segments(track)
    return _summarise(track, segments, _spans(segments)) if segments else None


def _summarise(
    track: dict[str, Any], segments: list[dict[str, Any]], spans: list[tuple[int, int]]
) -> TrackSummary:
    meta = _meta(track)
    kind = track.get("tt")
    label = _label(kind, meta)
    start_ms = min(start for start, _ in spans)
    end_ms = max(end for _, end in spans)
    name = _name(_meta(segments[0])) or _name(meta) or label.lower()
    volume = _volume(meta) if kind == 1 else None
    if volume is None and kind == 1:
        volume = _volume(_meta(segments[0]))
    return TrackSummary(label, name, start_ms, end_ms, len(segments), volume)


def _label(kind: object, meta: dict[str, Any]) -> str:
    if kind == 1:
        role = str(meta.get("role") or meta.get("type") or "").lower()
        return "Voice" if "voice" in role or "narration" in role else "BGM"
    if kind == 7:
        return "Title"
    return TRACK_KINDS.get(kind, "Track") if isinstance(kind, int) else "Track"


def _meta(item: dict[str, Any]) -> dict[str, Any]:
    meta = item.get("m")
    return meta if isinstance(meta, dict) else {}


def _name(meta: dict[str, Any]) -> str:
    for key in NAME_KEYS:
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            text = sendable(" ".join(value.split()))  # half an emoji would make the reply unsendable
            if key == "url":
                text = text.rstrip("/").rsplit("/", 1)[-1] or text
            return text if len(text) <= 60 else text[:59] + "…"
    return ""


def _volume(meta: dict[str, Any]) -> int | None:
    value = meta.get("volume", meta.get("v"))
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        return None
    if isinstance(value, float) and not math.isfinite(value):  # NaN/Infinity: valid to Python's JSON decoder
        return None
    return round(value * 100) if value <= 1 else round(min(value, 1000))


def _first_number(item: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = item.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return int(min(value, 10**10))
    return None


def _seconds(ms: int) -> str:
    seconds = ms / 1000
    return f"{seconds:.0f}" if abs(seconds - round(seconds)) < 0.05 else f"{seconds:.1f}"
