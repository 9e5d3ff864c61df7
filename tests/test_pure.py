"""Pure functions: intents, timeline summaries, SSE parsing, agent text, media checks, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.core import agent_text, intents, media, timeline
from bot.core.intents import Intent, route
from bot.core.logs import redact
from bot.core.texts import language_of, say, session_language
from bot.nemo import errors, sse

MEDIA = Path(__file__).parent / "media"
SAMPLE_DRAFT = {
    "t": [
        {"tt": 0, "sg": [{"d": 10000, "m": {"name": "city timelapse"}}]},
        {"tt": 1, "sg": [{"d": 10000, "m": {"name": "Lo-fi"}}], "m": {"volume": 0.35}},
        {"tt": 7, "sg": [{"d": 3000, "m": {"title": "Urban Dreams"}}]},
    ]
}


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("export", Intent.EXPORT),
        ("Export 1080p MP4", Intent.EXPORT),
        ("导出", Intent.EXPORT),
        ("download", Intent.EXPORT),
        ("send me the video", Intent.EXPORT),
        ("credits", Intent.CREDITS),
        ("积分", Intent.CREDITS),
        ("balance", Intent.CREDITS),
        ("余额", Intent.CREDITS),
        ("status", Intent.STATUS),
        ("状态", Intent.STATUS),
        ("show tracks", Intent.STATUS),
        ("upload", Intent.UPLOAD),
        ("上传", Intent.UPLOAD),
        ("https://example.com/a.mp4", Intent.LINKS),
        ("combine these images into a 30-second promo video with music and text", Intent.CHAT),
        ("make a video about how to download apps", Intent.CHAT),
        ("add end credits", Intent.CHAT),
        ("add music to the timeline", Intent.CHAT),
        ("don't export yet", Intent.CHAT),
        ("export without music", Intent.CHAT),
        ("give me the video in vertical format", Intent.CHAT),
        ("shorter please, then send me the video", Intent.CHAT),
        ("roll the credits at the end", Intent.CHAT),
        ("the balance of music and voice is off", Intent.CHAT),
        ("please export it in 1080p", Intent.EXPORT),
        ("How many credits do I have left?", Intent.CREDITS),
        ("把这些图片合成一个三十秒的宣传视频并导出", Intent.CHAT),
        ("", Intent.CHAT),
        ("   \u200b  ", Intent.CHAT),
    ],
)
def test_route_follows_the_skills_table(text: str, intent: Intent) -> None:
    assert route(text) is intent


def test_links_only_messages_are_uploads_and_mixed_ones_are_chat() -> None:
    assert intents.links_in("upload https://a.example/x.mp4, https://b.example/y.png") == [
        "https://a.example/x.mp4",
        "https://b.example/y.png",
    ]
    assert intents.links_in("make a video from https://a.example/x.mp4") == []


def test_timeline_summary_matches_the_skill_format() -> None:
    summary = timeline.format_timeline(timeline.tracks(SAMPLE_DRAFT))
    assert summary == (
        "Timeline (3 tracks): 1. Video: city timelapse (0-10s) 2. BGM: Lo-fi (0-10s, 35%) "
        '3. Title: "Urban Dreams" (0-3s)'
    )
    assert timeline.is_exportable(SAMPLE_DRAFT)


@pytest.mark.parametrize(
    "draft",
    [
        None,
        {},
        {"t": None},
        {"t": "x"},
        {"t": [None, 3, {"sg": None}, {"tt": "video", "sg": [{}]}]},
        {"t": [{"sg": [{"d": "10"}]}]},
    ],
)
def test_odd_drafts_never_crash_the_summary(draft: object) -> None:
    text = timeline.format_timeline(timeline.tracks(draft))
    assert text.startswith("Timeline")


def test_empty_draft_is_not_exportable() -> None:
    assert not timeline.is_exportable({"t": [{"tt": 0, "sg": []}]})


def test_changes_name_added_changed_and_removed_tracks() -> None:
    before = timeline.tracks(SAMPLE_DRAFT)
    after_draft = json.loads(json.dumps(SAMPLE_DRAFT))
    after_draft["t"][1]["m"]["volume"] = 0.5
    del after_draft["t"][2]
    after_draft["t"].append({"tt": 0, "sg": [{"d": 5000, "m": {"name": "beach"}}]})
    lines = timeline.describe_changes(before, timeline.tracks(after_draft))
    assert "Changed: BGM: Lo-fi (0-10s, 50%)" in lines
    assert "Added: Video: beach (0-5s)" in lines
    assert 'Removed: Title: "Urban Dreams" (0-3s)' in lines
    assert timeline.describe_changes(before, before) == []


def adk(text: str, **extra: object) -> str:
    event = {"content": {"parts": [{"text": text}], "role": "model"}, "author": "nemo_agent", **extra}
    return json.dumps(event)


def test_sse_reader_keeps_model_text_and_drops_everything_else() -> None:
    assert sse.parse_event(adk("Hello")) == sse.AgentEvent("text", "Hello")
    assert sse.parse_event(adk("Hel", partial=True)) == sse.AgentEvent("partial", "Hel")  # a streamed delta
    thought = {"content": {"parts": [{"text": "thinking", "thought": True}], "role": "model"}}
    assert sse.parse_event(json.dumps(thought)) is None
    call = {"content": {"parts": [{"functionCall": {"name": "x", "args": {}}}], "role": "model"}}
    assert sse.parse_event(json.dumps(call)) == sse.TOOL
    result = {"content": {"parts": [{"functionResponse": {"name": "x"}}], "role": "user"}}
    assert sse.parse_event(json.dumps(result)) == sse.TOOL
    assert sse.parse_event("") == sse.KEEPALIVE
    assert sse.parse_event('{"type":"heartbeat"}') == sse.KEEPALIVE
    assert sse.parse_event("Traceback (most recent call last): boom") is None
    assert sse.parse_event('{"type":"text","content":"legacy hi"}') == sse.AgentEvent("text", "legacy hi")
    assert sse.parse_event('{"type":"tool_call","name":"x"}') == sse.TOOL
    assert sse.parse_event('{"errorCode":"SAFETY","errorMessage":"blocked"}') == sse.AgentEvent(
        "error", "blocked"
    )
    assert sse.parse_event('{"error":"boom","error_details":{}}') == sse.AgentEvent("error", "boom")


def test_gui_talk_becomes_chat_terms_with_buttons() -> None:
    result = agent_text.to_chat(
        "Done! Click the Export button to download, or preview it in the timeline.", "en"
    )
    assert "click" not in result.html.lower()
    assert 'say "export"' in result.html.replace("&quot;", '"')
    assert result.buttons == ("export", "status")
    zh = agent_text.to_chat("完成了，点击导出按钮即可。", "zh")
    assert "导出" in zh.html and zh.buttons == ("export",)
    plain = agent_text.to_chat("Drag the clip <b>left</b> & drop it", "en")
    assert "<b>" not in plain.html and "&lt;b&gt;" in plain.html and "tell me what to move" in plain.html


def test_split_respects_the_limit_and_entities() -> None:
    text = ("word &amp; " * 1000).strip()
    chunks = agent_text.split_html(text, 4096)
    assert all(len(c) <= 4096 for c in chunks)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")
    unbroken = "&amp;" * 2000
    parts = agent_text.split_html(unbroken, 4096)
    assert all(p.count("&") == p.count(";") for p in parts)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("clip.mp4", True),
        ("clip.mov", True),
        ("clip.webm", True),
        ("photo.jpg", True),
        ("photo.png", True),
        ("image.webp", True),
        ("anim.gif", True),
        ("tone.mp3", True),
        ("tone.wav", True),
        ("tone.m4a", True),
    ],
)
def test_accepted_media_pass_name_and_content_checks(name: str, ok: bool) -> None:
    declared, problem = media.check_name(name, None)
    assert problem is None
    check = media.inspect_file(MEDIA / name, declared)
    assert (check.problem is None) is ok


@pytest.mark.parametrize(
    ("name", "reason"),
    [("not_a_video.mp4", "unreadable"), ("empty.mp4", "empty"), ("truncated.mp4", "truncated")],
)
def test_broken_media_are_refused_by_content(name: str, reason: str) -> None:
    declared, problem = media.check_name(name, None)
    assert problem is None
    check = media.inspect_file(MEDIA / name, declared)
    assert check.problem is not None and check.problem.reason == reason


def test_disguised_and_voice_files_are_refused_by_name() -> None:
    assert media.check_name("photo.jpg.exe", None)[1] == media.Problem("unsupported", "exe")
    assert media.check_name("voice.ogg", "audio/ogg")[1] == media.Problem("voice_format")
    assert media.check_name(None, "audio/ogg")[1] == media.Problem("voice_format")


def test_content_that_contradicts_the_name_is_refused() -> None:
    head = (MEDIA / "photo.png").read_bytes()[:64]
    assert media.check_content("mp4", head, 100) == media.Problem("mismatch", "mp4/png")
    mov_head = (MEDIA / "clip.mov").read_bytes()[:64]
    assert media.check_content("mp4", mov_head, 100) is None  # one container family


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../x.mp4", "x.mp4"),
        ("a.mp4.exe", "a.mp4"),
        ("..\\..\\evil.mov", "evil.mp4"),
        (None, "video_1.mp4"),
        ("\u202eexe.mp4", "exe.mp4"),
        ("my clip (1).mp4", "my clip _1.mp4"),
        ("....", "video_1.mp4"),
    ],
)
def test_safe_filenames(name: str | None, expected: str) -> None:
    assert media.safe_filename(name, "mp4", "video_1") == expected


def test_error_mapping_reads_codes_from_any_status() -> None:
    assert isinstance(errors.error_for(200, {"code": 1001, "message": "expired"}), errors.TokenExpired)
    assert isinstance(errors.error_for(401, {"code": 1002}), errors.SessionNotFound)
    assert isinstance(errors.error_for(200, {"code": 2001}), errors.OutOfCredits)
    assert isinstance(errors.error_for(404, {"detail": "Session not found: 1"}), errors.SessionNotFound)
    assert isinstance(errors.error_for(402, None), errors.ExportNotAllowed)
    assert isinstance(errors.error_for(429, None), errors.RateLimited)
    assert isinstance(errors.error_for(502, None), errors.BackendUnavailable)
    assert isinstance(errors.error_for(400, None, anonymous_token_call=True), errors.MissingClientId)
    assert errors.error_for(200, {"code": 0, "data": {}}) is None
    assert errors.unwrap({"success": True, "data": {"a": 1}}) == {"a": 1}
    assert errors.unwrap({"status": "completed"}) == {"status": "completed"}


def test_languages() -> None:
    assert language_of("zh-hans") == "zh" and language_of("en-GB") == "en" and language_of(None) == "en"
    assert session_language("zh-hans") == "zh-CN"
    assert session_language("pt-br") == "pt-BR"
    assert session_language("ja") == "ja"
    assert session_language("../etc") == "en"


def test_say_escapes_values() -> None:
    assert "&lt;script&gt;" in say("en", "empty", name="<script>")


def test_redact_masks_tokens_everywhere() -> None:
    line = "GET https://api.telegram.org/bot123456:AAH-abcdefghijklmnopqrstuvwxyz/getMe Bearer nmv_usr_abc"
    assert "abcdefghij" not in redact(line) and "nmv_usr_abc" not in redact(line)
    assert "s3cr3t" not in redact("value s3cr3t", ["s3cr3t"])
    encoded = "GET http://h/file/bot123456%3AAAH-abcdefghijklmnopqrstuvwxyz/photos/file_1.jpg"
    assert "abcdefghij" not in redact(encoded)


def test_split_prefers_a_paragraph_to_a_later_line_break_and_never_cuts_a_tag() -> None:
    first = "a" * 3000 + "\n\n" + "b" * 800 + "\n" + "c" * 600
    assert agent_text.split_html(first, 4096)[0] == "a" * 3000
    link = '<a href="https://example.com/some/long/path">the link</a>'
    text = "x" * 4070 + " " + link + " tail"
    parts = agent_text.split_html(text, 4096)
    assert parts == ["x" * 4070, link + " tail"]
