"""The studio's and the projects' decisions, pure: Telegram's initData check, the segments the
studio draws, project names and times, the studio's button."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.chat.kit import studio_link
from bot.chat.studio import media_json
from bot.chat.switcher import ago, clean_name, next_id
from bot.core.timeline import studio_tracks
from bot.state.projects import ProjectRecord
from bot.studio.auth import caller_of
from loopback.emulator import sample_draft

TOKEN = "123456:secret-part-of-the-bot-token"


def signed(
    user: dict[str, Any] | None, *, token: str = TOKEN, auth_date: int | None = None, **extra: str
) -> str:
    """initData as Telegram signs it (core.telegram.org/bots/webapps, "Validating data received via
    the Mini App"), written here from the documentation, not with the library the bot uses."""
    fields = {"auth_date": str(auth_date or int(time.time())), "query_id": "AAHdF6IQAAAAAN0X", **extra}
    if user is not None:
        fields["user"] = json.dumps(user, separators=(",", ":"), ensure_ascii=False)
    check = "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))
    secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    return urlencode({**fields, "hash": hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()})


ADA = {"id": 4242, "first_name": "Ada", "language_code": "zh-hans"}


def test_signed_init_data_names_its_user() -> None:
    caller = caller_of("tma " + signed(ADA), TOKEN, 3600)
    assert caller is not None and caller.user_id == 4242 and caller.language_code == "zh-hans"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        signed(ADA),  # without the "tma " scheme
        "tma " + signed(ADA, token="123456:another-bot"),  # signed for another bot
        "tma " + signed(ADA).replace("Ada", "Eve"),  # changed after signing
        "tma " + signed({**ADA, "id": 1}).replace("id%22%3A1%2C", "id%22%3A4242%2C"),  # another user
        "tma " + signed(ADA, auth_date=int(time.time()) - 7200),  # older than the limit
        "tma " + signed(None),  # names nobody
        "tma not even a query string",
        "tma user=" + "%5B" * 5000 + "&auth_date=1&hash=00",  # JSON too deep to read
    ],
)
def test_forged_stale_or_missing_init_data_names_nobody(header: str | None) -> None:
    assert caller_of(header, TOKEN, 3600) is None


def test_every_segment_is_drawn_with_its_span_volume_and_title() -> None:
    tracks = studio_tracks(sample_draft())
    assert [(t.kind, t.label) for t in tracks] == [("video", "Video"), ("audio", "BGM"), ("text", "Title")]
    video, music, title = tracks
    assert [(s.name, s.start_ms, s.length_ms) for s in video.segments] == [("city timelapse", 0, 10000)]
    assert music.segments[0].volume == 35 and music.segments[0].title is None
    assert title.segments[0].title == "Urban Dreams"


def test_segments_follow_each_other_and_only_https_pictures_are_thumbnails() -> None:
    draft = {
        "t": [
            {
                "tt": 0,
                "sg": [
                    {"d": 4000, "m": {"name": "a", "url": "https://cdn.example/a.JPG?x=1"}},
                    {"d": 6000, "m": {"name": "b", "url": "https://cdn.example/b.mp4"}},
                    {"d": 2000, "m": {"name": "c", "url": "http://cdn.example/c.jpg"}},
                    {"d": 1000, "m": {"thumbnail": "https://cdn.example/d-thumb.png"}},
                ],
            },
            {"tt": 1, "sg": [{"d": 5000, "m": {"name": "quiet", "volume": 0}}]},
        ]
    }
    video, audio = studio_tracks(draft)
    assert [(s.index, s.start_ms, s.length_ms) for s in video.segments] == [
        (0, 0, 4000),
        (1, 4000, 6000),
        (2, 10000, 2000),
        (3, 12000, 1000),
    ]
    assert [s.thumbnail for s in video.segments] == [
        "https://cdn.example/a.JPG?x=1",
        None,
        None,
        "https://cdn.example/d-thumb.png",
    ]
    assert audio.segments[0].volume == 0  # silent is a volume, not a missing one


@pytest.mark.parametrize(
    "draft", [None, {}, {"t": "x"}, {"t": [{"tt": 0, "sg": [1, None]}]}, {"t": [{"sg": []}]}]
)
def test_an_odd_draft_is_an_empty_studio(draft: object) -> None:
    assert studio_tracks(draft) == []


def test_media_are_named_and_only_https_links_kept() -> None:
    assert media_json({"name": "photo.jpg", "file_type": "image", "url": "https://cdn/x.jpg"}) == {
        "name": "photo.jpg",
        "kind": "image",
        "url": "https://cdn/x.jpg",
    }
    assert media_json({"url": "http://cdn/clip_1.mp4", "duration": 3}) == {
        "name": "clip_1.mp4",
        "kind": "video",
        "url": None,
    }


@pytest.mark.parametrize(
    ("given", "kept"),
    [("  Summer\n teaser ", "Summer teaser"), ("x" * 80, "x" * 40), ("   ", ""), ("夏日 预告", "夏日 预告")],
)
def test_a_project_name_is_one_trimmed_line(given: str, kept: str) -> None:
    assert clean_name(given) == kept


@pytest.mark.parametrize(
    ("seconds", "en", "zh"),
    [
        (5, "just now", "刚刚"),
        (300, "5 min ago", "5 分钟前"),
        (7300, "2 h ago", "2 小时前"),
        (200000, "2 days ago", "2 天前"),
    ],
)
def test_when_a_project_changed_reads_as_people_say_it(seconds: float, en: str, zh: str) -> None:
    assert ago(seconds, "en") == en and ago(seconds, "zh") == zh


def test_a_new_project_takes_the_next_number() -> None:
    assert next_id([]) == "1"
    assert next_id([ProjectRecord("1"), ProjectRecord("3"), ProjectRecord("odd")]) == "4"


class _Out:
    def __init__(self, chat_id: int, username: str | None = "nemo_test_bot", thread_id: int | None = None):
        self.chat_id, self.lang, self.thread_id = chat_id, "en", thread_id
        self.bot = type("Bot", (), {"username": username})()


def test_the_studio_button_is_the_mini_app_in_private_and_a_direct_link_in_groups() -> None:
    url = "https://studio.example/studio"
    private = studio_link(url, _Out(42))  # type: ignore[arg-type]
    group = studio_link(url, _Out(-100123))  # type: ignore[arg-type]
    assert private is not None and private.web_app and private.url == url
    assert group is not None and not group.web_app and group.url == "https://t.me/nemo_test_bot?startapp"
    assert studio_link(None, _Out(42)) is None  # type: ignore[arg-type]
    topic = studio_link(url, _Out(42, thread_id=77))  # type: ignore[arg-type]
    assert topic is not None and topic.url == url + "?topic=77"  # a private topic opens on its project
