"""The studio's page (bot/studio/static) in Debian's chromium, against a stub of its JSON API.

The stub serves the page as the bot does (`/studio`, `/studio/static/<file>`) and answers
`POST /studio/api/{state,switch,segment,act}` with canned states following the contract, recording
every call; without `Authorization: tma <the expected initData>` it answers 401. Thumbnails, media
and the last video are served on loopback too, so nothing leaves the machine.

`STUDIO_SCREENSHOT=docs/studio.png pytest tests/test_studio_page.py -k sample` saves the studio
with the sample state at 400×800.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web

from bot.studio.api import PAGE_POLICY
from tests.studio_browser import requires_browser, studio_page

pytestmark = requires_browser

STATIC = Path(__file__).parent.parent / "bot" / "studio" / "static"
MEDIA = Path(__file__).parent / "media"
WAIT_MS = 5_000


def init_data(user_id: int = 4242, language_code: str = "en") -> str:
    """A Mini App's initData as Telegram sends it (the hash is not checked by the stub)."""
    user = {"id": user_id, "first_name": "Ada", "username": "ada", "language_code": language_code}
    return urlencode(
        {
            "query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
            "user": json.dumps(user, separators=(",", ":")),
            "auth_date": "1765100000",
            "signature": "c2lnbmF0dXJl",
            "hash": "89d6079ad6762351f38c6dbbc41bb53048019256a9443988af7a48bcad16ba31",
        }
    )


def segment(index: int, name: str, start_ms: int, length_ms: int, **extra: Any) -> dict[str, Any]:
    base = {"volume": None, "title": None, "thumbnail": None}
    return {"index": index, "name": name, "start_ms": start_ms, "length_ms": length_ms, **base, **extra}


def sample_states(base_url: str, lang: str = "en") -> dict[str, dict[str, Any]]:
    """Two projects' states, "p1" (the contract's sample, its URLs on loopback) and "p2"."""
    projects = [
        {"id": "p1", "name": "Teaser", "updated_at": 1765100000, "rendering": False},
        {"id": "p2", "name": "Bakery reel", "updated_at": 1765000000, "rendering": True},
    ]
    photo = f"{base_url}/files/photo.jpg"
    teaser = {
        "lang": lang,
        "project": projects[0],
        "projects": [{**projects[0], "current": True}, {**projects[1], "current": False}],
        "duration_ms": 30000,
        "tracks": [
            {
                "kind": "video",
                "label": "Video",
                "segments": [
                    segment(0, "photo_1.jpg", 0, 10000, thumbnail=photo),
                    segment(1, "clip_2.mp4", 10000, 12000, thumbnail=photo),
                    segment(2, "photo_3.jpg", 22000, 8000),
                ],
            },
            {"kind": "audio", "label": "BGM", "segments": [segment(0, "Lo-fi", 0, 30000, volume=35)]},
            {
                "kind": "text",
                "label": "Title",
                "segments": [segment(0, "Grand Opening", 0, 3000, title="Grand Opening")],
            },
        ],
        "media": [
            {"name": "photo_1.jpg", "kind": "image", "url": photo},
            {"name": "clip_2.mp4", "kind": "video", "url": f"{base_url}/files/clip.mp4"},
        ],
        "credits": {"available": 250, "account": "trial"},
        "video": {"url": f"{base_url}/files/clip.mp4", "name": "video.mp4"},
        "browser_url": "https://nemovideo.com/workspace/claim?ct=abc",
    }
    bakery = {
        **copy.deepcopy(teaser),
        "project": projects[1],
        "projects": [{**projects[0], "current": False}, {**projects[1], "current": True}],
        "duration_ms": 15000,
        "tracks": [
            {
                "kind": "video",
                "label": "Video",
                "segments": [segment(0, "croissant.jpg", 0, 7000), segment(1, "oven.mp4", 7000, 8000)],
            }
        ],
        "media": [],
        "credits": {"available": None, "account": "personal"},
        "video": None,
        "browser_url": None,
    }
    return {"p1": teaser, "p2": bakery}


class StubStudio:
    """The studio's API as the contract says, on 127.0.0.1, recording the calls it receives."""

    def __init__(self) -> None:
        self.init_data = init_data()
        self.calls: list[tuple[str, Any]] = []
        self.current = "p1"
        self.states: dict[str, dict[str, Any]] = {}
        self.fail: dict[str, int] = {}  # API name → status to answer with instead
        self.on_act: list[Any] = []  # callables run on each act/segment call (state changes)
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/studio", self.page)
        app.router.add_static("/studio/static", STATIC)
        app.router.add_get("/files/{name}", self.file)
        app.router.add_post("/studio/api/{name}", self.api)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.states = sample_states(self.base_url)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def page(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    async def file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in {"photo.jpg", "clip.mp4"}:
            raise web.HTTPNotFound()
        return web.FileResponse(MEDIA / name)

    def names(self) -> list[str]:
        return [name for name, _payload in self.calls]

    async def api(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if request.headers.get("Authorization") != f"tma {self.init_data}":
            return web.json_response({"error": "unauthorized"}, status=401)
        payload = await request.json()
        self.calls.append((name, payload))
        if name in self.fail:
            return web.json_response({"error": "stub"}, status=self.fail[name])
        if name == "switch":
            if payload.get("project") not in self.states:
                return web.json_response({"error": "no such project"}, status=404)
            self.current = payload["project"]
        elif name in {"act", "segment"}:
            for change in self.on_act:
                change(self)
            return web.json_response({"ok": True}, status=202)
        elif name != "state":
            raise web.HTTPNotFound()
        return web.json_response(self.states[self.current])


@pytest.fixture
async def studio() -> AsyncIterator[StubStudio]:
    stub = StubStudio()
    await stub.start()
    try:
        yield stub
    finally:
        await stub.stop()


async def telegram_calls(page: Any) -> list[list[Any]]:
    return list(await page.evaluate("window.telegramCalls"))


async def test_sample_state_shows_the_timeline_credits_and_last_video(studio: StubStudio) -> None:
    from playwright.async_api import expect

    async with studio_page(studio.base_url, studio.init_data) as page:
        segments = page.locator(".segment")
        await expect(segments).to_have_count(5, timeout=WAIT_MS)
        for name in ("photo_1.jpg", "clip_2.mp4", "photo_3.jpg", "Lo-fi", "Grand Opening"):
            await expect(page.locator(".segment", has_text=name)).to_be_visible()
        first = page.locator('.segment[data-track="0"][data-segment="0"]')
        await expect(first).to_contain_text("0:00 · 10s")
        await expect(page.locator('.segment[data-track="1"]')).to_contain_text("🔊 35%")
        await expect(first.locator("img")).to_have_attribute("loading", "lazy")
        await expect(page.locator("h1")).to_contain_text("Teaser")
        await expect(page.locator("#project-switcher")).to_have_value("p1")
        await expect(page.locator("#credits")).to_have_text("💳 250 credits · Free trial")
        video = page.locator("#last-video")
        await expect(video).to_have_attribute("src", f"{studio.base_url}/files/clip.mp4")
        await expect(page.locator(".video-name")).to_have_text("video.mp4")
        await expect(page.locator("#media")).to_contain_text("photo_1.jpg")
        # blocks are as long as their segments: the 30 s music is 3 times the 10 s photo
        photo = await first.bounding_box()
        music = await page.locator('.segment[data-track="1"]').bounding_box()
        assert photo is not None and music is not None
        assert abs(music["width"] / photo["width"] - 3) < 0.05
        assert ["ready"] in await telegram_calls(page) and ["expand"] in await telegram_calls(page)
        assert studio.calls == [("state", {})]
        if shot := os.environ.get("STUDIO_SCREENSHOT"):
            await page.wait_for_function(
                "[...document.images].every((image) => image.complete)", timeout=WAIT_MS
            )
            await page.screenshot(path=shot)


async def test_ratio_button_sends_the_action_and_says_where_the_answer_is(studio: StubStudio) -> None:
    from playwright.async_api import expect

    async with studio_page(studio.base_url, studio.init_data) as page:
        button = page.get_by_role("button", name="📱 9:16")
        await expect(button).to_have_attribute("data-action", "ratio_9_16")
        await button.click()
        toast = page.locator("#toast")
        await expect(toast).to_have_text("Sent to the chat: watch the bot's reply there.")
        assert ("act", {"action": "ratio_9_16"}) in studio.calls
        assert ["notificationOccurred", "success"] in await telegram_calls(page)


async def test_every_quick_action_has_its_button(studio: StubStudio) -> None:
    from playwright.async_api import expect

    actions = ["ratio_9_16", "ratio_16_9", "ratio_1_1", "music", "title", "shorter", "longer", "export"]
    async with studio_page(studio.base_url, studio.init_data) as page:
        buttons = page.locator("button[data-action]")
        await expect(buttons).to_have_count(len(actions))
        assert [await button.get_attribute("data-action") for button in await buttons.all()] == actions
        await page.locator('[data-action="export"]').click()
        await expect(page.locator("#toast")).to_be_visible()
        assert studio.calls[-1] == ("act", {"action": "export"})


async def test_tapping_a_segment_then_remove_sends_the_segment_op(studio: StubStudio) -> None:
    from playwright.async_api import expect

    async with studio_page(studio.base_url, studio.init_data) as page:
        await page.locator('.segment[data-track="0"][data-segment="1"]').click()
        sheet = page.locator("#segment-sheet")
        await expect(sheet).to_be_visible()
        await expect(sheet).to_contain_text("clip_2.mp4")
        for label in ("Remove", "Move earlier", "Move later", "Make shorter"):
            await expect(sheet.get_by_role("button", name=label)).to_be_visible()
        await sheet.get_by_role("button", name="Remove").click()
        await expect(sheet).to_have_count(0)
        await expect(page.locator("#toast")).to_be_visible()
        assert ("segment", {"track": 0, "segment": 1, "op": "remove"}) in studio.calls


async def test_the_sheet_closes_without_sending_anything(studio: StubStudio) -> None:
    from playwright.async_api import expect

    async with studio_page(studio.base_url, studio.init_data) as page:
        await page.locator('.segment[data-track="2"]').click()
        await page.locator("#segment-sheet").get_by_role("button", name="Cancel").click()
        await expect(page.locator("#segment-sheet")).to_have_count(0)
        assert studio.names() == ["state"]


async def test_switching_project_redraws_with_its_segments(studio: StubStudio) -> None:
    from playwright.async_api import expect

    async with studio_page(studio.base_url, studio.init_data) as page:
        switcher = page.locator("#project-switcher")
        await expect(switcher.locator("option")).to_have_text(["Teaser", "Bakery reel · 🎬 rendering…"])
        await switcher.select_option("p2")
        await expect(page.locator(".segment", has_text="croissant.jpg")).to_be_visible()
        await expect(page.locator(".segment", has_text="photo_1.jpg")).to_have_count(0)
        await expect(page.locator("h1")).to_contain_text("Bakery reel")
        await expect(page.locator("#credits")).to_have_text("💳 Credits unknown · Your NemoVideo account")
        await expect(page.locator("#last-video")).to_have_count(0)
        assert ("switch", {"project": "p2"}) in studio.calls


async def test_the_timeline_is_redrawn_when_the_project_changes_after_an_edit(studio: StubStudio) -> None:
    from playwright.async_api import expect

    studio.states["p1"]["refresh_seconds"] = 1

    def music_removed(stub: StubStudio) -> None:
        state = copy.deepcopy(stub.states["p1"])
        state["tracks"] = [track for track in state["tracks"] if track["kind"] != "audio"]
        stub.states["p1"] = state

    studio.on_act.append(music_removed)
    async with studio_page(studio.base_url, studio.init_data) as page:
        await expect(page.locator(".segment", has_text="Lo-fi")).to_be_visible()
        await page.locator('.segment[data-track="1"]').click()
        await page.locator("#segment-sheet").get_by_role("button", name="Remove").click()
        await expect(page.locator(".segment", has_text="Lo-fi")).to_have_count(0, timeout=WAIT_MS)
        await expect(page.locator(".segment")).to_have_count(4)


async def test_an_empty_timeline_says_what_to_do(studio: StubStudio) -> None:
    from playwright.async_api import expect

    studio.states["p1"]["tracks"] = []
    async with studio_page(studio.base_url, studio.init_data) as page:
        await expect(page.locator("#timeline-empty")).to_have_text(
            "The timeline is empty: send photos or clips to the bot, or describe your video."
        )
        await expect(page.locator(".segment")).to_have_count(0)


async def test_open_in_browser_goes_through_telegram(studio: StubStudio) -> None:
    from playwright.async_api import expect

    async with studio_page(studio.base_url, studio.init_data) as page:
        link = page.get_by_role("link", name="🌐 Open in browser")
        await expect(link).to_have_attribute("href", "https://nemovideo.com/workspace/claim?ct=abc")
        await link.click()
        assert ["openLink", "https://nemovideo.com/workspace/claim?ct=abc"] in await telegram_calls(page)


async def test_wrong_init_data_shows_the_401_message(studio: StubStudio) -> None:
    from playwright.async_api import expect

    async with studio_page(studio.base_url, init_data(user_id=666)) as page:
        await expect(page.locator("#studio-error")).to_have_text(
            "This studio session could not be verified. Close it and open it again from the bot."
        )
        await expect(page.locator(".segment")).to_have_count(0)
        await expect(page.locator("[data-action]")).to_have_count(0)


async def test_403_says_the_bot_cannot_be_used_here(studio: StubStudio) -> None:
    from playwright.async_api import expect

    studio.fail["state"] = 403
    async with studio_page(studio.base_url, studio.init_data) as page:
        await expect(page.locator("#studio-error")).to_have_text("You can't use this bot here.")


async def test_a_server_error_is_a_retryable_notice(studio: StubStudio) -> None:
    from playwright.async_api import expect

    studio.fail["state"] = 502
    async with studio_page(studio.base_url, studio.init_data) as page:
        notice = page.locator("#notice")
        await expect(notice).to_contain_text("HTTP 502")
        del studio.fail["state"]
        await notice.get_by_role("button", name="Try again").click()
        await expect(page.locator(".segment", has_text="photo_1.jpg")).to_be_visible()
        await expect(notice).to_be_hidden()
        studio.fail["act"] = 500
        await page.locator('[data-action="music"]').click()
        await expect(notice).to_contain_text("HTTP 500")
        await expect(page.locator("#toast")).to_be_hidden()
        await expect(page.locator(".segment")).to_have_count(5)


@pytest.mark.parametrize(
    ("lang", "message"),
    [
        ("en-US", "Open the studio from the bot in Telegram."),
        ("zh-CN", "请在 Telegram 中从机器人打开工作室。"),
    ],
)
async def test_without_telegram_the_page_says_to_open_it_from_the_bot(
    studio: StubStudio, lang: str, message: str
) -> None:
    from playwright.async_api import expect

    async with studio_page(studio.base_url, None, lang=lang) as page:
        await expect(page.locator("#studio-error")).to_have_text(message, timeout=WAIT_MS)
        assert not await page.evaluate("Boolean(window.Telegram)")
    assert studio.calls == []


async def test_a_chinese_user_sees_chinese_labels(studio: StubStudio) -> None:
    from playwright.async_api import expect

    studio.init_data = init_data(language_code="zh-hans")
    studio.states = sample_states(studio.base_url, lang="zh")
    async with studio_page(studio.base_url, studio.init_data, lang="zh-CN") as page:
        await expect(page.locator('[data-action="music"]')).to_have_text("🎵 加音乐")
        await expect(page.locator('[data-action="export"]')).to_have_text("🎬 导出")
        await expect(page.locator("#credits")).to_have_text("💳 250 积分 · 免费试用")
        await expect(page.locator('.segment[data-track="0"][data-segment="0"]')).to_contain_text(
            "0:00 · 10秒"
        )
        await page.locator('.segment[data-track="0"][data-segment="0"]').click()
        sheet = page.locator("#segment-sheet")
        for label in ("删除", "往前移", "往后移", "缩短"):
            await expect(sheet.get_by_role("button", name=label)).to_be_visible()
        await sheet.get_by_role("button", name="往后移").click()
        await expect(page.locator("#toast")).to_have_text("已发送到聊天：请在那里查看机器人的回复。")
        assert ("segment", {"track": 0, "segment": 0, "op": "later"}) in studio.calls


async def test_the_servers_language_wins_over_telegrams(studio: StubStudio) -> None:
    from playwright.async_api import expect

    studio.init_data = init_data(language_code="zh-hans")  # the states say "en"
    async with studio_page(studio.base_url, studio.init_data) as page:
        await expect(page.locator('[data-action="music"]')).to_have_text("🎵 Add music")
