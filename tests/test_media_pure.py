"""Table tests for the media features' pure parts: the video probe on real and broken files, the
progress texts (English and Chinese), when a video is sent again, previews and the resend intent."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from PIL import Image

from bot.chat.renders import draft_digest, progress_text, reuse_video
from bot.chat.uploads import IncomingFile, preview_of, upload_progress_text
from bot.core.intents import Intent, route
from bot.core.texts import clock, progress_bar
from bot.nemo.client import RenderStatus
from bot.state.renders import RenderRecord
from bot.telegram.output import Media
from bot.telegram.previews import Generated, generated_items, new_generated
from bot.telegram.probe import (
    THUMBNAIL_MAX_BYTES,
    THUMBNAIL_SIDE,
    VideoInfo,
    image_thumbnail,
    probe_video,
    thumbnail_jpeg,
)

MEDIA = Path(__file__).parent / "media"


def jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return image.size


# -- the probe -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "width", "height", "duration", "thumbnail"),
    [
        ("clip.mp4", 320, 240, 2.0, (320, 240)),
        ("clip.mov", 320, 240, 2.0, (320, 240)),
        ("clip.webm", 160, 120, 1.0, (160, 120)),
        ("truncated.mp4", None, None, None, None),  # the first 3000 bytes of clip.mp4
        ("not_a_video.mp4", None, None, None, None),  # text with a video's name
        ("empty.mp4", None, None, None, None),
        ("tone.m4a", None, None, None, None),  # sound only: nothing to show
    ],
)
def test_probe_reads_the_file_itself(
    name: str,
    width: int | None,
    height: int | None,
    duration: float | None,
    thumbnail: tuple[int, int] | None,
) -> None:
    info = probe_video(MEDIA / name)
    assert (info.width, info.height) == (width, height)
    assert info.duration == (pytest.approx(duration, abs=0.05) if duration else None)
    if thumbnail is None:
        assert info == VideoInfo()
    else:
        assert info.thumbnail is not None and jpeg_size(info.thumbnail) == thumbnail
        assert len(info.thumbnail) <= THUMBNAIL_MAX_BYTES


def test_probe_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert probe_video(tmp_path / "gone.mp4") == VideoInfo()


def test_a_portrait_phone_video_is_measured_as_shown(tmp_path: Path) -> None:
    """Stored 64x32 with a 90° display rotation (as phones record): shown 32 wide, 64 high."""
    path = tmp_path / "portrait.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)
        frame = av.VideoFrame.from_image(Image.new("RGB", (64, 32), (200, 30, 30)))
        for _ in range(10):
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    info = probe_video(path)
    assert (info.width, info.height) == (32, 64)
    assert info.thumbnail is not None and jpeg_size(info.thumbnail) == (32, 64)


def test_a_large_noisy_frame_still_makes_a_thumbnail_within_telegrams_rule() -> None:
    noisy = Image.effect_noise((4000, 3000), 120).convert("RGB")
    data = thumbnail_jpeg(noisy)
    assert data is not None and len(data) <= THUMBNAIL_MAX_BYTES
    assert max(jpeg_size(data)) == THUMBNAIL_SIDE


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("photo.jpg", (320, 240)),
        ("photo.png", (320, 240)),
        ("image.webp", None),
        ("anim.gif", None),
        ("clip.mp4", "unreadable"),
        ("not_a_video.mp4", "unreadable"),
    ],
)
def test_image_thumbnails(name: str, size: tuple[int, int] | str | None) -> None:
    data = image_thumbnail(MEDIA / name)
    if size == "unreadable":
        assert data is None
        return
    assert data is not None and len(data) <= THUMBNAIL_MAX_BYTES
    width, height = jpeg_size(data)
    assert max(width, height) <= THUMBNAIL_SIDE
    if size is not None:
        assert (width, height) == size


# -- progress ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "bar"),
    [
        (0, "░░░░░░░░░░"),
        (9, "░░░░░░░░░░"),
        (10, "▓░░░░░░░░░"),
        (40, "▓▓▓▓░░░░░░"),
        (99, "▓▓▓▓▓▓▓▓▓░"),
        (100, "▓▓▓▓▓▓▓▓▓▓"),
        (-5, "░░░░░░░░░░"),
        (250, "▓▓▓▓▓▓▓▓▓▓"),
    ],
)
def test_progress_bar(percent: float, bar: str) -> None:
    assert progress_bar(percent) == bar


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "00:00"), (5.9, "00:05"), (83, "01:23"), (600, "10:00"), (3725, "62:05"), (-3, "00:00")],
)
def test_clock(seconds: float, shown: str) -> None:
    assert clock(seconds) == shown


@pytest.mark.parametrize(
    ("status", "progress", "elapsed", "lang", "text"),
    [
        ("pending", 0, 5, "en", "🎬 Export queued… ⏱ 00:05"),
        ("pending", 0, 5, "zh", "🎬 导出排队中… ⏱ 00:05"),
        ("processing", 40, 83, "en", "🎬 Rendering your video…\n▓▓▓▓░░░░░░ 40% · ⏱ 01:23"),
        ("processing", 40, 83, "zh", "🎬 正在渲染视频…\n▓▓▓▓░░░░░░ 40% · ⏱ 01:23"),
        ("processing", 0, 0, "en", "🎬 Rendering your video…\n░░░░░░░░░░ 0% · ⏱ 00:00"),
        ("processing", 95, 3725, "en", "🎬 Rendering your video…\n▓▓▓▓▓▓▓▓▓░ 95% · ⏱ 62:05"),
        ("rendering", 60, 61, "en", "🎬 Rendering your video…\n▓▓▓▓▓▓░░░░ 60% · ⏱ 01:01"),  # a new word
        ("pending", 30, -2, "en", "🎬 Export queued… ⏱ 00:00"),  # another replica's clock, ahead
    ],
)
def test_render_progress_text(status: str, progress: int, elapsed: float, lang: str, text: str) -> None:
    assert progress_text(RenderStatus(status, progress), lang, elapsed) == text  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lang", "sent", "total", "text"),
    [
        ("en", 0, 10 * 1024 * 1024, "📤 Uploading 1 file(s)…\n░░░░░░░░░░ 0% · 0 B of 10.0 MB"),
        (
            "en",
            3 * 1024 * 1024,
            10 * 1024 * 1024,
            "📤 Uploading 1 file(s)…\n▓▓▓░░░░░░░ 30% · 3.0 MB of 10.0 MB",
        ),
        ("zh", 3 * 1024 * 1024, 10 * 1024 * 1024, "📤 正在上传 1 个文件…\n▓▓▓░░░░░░░ 30% · 3.0 MB / 10.0 MB"),
        (
            "en",
            12 * 1024 * 1024,
            10 * 1024 * 1024,
            "📤 Uploading 1 file(s)…\n▓▓▓▓▓▓▓▓▓▓ 100% · 10.0 MB of 10.0 MB",
        ),
        ("en", 0, 0, "📤 Uploading 1 file(s)…\n▓▓▓▓▓▓▓▓▓▓ 100% · 0 B of 0 B"),
    ],
)
def test_upload_progress_text(lang: str, sent: int, total: int, text: str) -> None:
    assert upload_progress_text(lang, 1, sent, total) == text  # type: ignore[arg-type]


# -- sending a video again -----------------------------------------------------------------------


def test_draft_digest_ignores_key_order_and_sees_any_change() -> None:
    draft = {"t": [{"tt": 0, "sg": [{"d": 5000, "m": {"name": "beach"}}]}]}
    same = {"t": [{"sg": [{"m": {"name": "beach"}, "d": 5000}], "tt": 0}]}
    longer = {"t": [{"tt": 0, "sg": [{"d": 6000, "m": {"name": "beach"}}]}]}
    assert draft_digest(draft) == draft_digest(same) != draft_digest(longer)
    assert draft_digest({"t": [{"m": {"name": "\ud83c"}}]})  # half an emoji from JSON: no crash


def _delivered(file_id: str = "FILE1", digest: str = "abc") -> RenderRecord:
    return RenderRecord("render_1", "42", 42, "s", file_id=file_id, draft_digest=digest)


@pytest.mark.parametrize(
    ("last", "digest", "reuse"),
    [
        (None, "abc", False),  # no video yet
        (_delivered(), "abc", True),  # the same draft, sent as a file: again by its file id
        (_delivered(), "def", False),  # the draft changed: render anew
        (_delivered(file_id=""), "abc", False),  # it went as a link (too large): render anew
        (_delivered(digest=""), "abc", False),  # a record from before digests
    ],
)
def test_when_export_sends_the_last_video_again(last: RenderRecord | None, digest: str, reuse: bool) -> None:
    assert reuse_video(last, digest) is reuse


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("send it again", Intent.RESEND),
        ("Send it again!", Intent.RESEND),
        ("resend", Intent.RESEND),
        ("please resend the video", Intent.RESEND),
        ("send me the video again", Intent.RESEND),
        ("再发一次", Intent.RESEND),
        ("再发一遍视频", Intent.RESEND),
        ("重新发送", Intent.RESEND),
        ("send me the video", Intent.EXPORT),
        ("send it again with music", Intent.CHAT),
        ("don't send it again", Intent.CHAT),
        ("add the intro again", Intent.CHAT),
    ],
)
def test_resend_is_routed(text: str, intent: Intent) -> None:
    assert route(text) is intent


# -- previews ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "backend_kind", "preview"),
    [
        ("photo", "image", Media("photo", "F1")),
        ("video", "video", Media("video", "F1")),
        ("document", "image", None),  # drawn from the file: a document's id is not a photo's
        ("document", "video", None),
        ("animation", "video", None),
        ("audio", "audio", None),
    ],
)
def test_upload_previews_reuse_telegrams_file_ids(
    kind: str, backend_kind: str, preview: Media | None
) -> None:
    file = IncomingFile("F1", kind, "x", None, 10)
    assert preview_of(file, backend_kind) == preview


def test_generated_media_is_read_defensively() -> None:
    items = [
        {"name": "sunset", "file_type": "image", "url": "https://cdn.example/a/1.png"},
        {"title": "teaser", "url": "https://cdn.example/a/clip.mp4"},  # kind from the extension
        {"prompt": "a cat " * 30, "type": "image/webp", "cdn_url": "https://cdn.example/c"},
        {"url": "https://cdn.example/music.mp3"},  # sound: no preview
        {"url": "ftp://cdn.example/x.png"},
        {"name": "no url", "file_type": "image"},
        "not a dict",
        {"url": 42},
    ]
    found = generated_items(items)
    assert [(g.kind, g.url) for g in found] == [
        ("image", "https://cdn.example/a/1.png"),
        ("video", "https://cdn.example/a/clip.mp4"),
        ("image", "https://cdn.example/c"),
    ]
    assert found[0].name == "sunset" and found[1].name == "teaser"
    assert len(found[2].name) == 60 and found[2].name.endswith("…")


def test_only_media_new_after_the_turn_is_previewed() -> None:
    a, b, c = (Generated("image", f"https://cdn.example/{n}.jpg", n) for n in "abc")
    assert new_generated([a], [a, b, c, b]) == [b, c]
    assert new_generated([a, b], [b, a]) == []
    assert new_generated([], [a]) == [a]
