"""Every error code of the contract, sent either way the backend may send it, does the same thing.

The skills list 400, 402 and 429 beside the business codes 1001, 1002, 2001, 4001 and 4002: each
may come as the envelope's `code` (with HTTP 200 or an error status), as the HTTP status, or both.
Each test injects the code one way into the emulator and checks what the user sees.
"""

from __future__ import annotations

import pytest

from bot.nemo import errors
from bot.nemo.errors import error_for
from loopback.emulator import sample_draft
from loopback.fake_telegram import User
from loopback.servers import MEDIA
from tests.conftest import MakeHarness
from tests.harness import Harness, connect, user_says

CHAT = 4242
ADA = User(CHAT, "Ada", "ada", language_code="en")

# How the backend may send a code: as the envelope's `code` (HTTP 200, or an error status with it),
# or as the HTTP status alone (only the HTTP-like codes can be one).
ENVELOPE, ENVELOPE_WITH_STATUS, STATUS = "code", "code+status", "status"
HTTP_LIKE = (400, 402, 429)


def ways(code: int) -> list[str]:
    return [ENVELOPE, ENVELOPE_WITH_STATUS, STATUS] if code in HTTP_LIKE else [ENVELOPE, ENVELOPE_WITH_STATUS]


def cases() -> list[tuple[int, str]]:
    return [(code, way) for code in (1001, 1002, 2001, 4001, 4002, 400, 402, 429) for way in ways(code)]


def inject(bot: Harness, endpoint: str, code: int, way: str) -> None:
    if way == ENVELOPE:
        bot.emulator.inject(endpoint, code=code)  # with HTTP 200
    elif way == ENVELOPE_WITH_STATUS:
        bot.emulator.inject(endpoint, code=code, http_status=code if code in HTTP_LIKE else 400)
    else:
        bot.emulator.inject(endpoint, http_status=code)


@pytest.mark.parametrize(("http", "body"), [(200, {"code": 0, "data": {}}), (200, {"status": "completed"})])
def test_code_0_and_bare_answers_are_success(http: int, body: dict[str, object]) -> None:
    assert error_for(http, body) is None


@pytest.mark.parametrize(("code", "way"), cases())
def test_each_code_means_one_error_whichever_way_it_comes(code: int, way: str) -> None:
    expected = {
        1001: errors.TokenExpired,
        1002: errors.SessionNotFound,
        2001: errors.OutOfCredits,
        4001: errors.UnsupportedFile,
        4002: errors.FileTooLarge,
        400: errors.MissingClientId,
        402: errors.ExportNotAllowed,
        429: errors.RateLimited,
    }[code]
    status = {ENVELOPE: 200, ENVELOPE_WITH_STATUS: code if code in HTTP_LIKE else 400, STATUS: code}[way]
    body = {"detail": "x"} if way == STATUS else {"code": code, "message": "x", "data": None}
    assert isinstance(error_for(status, body, anonymous_token_call=code == 400), expected)


@pytest.fixture
async def bot(make_harness: MakeHarness) -> Harness:
    return await make_harness()


async def connected(bot: Harness) -> str:
    return await connect(bot, CHAT, ADA)


async def says(bot: Harness, text: str) -> int:
    return await user_says(bot, CHAT, text, ADA)


@pytest.mark.parametrize("way", ways(1001))
async def test_1001_renews_the_token_with_the_same_client_id_and_answers(bot: Harness, way: str) -> None:
    await connected(bot)
    inject(bot, "credits", 1001, way)
    mark = await says(bot, "credits")
    await bot.fake.wait_for_message(CHAT, "Credits:", after=mark)
    grants = bot.emulator.calls("anonymous_token")
    assert len(grants) == 2 and grants[0].headers["x-client-id"] == grants[1].headers["x-client-id"]


@pytest.mark.parametrize("way", ways(1002))
async def test_1002_opens_a_new_session_and_answers(bot: Harness, way: str) -> None:
    first = await connected(bot)
    inject(bot, "state", 1002, way)
    mark = await says(bot, "status")
    await bot.fake.wait_for_message(CHAT, "timeline", after=mark)
    assert len(bot.emulator.sessions) == 2 and first in bot.emulator.sessions


@pytest.mark.parametrize("way", ways(2001))
async def test_2001_offers_the_registration_link(bot: Harness, way: str) -> None:
    await connected(bot)
    inject(bot, "run_sse", 2001, way)
    mark = await says(bot, "make a teaser")
    reply = await bot.fake.wait_for_message(CHAT, "out of credits", after=mark)
    assert "register?bind=anon_" in reply.source


@pytest.mark.parametrize(("code", "words"), [(4001, "refused this file type"), (4002, "file is too large")])
@pytest.mark.parametrize("way", [ENVELOPE, ENVELOPE_WITH_STATUS])
async def test_4001_and_4002_refuse_the_file_with_the_reason(
    bot: Harness, code: int, words: str, way: str
) -> None:
    await connected(bot)
    inject(bot, "upload", code, way)
    mark = bot.fake.message_count(CHAT)
    await bot.send(bot.fake.send_photo(CHAT, (MEDIA / "photo.jpg").read_bytes(), user=ADA))
    await bot.fake.wait_for_message(CHAT, words, after=mark)


@pytest.mark.parametrize("way", ways(400))
async def test_400_on_the_token_call_gets_a_new_client_id_and_connects(bot: Harness, way: str) -> None:
    inject(bot, "anonymous_token", 400, way)
    await connected(bot)
    grants = bot.emulator.calls("anonymous_token")
    assert len(grants) == 2 and grants[0].headers["x-client-id"] != grants[1].headers["x-client-id"]


@pytest.mark.parametrize("way", ways(402))
async def test_402_says_export_needs_a_registered_plan(bot: Harness, way: str) -> None:
    session = await connected(bot)
    bot.emulator.set_draft(session, sample_draft())
    inject(bot, "render_start", 402, way)
    mark = await says(bot, "export")
    reply = await bot.fake.wait_for_message(CHAT, "Register or upgrade your plan", after=mark)
    assert "not about credits" in reply.text


@pytest.mark.parametrize("way", ways(429))
async def test_429_waits_then_runs_the_turn_once(bot: Harness, way: str) -> None:
    await connected(bot)
    inject(bot, "run_sse", 429, way)
    mark = await says(bot, "make a teaser")
    await bot.fake.wait_for_message(CHAT, "on the timeline", after=mark)
    assert len(bot.emulator.calls("run_sse")) == 2  # refused once, then the one real turn
    assert [m for s in bot.emulator.sessions.values() for m in s.messages] == ["make a teaser"]
