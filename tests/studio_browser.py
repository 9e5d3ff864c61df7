"""Browser tests of the studio (bot/studio/static): Debian's chromium driven by Playwright's Python API.

No browser is ever downloaded (`playwright install` is never run): the page runs in `/usr/bin/chromium`,
and the tests skip with a reason where it or the `playwright` package is missing. Telegram's own
script is replaced by a stub defining `window.Telegram.WebApp` (or nothing), and every request that
is not for loopback is blocked: nothing goes to the internet.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Page, Route, ViewportSize

TELEGRAM_SCRIPT = "https://telegram.org/js/telegram-web-app.js"
WAIT_MS = 5_000  # every Playwright wait in these tests: a few seconds, never the default 30
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 400, 800  # a phone
THEME = {  # Telegram's light theme, as telegram-web-app.js would set it
    "bg_color": "#ffffff",
    "text_color": "#000000",
    "hint_color": "#707579",
    "link_color": "#3390ec",
    "button_color": "#3390ec",
    "button_text_color": "#ffffff",
    "secondary_bg_color": "#f4f4f5",
}


def chromium_path() -> str | None:
    """Debian's chromium, if installed."""
    found = shutil.which("chromium")
    if found is None and os.access("/usr/bin/chromium", os.X_OK):
        found = "/usr/bin/chromium"
    return found


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return "chromium is not installed (Debian's `chromium` package; .ci/run installs it)"
    return None


requires_browser = pytest.mark.skipif(missing_browser() is not None, reason=missing_browser() or "")


def unsafe_init_data(init_data: str) -> dict[str, Any]:
    """`initDataUnsafe` as Telegram gives it: the query string's fields, `user` (and `chat`,
    `receiver`) parsed as JSON."""
    fields: dict[str, Any] = dict(parse_qsl(init_data, keep_blank_values=True))
    for name in ("user", "receiver", "chat"):
        if name in fields:
            fields[name] = json.loads(fields[name])
    if "auth_date" in fields:
        fields["auth_date"] = int(fields["auth_date"])
    return fields


def telegram_stub(init_data: str) -> str:
    """A stand-in for telegram-web-app.js: `window.Telegram.WebApp` with the given initData; what
    the page calls on it is recorded in `window.telegramCalls`."""
    return f"""(() => {{
  const calls = [];
  window.telegramCalls = calls;
  const themeParams = {json.dumps(THEME)};
  for (const [name, value] of Object.entries(themeParams)) {{
    document.documentElement.style.setProperty("--tg-theme-" + name.replaceAll("_", "-"), value);
  }}
  const backHandlers = new Set();
  window.Telegram = {{ WebApp: {{
    initData: {json.dumps(init_data)},
    initDataUnsafe: {json.dumps(unsafe_init_data(init_data))},
    version: "8.0",
    platform: "android",
    colorScheme: "light",
    themeParams,
    ready() {{ calls.push(["ready"]); }},
    expand() {{ calls.push(["expand"]); }},
    openLink(url) {{ calls.push(["openLink", url]); }},
    HapticFeedback: {{
      notificationOccurred(type) {{ calls.push(["notificationOccurred", type]); }},
      impactOccurred(style) {{ calls.push(["impactOccurred", style]); }},
      selectionChanged() {{ calls.push(["selectionChanged"]); }},
    }},
    BackButton: {{
      isVisible: false,
      show() {{ this.isVisible = true; }},
      hide() {{ this.isVisible = false; }},
      onClick(handler) {{ backHandlers.add(handler); }},
      offClick(handler) {{ backHandlers.delete(handler); }},
    }},
  }} }};
}})();
"""


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@asynccontextmanager
async def studio_page(
    base_url: str, init_data: str | None, *, lang: str = "en", path: str = "/studio"
) -> AsyncIterator[Page]:
    """A headless chromium page on `base_url + path`, inside a stand-in Telegram with `init_data`
    (None: no `window.Telegram` at all, as in a plain browser), the browser's language `lang`.

    On leaving without an error, it fails if the page threw an uncaught exception or asked for
    anything beyond loopback and Telegram's script."""
    from playwright.async_api import async_playwright

    blocked: list[str] = []
    errors: list[str] = []
    script = "" if init_data is None else telegram_stub(init_data)

    async def route(route: Route) -> None:
        url = route.request.url
        if url.split("?")[0] == TELEGRAM_SCRIPT:
            await route.fulfill(status=200, content_type="application/javascript", body=script)
        elif url.startswith(("data:", "blob:")) or is_loopback(url):
            await route.continue_()
        else:
            blocked.append(url)
            await route.abort("blockedbyclient")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            viewport: ViewportSize = {"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT}
            context = await browser.new_context(viewport=viewport, locale=lang)
            context.set_default_timeout(WAIT_MS)
            context.set_default_navigation_timeout(WAIT_MS)
            await context.route("**/*", route)
            page = await context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(base_url + path)
            yield page
            assert not errors, f"the page threw: {errors}"
            assert not blocked, f"the page asked the internet for: {blocked}"
        finally:
            await browser.close()
