"""The timeline picture (bot/telegram/pictures.py), decoded with Pillow; the quick-action keyboard, the
deep-link payloads and the example buttons (pure parts)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from PIL import Image

from bot.chat.flows import example_action, example_index
from bot.core.actions import QUICK_ACTIONS
from bot.core.agent_text import reply_actions
from bot.core.timeline import layout, tracks
from bot.telegram import pictures as timeline_image
from bot.telegram.output import button_rows, keyboard
from bot.telegram.pictures import PALETTE, Fonts, clock, render_png, row_top, ticks, x_of
from loopback.emulator import sample_draft
from tests.test_properties import drafts, expected_track_count

DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def decode(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB")


def bars(png: bytes) -> list[list[tuple[int, int]]]:
    """Per bar row, from the top: the runs (first x, last x) of the row's colour along a line just
    inside the top of its bars; rows are read until one holds no bar."""
    image = decode(png)
    rows = []
    for index in range(timeline_image.MAX_ROWS):
        y = row_top(index) + 3
        if y >= image.height:
            break
        colour = PALETTE[index % len(PALETTE)]
        hits = [x for x in range(image.width) if image.getpixel((x, y)) == colour]
        if not hits:
            break
        runs, start = [], hits[0]
        for before, after in zip(hits, [*hits[1:], None], strict=True):
            if after != before + 1:
                runs.append((start, before))
                start = after if after is not None else start
        rows.append(runs)
    return rows


def palette_colours(png: bytes) -> set[tuple[int, int, int]]:
    colours = {colour for _, colour in decode(png).getcolors(maxcolors=1 << 20) or []}
    return colours & set(PALETTE)


def test_one_bar_row_per_track_in_its_own_colour() -> None:
    png = render_png(sample_draft())
    assert len(bars(png)) == 3
    assert palette_colours(png) == set(PALETTE[:3])
    assert 1_000 < len(png) < 60_000  # a few tens of KB at most


def test_each_segment_is_a_bar_spanning_its_time() -> None:
    # Video: three clips end to end (4s, 6s, 10s); title 2-5s; the axis runs 0-20s.
    draft = {
        "t": [
            {"tt": 0, "sg": [{"d": 4000}, {"d": 6000, "m": {"name": "b"}}, {"d": 10000}]},
            {"tt": 7, "sg": [{"st": 2000, "d": 3000, "m": {"title": "Hello"}}]},
        ]
    }
    rows = bars(render_png(draft))
    scale = 20_000
    assert len(rows) == 2
    video, title = rows
    expected = [(0, 4000), (4000, 10_000), (10_000, 20_000)]
    assert len(video) == 3
    for (left, right), (start, end) in zip(video, expected, strict=True):
        assert abs(left - x_of(start, scale)) <= 2 and abs(right - x_of(end, scale)) <= 2
    assert len(title) == 1
    (left, right) = title[0]
    assert abs(left - x_of(2000, scale)) <= 2 and abs(right - x_of(5000, scale)) <= 2
    # proportional: 3 s of title is 3/20 of the axis
    width = x_of(scale, scale) - x_of(0, scale)
    assert abs((right - left) - width * 3 / 20) <= 3


def test_more_tracks_than_rows_are_counted_not_drawn() -> None:
    draft = {"t": [{"tt": 0, "sg": [{"d": 1000 * (i + 1)}]} for i in range(20)]}
    png = render_png(draft)
    assert len(bars(png)) == timeline_image.MAX_ROWS
    assert decode(png).height < 1000


@pytest.mark.parametrize(
    "draft",
    [
        None,
        {},
        {"t": None},
        {"t": "x"},
        {"t": []},
        {"t": [None, 3, {"sg": None}, {"tt": "video", "sg": [{}]}]},
        {"t": [{"sg": [{"d": "10"}]}]},
        {"t": [{"tt": 0, "sg": [{"d": 0}, {"d": 0}]}]},  # zero length: no division by zero
        {"t": [{"tt": 0, "sg": [{"st": 10**12, "d": 10**12}]}]},  # absurdly long
        {"t": [{"tt": 1, "sg": [{"d": float("nan"), "m": {"volume": float("inf")}}]}]},
        {"t": [{"tt": 0, "sg": [{"d": 1000, "m": {"name": "\ud83c half an emoji 🎬 \x00 control"}}]}]},
        {"d": 30_000, "t": [{"tt": 0, "sg": [{"d": 5000}]}], "extra": {"x": [1, 2]}},
    ],
)
def test_odd_drafts_still_give_a_picture(draft: object) -> None:
    png = render_png(draft)
    assert len(bars(png)) == len(tracks(draft))


def test_the_drafts_own_duration_stretches_the_axis() -> None:
    rows = bars(render_png({"d": 20_000, "t": [{"tt": 0, "sg": [{"d": 10_000}]}]}))
    (_, right) = rows[0][0]
    assert abs(right - x_of(10_000, 20_000)) <= 2  # half the axis, not all of it


@settings(max_examples=15, deadline=None)
@given(drafts())
def test_any_draft_gives_a_picture_with_a_row_per_track(draft: Any) -> None:
    png = render_png(draft)
    assert len(bars(png)) == min(expected_track_count(draft), timeline_image.MAX_ROWS)


# -- text the fonts cannot draw --------------------------------------------------------------------


def name_pixels(draft: dict[str, Any], fonts: Fonts) -> int:
    """Light pixels (a name, white on the blue bar) inside the first bar."""
    image = decode(render_png(draft, fonts))
    top = row_top(0)
    return sum(
        min(image.getpixel((x, y))[:2]) >= 180  # type: ignore[index]
        for x in range(x_of(0, 10_000) + 3, x_of(10_000, 10_000) - 3)
        for y in range(top + 4, top + timeline_image.BAR - 4)
    )


def cyrillic(name: str) -> dict[str, Any]:
    return {"t": [{"tt": 0, "sg": [{"d": 10_000, "m": {"name": name}}]}]}


@pytest.mark.skipif(not Path(DEJAVU).is_file(), reason="needs DejaVu Sans for a second font")
def test_a_name_the_first_font_lacks_is_drawn_with_the_next_one() -> None:
    # Pillow's own font has no Cyrillic; DejaVu Sans has: standing in for a CJK font.
    assert name_pixels(cyrillic("Москва"), Fonts(cjk=DEJAVU)) > 20
    assert name_pixels(cyrillic("Москва"), Fonts()) == 0  # left out, not drawn as boxes


@pytest.mark.parametrize("name", ["城市延时摄影", "Москва", "🎬🎬", "naïve café", "mixed 城市 words"])
def test_text_no_font_can_draw_never_crashes(name: str) -> None:
    for fonts in (Fonts(), Fonts(regular="/nonexistent.ttf", bold="/nonexistent.ttf", cjk="/etc/hostname")):
        assert len(bars(render_png(cyrillic(name), fonts))) == 1


def test_the_bitmap_font_without_freetype_never_crashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow built without FreeType has only a Latin-1 bitmap font, which raises on anything else."""
    from PIL import ImageFont

    def bitmap(_path: str | None, _size: int) -> ImageFont.ImageFont:
        return ImageFont.load_default_imagefont()

    monkeypatch.setattr(timeline_image, "_load", bitmap)
    png = render_png(cyrillic("城市 city Москва"), Fonts())
    assert len(bars(png)) == 1


@pytest.mark.skipif(timeline_image.find_fonts().cjk is None, reason="no CJK-capable font on this system")
def test_chinese_names_are_drawn_where_the_system_has_a_cjk_font() -> None:
    assert name_pixels(cyrillic("城市延时摄影"), timeline_image.find_fonts()) > 20


def test_a_cjk_font_is_found_by_its_name_under_the_font_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "truetype" / "other").mkdir(parents=True)
    (tmp_path / "truetype" / "other" / "DejaVuSans.ttf").write_bytes(b"x")
    monkeypatch.setattr(timeline_image, "FONT_FOLDERS", (str(tmp_path / "missing"), str(tmp_path)))
    assert timeline_image._cjk_scan() is None
    (tmp_path / "truetype" / "noto").mkdir()
    font = tmp_path / "truetype" / "noto" / "NotoSansCJKsc-Regular.otf"
    font.write_bytes(b"not really a font")
    assert timeline_image._cjk_scan() == str(font)
    # a file that is not a font is not fatal: Pillow's own font draws instead
    assert len(bars(render_png(cyrillic("城市 city"), Fonts(cjk=str(font))))) == 1


def test_the_systems_fonts_are_found_once() -> None:
    fonts = timeline_image.find_fonts()
    assert fonts is timeline_image.find_fonts()
    for path in (fonts.regular, fonts.bold, fonts.cjk):
        assert path is None or Path(path).is_file()


# -- axis ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0s"), (500, "0.5s"), (2500, "2.5s"), (10_000, "10s"), (59_000, "59s"), (90_000, "1:30"),
     (3_723_000, "1:02:03")],
)  # fmt: skip
def test_clock(ms: int, text: str) -> None:
    assert clock(ms) == text


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        (1000, [0, 500, 1000]),
        (10_000, [0, 2000, 4000, 6000, 8000, 10_000]),
        (22_000, [0, 5000, 10_000, 15_000, 20_000, 22_000]),
        (21_000, [0, 5000, 10_000, 15_000, 21_000]),  # 20 s would crowd the end
        (90_000, [0, 15_000, 30_000, 45_000, 60_000, 75_000, 90_000]),
    ],
)
def test_ticks_are_round_few_and_end_at_the_total(scale: int, expected: list[int]) -> None:
    assert ticks(scale) == expected


def test_ticks_of_any_length_are_bounded() -> None:
    for scale in (1000, 7_777, 10**6, 10**9, 10**12):
        moments = ticks(scale)
        assert moments[0] == 0 and moments[-1] == scale and len(moments) <= timeline_image.MAX_TICKS + 2
        assert moments == sorted(set(moments))


# -- the layout behind the picture, read by bot/core/timeline.py's rules -------------------------------


def test_layout_agrees_with_the_summary() -> None:
    draft = sample_draft()
    assert [t.summary for t in layout(draft)] == tracks(draft)
    title = layout(draft)[2]
    assert [(s.start_ms, s.end_ms, s.name) for s in title.segments] == [(0, 3000, "Urban Dreams")]


# -- buttons ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "rows"),
    [
        ([], []),
        (["a"], [[0]]),
        (["a", "b"], [[0, 1]]),
        (["a"] * 4, [[0, 1, 2, 3]]),
        (["a"] * 5, [[0, 1, 2], [3, 4]]),
        (["a"] * 8, [[0, 1, 2, 3], [4, 5, 6, 7]]),
        (["a"] * 9, [[0, 1, 2], [3, 4, 5], [6, 7, 8]]),
        (["a sentence longer than a button", "b"], [[0], [1]]),
    ],
)
def test_button_rows_are_compact_and_even(labels: list[str], rows: list[list[int]]) -> None:
    assert button_rows(labels) == rows


def test_the_quick_actions_keyboard_is_two_rows_of_four_with_short_callback_data() -> None:
    for lang in ("en", "zh"):
        markup = keyboard(QUICK_ACTIONS, lang)
        assert markup is not None
        rows = markup.inline_keyboard
        assert [len(row) for row in rows] == [4, 4]
        data = [button.callback_data for row in rows for button in row]
        assert data == [f"act:{a}" for a in QUICK_ACTIONS]
        assert all(isinstance(d, str) and len(d.encode()) <= 64 for d in data)
    assert [b.text for b in keyboard(QUICK_ACTIONS, "zh").inline_keyboard[1]] == [  # type: ignore[union-attr]
        "🎵 加音乐",
        "🔤 加标题",
        "➖ 更短",
        "➕ 更长",
    ]


@pytest.mark.parametrize(
    ("buttons", "expected"),
    [
        ((), QUICK_ACTIONS),
        (("export",), QUICK_ACTIONS),
        (
            ("export", "status"),
            (
                "ratio_9_16",
                "ratio_16_9",
                "ratio_1_1",
                "export",
                "status",
                "music",
                "title",
                "shorter",
                "longer",
            ),
        ),
    ],
)
def test_a_turns_last_reply_offers_its_own_buttons_and_the_quick_actions(
    buttons: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert reply_actions(buttons) == expected


@pytest.mark.parametrize(
    ("payload", "index"),
    [
        ("ex1", 0),
        ("ex3", 2),
        ("ex4", None),  # the profile has three
        ("ex0", None),
        ("ex01", None),
        ("ex", None),
        ("EX1", None),
        ("ex1 ", None),
        ("promo", None),
        ("", None),
        (None, None),
        ("ex" + "9" * 62, None),
    ],
)
def test_deep_link_payloads_name_an_example_by_its_number(payload: str | None, index: int | None) -> None:
    assert example_index(payload, 3) == index
    if index is not None:
        assert example_action(index) == payload


def test_the_readme_picture_is_the_modules_drawing_of_the_example() -> None:
    """docs/timeline.png comes from scripts/timeline_example.py: 3 rows, the video in 3 segments."""
    committed = (Path(__file__).parent.parent / "docs" / "timeline.png").read_bytes()
    rows = bars(committed)
    assert [len(row) for row in rows] == [3, 1, 1]
    (left, right) = rows[2][0]
    assert abs(left - x_of(0, 30_000)) <= 2 and abs(right - x_of(3000, 30_000)) <= 2  # the 3 s title


def test_the_pictures_words_are_in_the_chats_language(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[str] = []
    original = timeline_image._Pen.text

    def record(
        self: timeline_image._Pen, xy: tuple[float, float], text: str, *args: object, **kw: object
    ) -> None:
        drawn.append(text)
        original(self, xy, text, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(timeline_image._Pen, "text", record)
    render_png(sample_draft(), lang="zh")
    assert drawn[0].startswith("时间线 · 3 条轨道 · 共 ") and {"视频", "背景音乐", "标题"} <= set(drawn)
    assert any(text.startswith("音量 ") for text in drawn)
    drawn.clear()
    render_png(sample_draft())
    assert drawn[0].startswith("Timeline · 3 tracks · ") and {"Video", "BGM", "Title"} <= set(drawn)
