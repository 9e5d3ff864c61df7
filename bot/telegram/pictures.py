"""The timeline as a picture: one row of coloured bars per track on a time axis, as PNG bytes.

`render_png(draft)` reads the draft with `bot.core.timeline.layout` (the same defensive rules as the text
summary: a missing, extra or mistyped key changes the picture, never raises). Each segment is a bar
from its start to its end, with its name on it; a track's label and volume sit to the left; the
header gives the number of tracks and the total duration, and the axis has tick labels.

Text is drawn with the first font that has every glyph of it: a Latin font, then a CJK one where
the system has one (`find_fonts`); a character no font can draw is left out rather than drawn as a
box (or, with Pillow's bitmap font, raising). Pure apart from looking the font files up once.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bot.core.texts import TEXTS, Lang, say
from bot.core.timeline import TrackLayout, duration_ms, layout

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
RGB = tuple[int, int, int]

WIDTH = 900
MARGIN = 18
GUTTER = 130  # track labels (and volumes) left of the bars
HEADER = 50
ROW = 42  # one track's row, bar included
BAR = 28
AXIS = 40
MAX_ROWS = 12  # more tracks are counted under the rows, not drawn
MIN_BAR = 3  # a zero-length segment still shows
PLOT_LEFT = MARGIN + GUTTER
PLOT_RIGHT = WIDTH - MARGIN - 22  # room for the last tick label
BACKGROUND: RGB = (255, 255, 255)
GRID: RGB = (232, 234, 238)
INK: RGB = (33, 37, 41)
MUTED: RGB = (108, 117, 125)
ON_BAR: RGB = (255, 255, 255)
# One colour per row (cycled), all dark enough for white names and distinct from one another.
PALETTE: tuple[RGB, ...] = (
    (37, 99, 235),
    (22, 163, 74),
    (234, 88, 12),
    (147, 51, 234),
    (8, 145, 178),
    (219, 39, 119),
    (101, 163, 13),
    (180, 83, 9),
)
NICE_STEPS_S = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 18000, 36000)
MAX_TICKS = 8

LATIN_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)
LATIN_BOLD_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
)
CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Light.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simsun.ttc",
)
CJK_NAME_HINTS = ("cjk", "wqy", "droidsansfallback", "sourcehansans", "notosanssc", "uming", "ukai")
FONT_FOLDERS = ("/usr/share/fonts", "/usr/local/share/fonts")


@dataclass(frozen=True)
class Fonts:
    """Font files to draw with (None: Pillow's own default font)."""

    regular: str | None = None
    bold: str | None = None
    cjk: str | None = None  # for text the Latin fonts lack (Chinese names)


@cache
def find_fonts() -> Fonts:
    """The system's fonts, looked up once: a Latin face (and its bold), and a CJK-capable one."""
    return Fonts(
        _first_file(LATIN_FONTS), _first_file(LATIN_BOLD_FONTS), _first_file(CJK_FONTS) or _cjk_scan()
    )


def render_png(draft: object, fonts: Fonts | None = None, lang: Lang = "en") -> bytes:
    """The draft's timeline as a PNG (a few tens of KB), its words in `lang`. An empty draft gives
    an empty axis."""
    tracks = layout(draft)
    total = duration_ms(draft, tracks)
    shown = tracks[:MAX_ROWS]
    hidden = len(tracks) - len(shown)
    height = HEADER + ROW * max(1, len(shown)) + (22 if hidden else 0) + AXIS + MARGIN // 2
    image = Image.new("RGB", (WIDTH, height), BACKGROUND)
    pen = _Pen(ImageDraw.Draw(image), fonts or find_fonts())
    count = (
        say(lang, "picture_one_track") if len(tracks) == 1 else say(lang, "picture_tracks", count=len(tracks))
    )
    header = html.unescape(say(lang, "picture_header", tracks=count, total=clock(total)))
    pen.text((MARGIN, 16), header, 17, INK, bold=True)
    scale = max(total, 1000)  # the axis runs 0 .. total (at least a second: never divide by zero)
    axis_y = HEADER + ROW * max(1, len(shown)) + (22 if hidden else 0)
    for tick in ticks(scale):
        x = x_of(tick, scale)
        pen.draw.line([(x, HEADER - 4), (x, axis_y)], fill=GRID, width=1)
    for index, track in enumerate(shown):
        _draw_track(pen, index, track, scale, lang)
    if not tracks:
        pen.text((PLOT_LEFT + 8, HEADER + (ROW - 14) // 2), say(lang, "picture_empty"), 13, MUTED)
    if hidden:
        more = say(lang, "picture_more", count=hidden)
        pen.text((MARGIN, HEADER + ROW * len(shown) + 2), more, 12, MUTED)
    pen.draw.line([(PLOT_LEFT, axis_y), (PLOT_RIGHT, axis_y)], fill=MUTED, width=1)
    for tick in ticks(scale):
        x = x_of(tick, scale)
        pen.draw.line([(x, axis_y), (x, axis_y + 5)], fill=MUTED, width=1)
        label = clock(tick)
        pen.text((x - pen.width(label, 12) / 2, axis_y + 9), label, 12, MUTED)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def row_top(index: int) -> int:
    """The top of row `index`'s bars, in pixels."""
    return HEADER + index * ROW + (ROW - BAR) // 2


def x_of(ms: float, scale: float) -> int:
    """The x pixel of a moment on an axis `scale` ms long."""
    return round(PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * min(max(ms, 0), scale) / scale)


def ticks(scale_ms: float) -> list[int]:
    """Tick moments (ms) at a round step, at most MAX_TICKS of them, always 0 and the end."""
    step = next((s * 1000 for s in NICE_STEPS_S if scale_ms / (s * 1000) <= MAX_TICKS), None)
    if step is None:  # longer than the steps go: any round number of hours
        step = math.ceil(scale_ms / MAX_TICKS / 3_600_000) * 3_600_000
    moments = [round(i * step) for i in range(int(scale_ms // step) + 1)]
    # the end is labelled too, unless the last round tick would crowd it
    if scale_ms - moments[-1] < step * 0.4 and len(moments) > 1:
        moments.pop()
    return [*moments, round(scale_ms)]


def clock(ms: float) -> str:
    """`0s`, `2.5s`, `45s`, `1:30`, `1:02:03`."""
    seconds = max(ms, 0) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s") if seconds % 1 else f"{seconds:.0f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _draw_track(pen: _Pen, index: int, track: TrackLayout, scale: float, lang: Lang) -> None:
    colour = PALETTE[index % len(PALETTE)]
    top = row_top(index)
    summary = track.summary
    volume = say(lang, "picture_volume", volume=summary.volume) if summary.volume is not None else ""
    label = f"picture_{summary.label}"
    label = say(lang, label) if label in TEXTS else summary.label
    label_y = top + (2 if volume else 7)
    pen.text((MARGIN, label_y), pen.fit(label, 14, GUTTER - 10, bold=True), 14, INK, bold=True)
    if volume:
        pen.text((MARGIN, top + 18), volume, 11, MUTED)
    starts = [x_of(s.start_ms, scale) for s in track.segments]
    for number, segment in enumerate(track.segments):
        left = starts[number]
        right = max(x_of(segment.end_ms, scale), left + MIN_BAR)
        if right - left > 6:
            right -= 2  # a one-pixel gap between touching segments
        pen.draw.rounded_rectangle([(left, top), (right, top + BAR)], radius=5, fill=colour)
        text_y = top + (BAR - 15) // 2
        inside = pen.fit(segment.name, 12, right - left - 10)
        # A name too long for its bar goes after it, where the row is free up to the next segment.
        free = min([x for x in starts[number + 1 :] if x > right] or [WIDTH - MARGIN]) - right - 10
        if inside != segment.name and pen.fit(segment.name, 12, free) == segment.name:
            pen.text((right + 6, text_y), segment.name, 12, INK)
        elif inside:
            pen.text((left + 5, text_y), inside, 12, ON_BAR)


class _Pen:
    """Drawing text with the first font that has every glyph of it."""

    def __init__(self, draw: ImageDraw.ImageDraw, fonts: Fonts):
        self.draw = draw
        self.fonts = fonts

    def text(self, xy: tuple[float, float], text: str, size: int, fill: RGB, *, bold: bool = False) -> None:
        font, drawable = self._choose(text, size, bold)
        if drawable.strip():
            self.draw.text(xy, drawable, font=font, fill=fill)

    def width(self, text: str, size: int, *, bold: bool = False) -> float:
        font, drawable = self._choose(text, size, bold)
        return float(font.getlength(drawable)) if drawable else 0.0

    def fit(self, text: str, size: int, room: float, *, bold: bool = False) -> str:
        """The text, cut with an ellipsis to fit `room` pixels ("" when not even two letters fit)."""
        _, drawable = self._choose(text, size, bold)
        if self.width(drawable, size, bold=bold) <= room:
            return drawable
        for cut in range(len(drawable) - 1, 1, -1):
            shorter = drawable[:cut].rstrip() + "…"
            if self.width(shorter, size, bold=bold) <= room:
                return shorter
        return ""

    def _choose(self, text: str, size: int, bold: bool) -> tuple[Font, str]:
        faces = [_load(self.fonts.bold if bold else self.fonts.regular, size)]
        if self.fonts.cjk:
            faces.append(_load(self.fonts.cjk, size))
        for face in faces:
            if all(_has_glyph(face, ch) for ch in set(text)):
                return face, text
        best = max(faces, key=lambda face: sum(_has_glyph(face, ch) for ch in text))
        kept = "".join(ch for ch in text if _has_glyph(best, ch))
        return best, " ".join(kept.split())


def _first_file(paths: Iterable[str]) -> str | None:
    return next((path for path in paths if Path(path).is_file()), None)


def _cjk_scan() -> str | None:
    """A CJK font anywhere under the usual font folders (bounded: the first few thousand files)."""
    for folder in FONT_FOLDERS:
        root = Path(folder)
        if not root.is_dir():
            continue
        for seen, path in enumerate(root.rglob("*")):
            if seen > 5000:
                break
            name = path.name.lower().replace(" ", "").replace("-", "")
            if path.suffix.lower() in (".ttf", ".ttc", ".otf") and any(h in name for h in CJK_NAME_HINTS):
                return str(path)
    return None


@cache
def _load(path: str | None, size: int) -> Font:
    if path is not None:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass  # unreadable or not a font: Pillow's own
    return ImageFont.load_default(size)  # FreeType's Aileron, or the bitmap font without FreeType


_MISSING: dict[
    int, tuple[Font, bytes]
] = {}  # each font's "missing glyph", and the font (kept: its id stays its)
_GLYPHS: dict[tuple[int, str], bool] = {}


def _has_glyph(font: Font, ch: str) -> bool:
    """Whether the font draws `ch` as itself, not as its "missing glyph" box."""
    key = (id(font), ch)
    known = _GLYPHS.get(key)
    if known is not None:
        return known
    if id(font) not in _MISSING:
        missing = _mask(font, "\U0010fffd") if isinstance(font, ImageFont.FreeTypeFont) else b""
        _MISSING[id(font)] = (font, missing)  # a private-use code point no font has
    if isinstance(font, ImageFont.FreeTypeFont):
        found = ch.isspace() or _mask(font, ch) != _MISSING[id(font)][1]
    else:  # Pillow's bitmap font: Latin-1 only (anything else raises)
        found = ch.isprintable() and ord(ch) < 256
    if len(_GLYPHS) < 20_000:
        _GLYPHS[key] = found
    return found


def _mask(font: ImageFont.FreeTypeFont, ch: str) -> bytes:
    mask = font.getmask(ch)
    return repr(mask.size).encode() + bytes(mask)
