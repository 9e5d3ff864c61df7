"""What a video file holds, read from the file itself: its size on screen, its length, a thumbnail.

Telegram shows a video sent without width, height and duration as a square of unknown length, and
without a thumbnail as a grey box until it is downloaded. `probe_video` reads them from the MP4 (PyAV,
whose wheels bundle FFmpeg) and draws a small JPEG from one frame (Pillow). It never raises: a file it
cannot read gives `VideoInfo()` (every value None), and the video goes out as before.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 320  # Telegram: a thumbnail's width and height at most 320
THUMBNAIL_MAX_BYTES = 200 * 1000  # Telegram: a thumbnail under 200 kB
THUMBNAIL_AT_SECONDS = 1.0  # a frame this far in (or a quarter of a shorter video): past a fade from black
MAX_FRAMES_DECODED = 120  # frames decoded at most to reach it, after seeking to the keyframe before it
JPEG_QUALITIES = (85, 70, 55, 40)  # tried in order until the thumbnail fits


@dataclass(frozen=True)
class VideoInfo:
    width: int | None = None
    height: int | None = None
    duration: float | None = None  # seconds
    thumbnail: bytes | None = None  # a JPEG within Telegram's thumbnail rule


def probe_video(path: Path) -> VideoInfo:
    """The video's displayed width and height, its duration and a thumbnail; None where unreadable.

    Blocking (it reads and decodes): call it in a thread."""
    import av  # here, not at start-up: FFmpeg's libraries take ~17 MB, needed once a video is sent

    try:
        with av.open(str(path), mode="r") as container:
            streams = [stream for stream in container.streams.video]
            if not streams:
                return VideoInfo()
            stream = streams[0]
            width, height = stream.codec_context.width or None, stream.codec_context.height or None
            duration = _duration(container, stream)
            frame, rotation = _frame(container, stream, duration)
    except (av.error.FFmpegError, OSError, ValueError, EOFError, StopIteration) as err:
        log.info("video %s unreadable: %s", path.name, type(err).__name__)
        return VideoInfo()
    if rotation % 180 == 90 and width and height:  # a phone's portrait video, stored lying down
        width, height = height, width
    return VideoInfo(width, height, duration, thumbnail_jpeg(frame, rotation) if frame is not None else None)


def image_thumbnail(path: Path) -> bytes | None:
    """A JPEG thumbnail of an image file (Telegram's rule), or None when it is not a readable image.

    Blocking: call it in a thread."""
    try:
        with Image.open(path) as image:
            image.seek(0)  # an animated GIF or WebP: its first frame
            return thumbnail_jpeg(image.copy(), 0)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        log.info("image %s unreadable: %s", path.name, type(err).__name__)
        return None


def thumbnail_jpeg(image: Image.Image, rotation: int = 0) -> bytes | None:
    """`image` as a JPEG no larger than THUMBNAIL_SIDE on either side and under THUMBNAIL_MAX_BYTES."""
    picture = image.convert("RGB")
    if rotation % 360:
        picture = picture.rotate(rotation, expand=True)  # counter-clockwise, as the display matrix says
    picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    for quality in JPEG_QUALITIES:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=quality, optimize=True)
        if buffer.tell() <= THUMBNAIL_MAX_BYTES:
            return buffer.getvalue()
    return None


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / 1_000_000  # av.time_base: FFmpeg's microseconds
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def _frame(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, duration: float | None
) -> tuple[Image.Image | None, int]:
    """A frame about THUMBNAIL_AT_SECONDS in (the first one of a short or unseekable video), and the
    rotation the video asks players to apply (degrees, counter-clockwise)."""
    import av

    target = min(THUMBNAIL_AT_SECONDS, duration / 4) if duration else 0.0
    if target > 0 and stream.time_base is not None:
        try:
            container.seek(int(target / stream.time_base), stream=stream)
        except av.error.FFmpegError:
            container.seek(0)
    chosen = None
    for count, frame in enumerate(container.decode(stream), 1):
        chosen = frame
        if frame.time is None or frame.time >= target or count >= MAX_FRAMES_DECODED:
            break
    if chosen is None and target > 0:  # the seek went past the last frame: the first one, then
        with av.open(container.name, mode="r") as again:
            chosen = next(again.decode(again.streams.video[0]), None)
            if chosen is not None:
                return chosen.to_image(), int(chosen.rotation or 0)  # type: ignore[no-untyped-call]
    if chosen is None:
        return None, 0
    return chosen.to_image(), int(chosen.rotation or 0)  # type: ignore[no-untyped-call]
