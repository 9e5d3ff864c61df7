"""Property-based tests: the pure modules survive hostile and odd input (hypothesis).

Each property states what must hold for *every* input of its kind; hypothesis looks for a counterexample.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.core.agent_text import TELEGRAM_LIMIT, split_html, to_chat
from bot.core.intents import MAX_WORDS, Intent, links_in, route
from bot.core.media import KINDS, safe_filename
from bot.core.timeline import describe_changes, format_timeline, is_exportable, tracks
from bot.nemo.sse import AgentEvent, parse_event
from loopback.fake_telegram import parse_html

FAST = settings(max_examples=200, deadline=None)
MEDIUM = settings(max_examples=100, deadline=None)
HEAVY = settings(max_examples=60, deadline=None)  # nested JSON and whole drafts: costly to generate
SLOW = settings(max_examples=15, deadline=None)  # inputs of thousands of characters

# -- shared strategies ------------------------------------------------------------------------------

ODD_CHARS = (
    "\x00\x07\x1b\x7f\r\n\t\x0b\x0c\x1c\x85"  # controls and odd line breaks
    "\u200b\u200c\u200d\u2060\ufeff"  # zero-width
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # bidi marks and overrides
    "\u00a0\u2003\u3000\u2028\u2029"  # unusual spaces and separators
    "<>&\"';/\\.…。！"
    "😀🎬👨‍👩‍👧\U0001f1fa\U0001f1f8"  # emoji, ZWJ sequence, flag
    "导出积分状态上传时间线視頻𠀀"  # CJK, including a supplementary-plane ideograph
    "ﷺ﷽ﹰ／＼．"  # characters NFKC expands or maps onto ASCII punctuation
    "\ud800"  # a lone surrogate (str allows it)
)
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
ODD_TEXT = st.text(alphabet=st.one_of(st.characters(), st.sampled_from(ODD_CHARS)), max_size=40)

NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1, 10**10, 10**400, -(10**400), 2**63, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ODD_TEXT)


def json_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """Random JSON-ish values: scalars (NaN, infinities and huge integers included) nested in lists/dicts."""
    return st.recursive(
        SCALARS,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(ODD_TEXT, children, max_size=4),
        max_leaves=max_leaves,
    )


ANY_JSON = json_values()


def dump(value: Any) -> str:
    """JSON text as a server might send it (NaN/Infinity allowed, as Python's json writes them)."""
    return json.dumps(value, ensure_ascii=False)


# -- bot.nemo.sse.parse_event ----------------------------------------------------------------------------

ROLES = st.one_of(st.sampled_from(["model", "user", "tool", "system", "Model", "", None]), SCALARS)
FLAGS = st.one_of(st.booleans(), st.none(), st.sampled_from([1, 0, "true", "false", [], {}]))


@st.composite
def adk_parts(draw: st.DrawFn) -> Any:
    """One part of an ADK event's content: text (thought or not), a tool call or result, or junk."""
    kind = draw(st.sampled_from(["text", "text", "call", "response", "junk"]))
    if kind == "junk":
        return draw(ANY_JSON)
    part: dict[str, Any] = {}
    if kind == "text":
        part["text"] = draw(st.one_of(ODD_TEXT, ODD_TEXT, SCALARS))
    elif kind == "call":
        part["functionCall"] = {"name": draw(ODD_TEXT), "args": draw(ANY_JSON)}
    else:
        part["functionResponse"] = {"name": draw(ODD_TEXT), "response": draw(ANY_JSON)}
    if draw(st.booleans()):
        part["thought"] = draw(FLAGS)
    if kind != "text" and draw(st.booleans()):
        part["text"] = draw(ODD_TEXT)  # a tool part that also carries text
    return part


@st.composite
def adk_events(draw: st.DrawFn) -> dict[str, Any]:
    """A dict shaped like a Google ADK Event (no error keys, no legacy `type`)."""
    body: dict[str, Any] = {
        "author": draw(ODD_TEXT),
        "content": {"role": draw(ROLES), "parts": draw(st.lists(adk_parts(), max_size=5))},
    }
    if draw(st.booleans()):
        body["partial"] = draw(FLAGS)
    if draw(st.booleans()):
        body["actions"] = draw(st.one_of(ANY_JSON, st.just({"stateDelta": {"draft_version": 3}})))
    return body


LEGACY_TYPES = st.one_of(
    st.sampled_from(["text", "tool_call", "tool_result", "heartbeat", "ping", "keepalive", "error", "other"]),
    SCALARS,
)


@st.composite
def legacy_events(draw: st.DrawFn) -> dict[str, Any]:
    """A dict shaped like NemoVideo's older `{"type": ...}` events (content never a dict)."""
    body: dict[str, Any] = {"type": draw(LEGACY_TYPES)}
    if draw(st.booleans()):
        body["content"] = draw(ANY_JSON.filter(lambda v: not isinstance(v, dict)))
    if draw(st.booleans()):
        body["message"] = draw(ANY_JSON)
    return body


def has_tool_part(parts: list[Any]) -> bool:
    return any(isinstance(p, dict) and ("functionCall" in p or "functionResponse" in p) for p in parts)


def shown_text(parts: list[Any]) -> str:
    return "".join(
        p["text"]
        for p in parts
        if isinstance(p, dict) and isinstance(p.get("text"), str) and p.get("thought") is not True
    )


def check_event(result: object) -> None:
    assert result is None or isinstance(result, AgentEvent)
    if isinstance(result, AgentEvent):
        assert result.kind in ("text", "tool", "keepalive", "error", "state")
        assert isinstance(result.text, str)
        if result.kind == "text":
            assert result.text.strip()
        if result.kind == "error":
            assert 0 < len(result.text) <= 500
        result.text.encode("utf-8")  # sendable: no lone surrogate from a JSON "\ud83c" escape


def sendable(text: str) -> str:
    """What the bot can send for `text`: lone surrogates (unencodable in UTF-8) as U+FFFD."""
    return LONE_SURROGATE.sub("\ufffd", text)


@FAST
@given(ODD_TEXT)
@example("[" * 100_000)  # nesting deeper than the JSON decoder's recursion limit
@example('{"a":' * 50_000)
@example("NaN")
@example('{"errorCode": NaN}')
@example('{"content": {"role": "model", "parts": [{"text": "half an emoji \\ud83c"}]}}')
@example('{"type": "error", "message": "\\udfac"}')
@example("data: Traceback (most recent call last)")
def test_parse_event_never_raises_on_any_string(data: str) -> None:
    check_event(parse_event(data))


@HEAVY
@given(ANY_JSON, st.sampled_from(["", " ", "\n", "\t "]))
def test_parse_event_never_raises_on_any_json(value: Any, padding: str) -> None:
    check_event(parse_event(padding + dump(value) + padding))


@HEAVY
@given(st.one_of(adk_events(), legacy_events()), st.dictionaries(ODD_TEXT, ANY_JSON, max_size=3))
def test_parse_event_never_raises_on_event_shaped_dicts_with_extra_keys(
    body: dict[str, Any], extra: dict[str, Any]
) -> None:
    check_event(parse_event(dump({**extra, **body})))
    check_event(parse_event(dump({**body, **extra})))


@HEAVY
@given(adk_events())
def test_adk_text_only_from_final_non_thought_model_text(body: dict[str, Any]) -> None:
    result = parse_event(dump(body))
    check_event(result)
    content, parts = body["content"], body["content"]["parts"]
    final_model = content["role"] == "model" and body.get("partial") is not True
    if has_tool_part(parts):
        assert result is not None and result.kind == "tool"  # tool traffic never becomes text
    elif final_model and shown_text(parts).strip():
        assert result == AgentEvent("text", sendable(shown_text(parts)))
    else:
        assert result is None or result.kind != "text"
    if result is not None and result.kind == "text":
        assert final_model and not has_tool_part(parts)
        assert result.text == sendable(shown_text(parts))  # thought parts and non-text parts are left out


@HEAVY
@given(legacy_events())
def test_legacy_text_only_from_text_events(body: dict[str, Any]) -> None:
    result = parse_event(dump(body))
    check_event(result)
    kind, content = body["type"], body.get("content")
    if isinstance(kind, str) and kind in ("tool_call", "tool_result"):
        assert result == AgentEvent("tool")
    if result is not None and result.kind == "text":
        assert kind == "text" and isinstance(content, str) and result.text == sendable(content)


@HEAVY
@given(st.lists(adk_parts(), min_size=1, max_size=5), ROLES, FLAGS)
def test_tool_parts_never_produce_text(parts: list[Any], role: Any, partial: Any) -> None:
    parts = [*parts, {"functionCall": {"name": "edit_timeline", "args": {}}, "text": "leak?"}]
    result = parse_event(dump({"content": {"role": role, "parts": parts}, "partial": partial}))
    assert result == AgentEvent("tool")


# -- bot.core.timeline -----------------------------------------------------------------------------------

META_KEYS = st.sampled_from(
    ["title", "text", "name", "desc", "prompt", "file_name", "url", "volume", "v", "role", "type", "x"]
)
META = st.one_of(st.dictionaries(META_KEYS, st.one_of(SCALARS, json_values(4)), max_size=5), SCALARS)
SEGMENT_KEYS = st.sampled_from(["d", "duration", "st", "s", "start", "start_time", "offset", "m", "x"])


@st.composite
def segments(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 5)) == 0:
        return draw(ANY_JSON)
    segment = draw(st.dictionaries(SEGMENT_KEYS, st.one_of(NUMBERS, SCALARS), max_size=5))
    if draw(st.booleans()):
        segment["m"] = draw(META)
    return segment


@st.composite
def track_items(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 5)) == 0:
        return draw(ANY_JSON)
    track: dict[str, Any] = {}
    if draw(st.integers(0, 5)):
        track["tt"] = draw(st.one_of(st.sampled_from([0, 1, 7, 2, 99, -1, True, False, 1.0]), SCALARS))
    if draw(st.integers(0, 5)):
        track["sg"] = draw(st.one_of(st.lists(segments(), max_size=4), ANY_JSON))
    if draw(st.booleans()):
        track["m"] = draw(META)
    return track


@st.composite
def drafts(draw: st.DrawFn) -> Any:
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return draw(ANY_JSON)
    if choice == 1:
        return {"t": draw(ANY_JSON)}
    draft: dict[str, Any] = {"t": draw(st.lists(track_items(), max_size=5))}
    if draw(st.booleans()):
        draft.update(draw(st.dictionaries(ODD_TEXT, ANY_JSON, max_size=3)))
        draft["t"] = draft.get("t", [])
    return draft


def expected_track_count(draft: Any) -> int:
    """Tracks that are dicts whose `sg` is a list holding at least one segment dict."""
    raw = draft.get("t") if isinstance(draft, dict) else None
    if not isinstance(raw, list):
        return 0
    return sum(
        1
        for track in raw
        if isinstance(track, dict)
        and isinstance(track.get("sg"), list)
        and any(isinstance(segment, dict) for segment in track["sg"])
    )


NAN_VOLUME = {"t": [{"tt": 1, "sg": [{"d": 1000}], "m": {"volume": float("nan")}}]}


@HEAVY
@given(drafts())
@example(NAN_VOLUME)  # `{"volume": NaN}` is valid JSON to Python's decoder (and httpx's)
@example({"t": [{"tt": 1, "sg": [{"d": 1, "m": {"v": float("nan")}}]}]})
@example({"t": [{"tt": 1, "sg": [{"d": float("inf"), "st": float("-inf")}], "m": {"volume": float("inf")}}]})
@example({"t": [{"tt": 0, "sg": [{"d": 10**400, "st": -(10**400), "m": {"name": 10**400}}]}]})
def test_draft_summaries_never_raise_and_count_tracks(draft: Any) -> None:
    summaries = tracks(draft)
    assert len(summaries) == expected_track_count(draft)
    assert is_exportable(draft) is bool(summaries)
    text = format_timeline(summaries)
    assert text.startswith("Timeline")
    text.encode("utf-8")  # sendable to Telegram, whatever the draft's strings hold
    assert describe_changes(summaries, summaries) == []
    assert describe_changes(summaries, list(summaries)) == []
    for summary in summaries:
        assert summary.start_ms >= 0 and summary.end_ms >= 0 and summary.segments >= 1
        assert summary.volume is None or 0 <= summary.volume <= 1000
        assert len(summary.name) <= 60 and summary.describe()


@HEAVY
@given(drafts(), drafts())
def test_describe_changes_never_raises_between_any_two_drafts(before: Any, after: Any) -> None:
    old, new = tracks(before), tracks(after)
    lines = describe_changes(old, new)
    assert all(line.startswith(("Added: ", "Changed: ", "Removed: ")) for line in lines)
    assert len(describe_changes([], new)) == len(new)
    assert all(line.startswith("Removed: ") for line in describe_changes(old, []))


# -- bot.core.intents ------------------------------------------------------------------------------------


@FAST
@given(ODD_TEXT)
@example("\u202eexport\u202c")
@example("http://")
@example("https://[")
@example("upload " + "https://a.example/x.mp4 " * 50)
def test_route_and_links_never_raise(text: str) -> None:
    assert route(text) in set(Intent)
    assert isinstance(links_in(text), list)


@SLOW
@given(
    st.text(
        alphabet=st.one_of(st.characters(), st.sampled_from(ODD_CHARS + "  ")), min_size=4000, max_size=4096
    )
)
@example("a" * 4096)
@example("导出" * 2048)
@example("😀" * 4096)
@example("export " * 585)
def test_route_copes_with_messages_at_telegrams_limit(text: str) -> None:
    intent = route(text)
    assert intent in set(Intent)
    words = [w for w in re.split(r"[ \n\t]+", text) if any(ch.isalnum() for ch in w)]
    if len(words) > MAX_WORDS and not links_in(text):
        assert intent is Intent.CHAT


LETTER_WORDS = st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=8)
KEYWORDS = st.sampled_from(
    [
        "export",
        "download",
        "credits",
        "balance",
        "status",
        "tracks",
        "upload",
        "render",
        "导出",
        "积分",
        "状态",
        "上传",
        "下载",
        "余额",
        "时间线",
        "轨道",
        "1",
        "a",
        "我",
    ]
)


@MEDIUM
@given(st.lists(st.one_of(LETTER_WORDS, KEYWORDS), min_size=MAX_WORDS + 1, max_size=16))
@example(["导出", "a", "b", "c", "d", "e", "f", "g", "h"])
@example(["export", "1", "2", "3", "4", "5", "6", "7", "8"])
def test_more_than_eight_words_without_links_is_chat(words: list[str]) -> None:
    text = " ".join(words)
    assert route(text) is Intent.CHAT


ENGLISH_COMMANDS = {
    "export": Intent.EXPORT,
    "download": Intent.EXPORT,
    "export 1080p mp4": Intent.EXPORT,
    "ok export": Intent.EXPORT,
    "please download": Intent.EXPORT,
    "send me the video": Intent.EXPORT,
    "give me the final mp4": Intent.EXPORT,
    "render it": Intent.EXPORT,
    "credits": Intent.CREDITS,
    "balance": Intent.CREDITS,
    "my credits?": Intent.CREDITS,
    "status": Intent.STATUS,
    "show tracks": Intent.STATUS,
    "show me the timeline": Intent.STATUS,
    "what's the progress": Intent.STATUS,
    "upload": Intent.UPLOAD,
    "how do i upload": Intent.UPLOAD,
    "upload my files": Intent.UPLOAD,
    "don't export yet": Intent.CHAT,
    "add end credits": Intent.CHAT,
    "make a video about how to download apps": Intent.CHAT,
}
PADDING = st.text(alphabet=" \t\n\r\u00a0\u2003\u3000\u200b\ufeff", max_size=6)


@FAST
@given(
    st.sampled_from(sorted(ENGLISH_COMMANDS)),
    st.integers(0, 2**64),  # which letters to upper-case, as a bit mask
    PADDING,
    PADDING,
)
def test_case_and_surrounding_whitespace_do_not_change_the_intent(
    phrase: str, upper: int, before: str, after: str
) -> None:
    assert route(phrase) is ENGLISH_COMMANDS[phrase]
    variant = "".join(ch.upper() if upper >> i & 1 else ch for i, ch in enumerate(phrase))
    assert route(before + variant + after) is ENGLISH_COMMANDS[phrase]


URLS = st.sampled_from(
    [
        "https://example.com/a.mp4",
        "http://example.com/clip.mov?x=1&y=2",
        "HTTPS://EXAMPLE.COM/PHOTO.JPG",
        "https://例子.测试/视频.mp4",
        "https://example.com/a_(b).png",
        "ftp://example.com/a.mp4",
        "javascript:alert(1)",
        "http://",
        "https://",
    ]
)
LINK_FRAGMENTS = st.one_of(
    URLS,
    st.sampled_from(
        ["upload", "上传", "upload these", " ", "\n", ",", ".", ")", "<", ">", '"', "'", "\u202e"]
    ),
    ODD_TEXT,
)


@MEDIUM
@given(st.lists(LINK_FRAGMENTS, max_size=8))
@example(["upload ", "https://a.example/x.mp4", ", ", "https://b.example/y.png"])
@example(["<https://a.example/x.mp4>"])
def test_links_in_only_returns_http_urls_from_the_text(fragments: list[str]) -> None:
    text = "".join(fragments)
    found = links_in(text)
    for url in found:
        assert url.lower().startswith(("http://", "https://"))
        assert url in text
        assert not re.search(r"[\s<>\"']", url)
    assert (route(text) is Intent.LINKS) == bool(found)


# -- bot.core.agent_text ---------------------------------------------------------------------------------

GUI_FRAGMENTS = st.sampled_from(
    [
        "Click the Export button",
        'tap "export"',
        "press “Export”",
        "preview it in the timeline",
        "open the layers panel",
        "drag and drop",
        'click "Add <b>Music</b>"',
        'press "Apply & Save"',
        "点击导出按钮",
        "在时间线中预览",
        "拖拽",
        "<script>alert(1)</script>",
        '<a href="https://evil.example">x</a>',
        "<b>bold</b>",
        "<tg-spoiler>s</tg-spoiler>",
        "&amp;",
        "&lt;",
        "&#x27;",
        "&",
        "&;",
        "<",
        ">",
    ]
)
AGENT_TEXT = st.lists(st.one_of(GUI_FRAGMENTS, ODD_TEXT), max_size=8).map("".join)
ENTITY = re.compile(r"&(?:amp|lt|gt|quot|#x27);")


@MEDIUM
@given(AGENT_TEXT, st.sampled_from(["en", "zh"]))
def test_to_chat_escapes_everything_from_the_agent(text: str, lang: Any) -> None:
    assert "<" not in to_chat(text, lang).html and ">" not in to_chat(text, lang).html
    text = sendable(text)  # what bot.nemo.sse hands over (and what Telegram's UTF-8 can carry)
    chat = to_chat(text, lang)
    assert "<" not in chat.html and ">" not in chat.html  # no tag can come from the agent's text
    assert ENTITY.sub("", chat.html).count("&") == 0  # every & starts an entity html.escape makes
    plain, entities = parse_html(chat.html, strict_ampersand=True)  # Telegram's rules, as the fake has them
    assert entities == []
    assert plain == html.unescape(chat.html)
    assert set(chat.buttons) <= {"export", "status"} and len(set(chat.buttons)) == len(chat.buttons)
    if not chat.buttons and not any(w in text.casefold() for w in ("drag", "click", "tap", "press", "拖")):
        assert plain == text  # nothing to rephrase: the text is shown exactly


def long_texts() -> st.SearchStrategy[str]:
    """Texts of up to ~20,000 characters: repeated fragments, so that splitting really happens."""
    piece = st.text(alphabet=st.sampled_from(list("ab &<>\"'\né😀\u3000")), max_size=400)
    repeated = st.tuples(piece, st.integers(1, 60)).map(lambda t: t[0] * t[1])
    return st.one_of(repeated, ODD_TEXT, st.lists(piece, max_size=40).map("".join))


def check_split(escaped: str, chunks: list[str], limit: int) -> None:
    """Each chunk fits, is non-empty, and is the next stretch of `escaped` after skipped whitespace only,
    never starting or ending inside an entity; so the chunks joined equal the input up to whitespace."""
    entity_spans = [m.span() for m in ENTITY.finditer(escaped)]
    cursor = 0
    for chunk in chunks:
        assert 0 < len(chunk) <= limit
        assert chunk == chunk.strip()
        start = escaped.index(chunk, cursor)
        assert escaped[cursor:start].strip() == ""  # only whitespace skipped between chunks
        end = start + len(chunk)
        for a, b in entity_spans:
            assert not a < start < b and not a < end < b, (chunk[:20], chunk[-20:])
        cursor = end
    assert escaped[cursor:].strip() == ""
    assert "".join("".join(chunks).split()) == "".join(escaped.split())


@MEDIUM
@given(long_texts())
@example("&" * 5000)
@example("a" * 4093 + "&amp;" * 10)
@example(("x" * 4090 + " ") * 3)
@example("<" * 2000)
def test_split_html_at_telegrams_limit(text: str) -> None:
    escaped = html.escape(text)
    chunks = split_html(escaped)
    check_split(escaped, chunks, TELEGRAM_LIMIT)


@MEDIUM
@given(long_texts(), st.integers(16, 300))
def test_split_html_at_any_limit(text: str, limit: int) -> None:
    escaped = html.escape(text)
    check_split(escaped, split_html(escaped, limit), limit)


@HEAVY
@given(AGENT_TEXT.map(lambda t: sendable(t) * 40), st.sampled_from(["en", "zh"]))
def test_agent_replies_split_into_valid_telegram_html(text: str, lang: Any) -> None:
    for chunk in split_html(to_chat(text, lang).html):
        assert 0 < len(chunk) <= TELEGRAM_LIMIT
        parse_html(chunk, strict_ampersand=True)  # a cut entity would raise here


# -- bot.core.media.safe_filename ------------------------------------------------------------------------

NAME_PARTS = st.sampled_from(
    [
        *(
            "..",
            "/",
            "\\",
            ".",
            " ",
            "_",
            "-",
            "x",
            "mp4",
            ".mp4",
            ".exe",
            ".jpg",
            ".sh",
            ".ogg",
            "\x00",
            "\n",
        ),
        *(
            "\u202e",
            "\u200b",
            "ﷺ",
            "／",
            "＼",
            "．",
            "ｅｘｅ",
            "C:",
            "~",
            "%2e%2e",
            "😀",
            "视频",
            "\ud800",
            "\u2028",
        ),
    ]
)
NAMES = st.one_of(st.none(), ODD_TEXT, st.lists(st.one_of(NAME_PARTS, ODD_TEXT), max_size=12).map("".join))


@MEDIUM
@given(NAMES, st.sampled_from(sorted(KINDS)))
@example("../../x.mp4", "mp4")
@example("..\\..\\windows\\system32\\evil.exe", "mp4")
@example(".bashrc", "mp4")
@example("\u202e4pm.exe", "mp4")
@example("ﷺ" * 40, "jpg")
@example("a" * 500 + ".mp4", "mp4")
@example("．．／．．／etc／passwd", "png")
def test_safe_filename_is_a_plain_short_basename(name: str | None, ext: str) -> None:
    result = safe_filename(name, ext, "document_1")
    assert "/" not in result and "\\" not in result
    assert not any(unicodedata.category(ch)[0] == "C" for ch in result)  # controls, format chars, surrogates
    assert not result.startswith(".")
    assert result.endswith("." + ext) and len(result) > len(ext) + 1
    assert len(result) <= 100
