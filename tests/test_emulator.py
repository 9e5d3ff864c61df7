"""The NemoVideo emulator speaks the contract in /work/shared/nemo-api.md.

Plain httpx against the emulator; SSE is parsed by hand so these tests do not depend on the
bot's own client code.
"""

from __future__ import annotations

import json
import pathlib
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

try:  # tests/ as a package, or (pytest's default "prepend" import mode) tests/ on sys.path
    from loopback.emulator import DEFAULT_TEXTS, NemoEmulator, Turn, sample_draft
except ImportError:  # pragma: no cover
    from emulator import DEFAULT_TEXTS, NemoEmulator, Turn, sample_draft  # type: ignore[no-redef]

MEDIA = pathlib.Path(__file__).parent / "media"
ATTRIBUTION = {
    "X-Skill-Source": "maker-online-free",
    "X-Skill-Version": "1.0.0",
    "X-Skill-Platform": "unknown",
}


# ---- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
async def emu() -> AsyncIterator[NemoEmulator]:
    emulator = NemoEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def client(emu: NemoEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.base_url, timeout=5) as http:
        yield http


async def login(client: httpx.AsyncClient, client_id: str = "client-1") -> dict[str, str]:
    """Anonymous token -> auth headers (attribution included)."""
    answer = await client.post("/api/auth/anonymous-token", headers={"X-Client-Id": client_id})
    return {"Authorization": f"Bearer {answer.json()['data']['token']}", **ATTRIBUTION}


async def new_session(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    answer = await client.post(
        "/api/tasks/me/with-session/nemo_agent",
        json={"task_name": "project", "language": "en"},
        headers=headers,
    )
    return str(answer.json()["data"]["session_id"])


def chat_body(sid: str, text: str) -> dict[str, Any]:
    return {
        "app_name": "nemo_agent",
        "user_id": "me",
        "session_id": sid,
        "new_message": {"parts": [{"text": text}]},
    }


async def chat(client: httpx.AsyncClient, headers: dict[str, str], sid: str, text: str) -> httpx.Response:
    """One complete run_sse turn; the server ends the body by closing it."""
    return await client.post(
        "/run_sse", json=chat_body(sid, text), headers={**headers, "Accept": "text/event-stream"}
    )


def blocks(raw: str) -> list[str]:
    """SSE blocks (the text between blank lines)."""
    return [b for b in raw.split("\n\n") if b]


def data_of(block: str) -> str | None:
    """The joined ``data:`` payload of a block, or None for a comment-only block."""
    lines = [ln[5:].removeprefix(" ") for ln in block.split("\n") if ln.startswith("data:")]
    return "\n".join(lines) if lines else None


def events(raw: str) -> list[dict[str, Any]]:
    """Parsed JSON events, skipping keep-alives and lines that are not JSON."""
    found = []
    for block in blocks(raw):
        data = data_of(block)
        if not data:
            continue
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if event != {"type": "heartbeat"}:
            found.append(event)
    return found


def visible_texts(evs: list[dict[str, Any]]) -> list[str]:
    """User-facing text by the contract's rules (ADK or legacy framing)."""
    texts = []
    for ev in evs:
        if ev.get("type") == "text":
            texts.append(ev["content"])
        content = ev.get("content")
        if not isinstance(content, dict) or content.get("role") != "model" or ev.get("partial"):
            continue
        texts += [p["text"] for p in content.get("parts", []) if "text" in p and not p.get("thought")]
    return texts


def tracks(state: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {t["tt"]: t for t in state["data"]["state"]["draft"]["t"]}


def render_body(sid: str, render_id: str) -> dict[str, Any]:
    return {
        "id": render_id,
        "sessionId": sid,
        "draft": sample_draft(),
        "output": {"format": "mp4", "quality": "high"},
    }


async def finished_render(
    emu: NemoEmulator, client: httpx.AsyncClient, headers: dict[str, str], render_id: str = "r1"
) -> str:
    """Start a render and poll it once to "completed"; its CDN URL."""
    emu.render_polls_per_step = 0
    sid = await new_session(client, headers)
    await client.post("/api/render/proxy/lambda", json=render_body(sid, render_id), headers=headers)
    status = (await client.get(f"/api/render/proxy/lambda/{render_id}", headers=headers)).json()
    assert status["status"] == "completed"
    return str(status["output"]["url"])


# ---- auth, session, chat -----------------------------------------------------------------------


async def test_token_session_and_default_turn(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    first = (await client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "c1"})).json()
    second = (await client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "c1"})).json()
    assert first["code"] == 0 and first["message"] == "ok"
    data = first["data"]
    assert data["token"].startswith("nmv_usr_") and data["credits"] == 100
    assert second["data"]["user_id"] == data["user_id"] and second["data"]["token"] != data["token"]
    expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - datetime.now(UTC) - timedelta(days=7)) < timedelta(minutes=1)

    headers = {"Authorization": f"Bearer {data['token']}"}
    made = (
        await client.post(
            "/api/tasks/me/with-session/nemo_agent",
            json={"task_name": "project", "language": "ja"},
            headers=headers,
        )
    ).json()["data"]
    sid = made["session_id"]
    assert isinstance(sid, str) and sid.isdigit() and len(sid) == 19
    assert made["task_id"].startswith("task_") and made["user_id"] == data["user_id"]
    assert emu.sessions[sid].language == "ja" and emu.sessions[sid].draft == {"t": []}

    answer = await chat(client, headers, sid, "make me a sunset clip")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert all(b.startswith("data: ") for b in blocks(answer.text))
    assert "[DONE]" not in answer.text and 'make me a sunset clip"}]}' not in answer.text
    evs = events(answer.text)
    assert visible_texts(evs) == list(DEFAULT_TEXTS)
    call, result = evs[1]["content"], evs[2]["content"]
    assert call["role"] == "model" and "functionCall" in call["parts"][0]
    assert (
        result["role"] == "user"
        and result["parts"][0]["functionResponse"]["id"] == call["parts"][0]["functionCall"]["id"]
    )
    first_event = evs[0]
    assert first_event["author"] == "nemo_agent" and first_event["invocationId"].startswith("e-")
    assert {"id", "timestamp", "actions"} <= first_event.keys()
    assert len({ev["invocationId"] for ev in evs}) == 1

    state = (await client.get(f"/api/state/nemo_agent/me/{sid}/latest", headers=headers)).json()
    assert (
        state["data"]["task_name"] == "project" and state["data"]["state"]["canvas_config"]["width"] == 1080
    )
    assert tracks(state)[0]["sg"][0]["d"] == 10000
    assert emu.sessions[sid].messages == ["make me a sunset clip"]
    balance = (await client.get("/api/credits/balance/simple", headers=headers)).json()["data"]
    assert balance == {"available": 99, "frozen": 0, "total": 99}
    recorded = emu.calls("run_sse")[0]
    assert recorded.json == chat_body(sid, "make me a sunset clip")
    assert recorded.headers["accept"] == "text/event-stream" and recorded.status == 200


async def test_anonymous_token_needs_a_sane_client_id(client: httpx.AsyncClient) -> None:
    missing = await client.post("/api/auth/anonymous-token")
    assert missing.status_code == 400 and missing.json() == {"detail": "Missing X-Client-Id"}
    too_long = await client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "x" * 65})
    assert too_long.status_code == 400


async def test_music_and_title_add_tracks(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    sid = await new_session(client, headers)
    await chat(client, headers, sid, 'Add some MUSIC and the title "Hello There"')
    state = (await client.get(f"/api/state/nemo_agent/me/{sid}/latest", headers=headers)).json()
    by_type = tracks(state)
    assert set(by_type) == {0, 1, 7}
    assert by_type[1]["sg"][0]["m"]["volume"] == 0.35
    assert by_type[7]["sg"][0]["m"]["title"] == "Hello There"


async def test_silent_turn_has_no_text_but_changes_the_draft(
    emu: NemoEmulator, client: httpx.AsyncClient
) -> None:
    headers = await login(client)
    sid = await new_session(client, headers)
    answer = await chat(client, headers, sid, "silent: trim it")
    evs = events(answer.text)
    assert visible_texts(evs) == [] and len(evs) == 2
    assert emu.sessions[sid].draft["t"][0]["tt"] == 0


@pytest.mark.parametrize(
    ("style", "expected"),
    [("comment", ": ping"), ("empty", "data:"), ("heartbeat", 'data: {"type":"heartbeat"}')],
)
async def test_keepalive_variants(
    emu: NemoEmulator, client: httpx.AsyncClient, style: str, expected: str
) -> None:
    emu.keepalive, emu.event_delay = style, 0.02
    headers = await login(client)
    sid = await new_session(client, headers)
    answer = await chat(client, headers, sid, "hello")
    raw_blocks = blocks(answer.text)
    assert raw_blocks.count(expected) == 3  # one in each gap between the four events
    assert visible_texts(events(answer.text)) == list(DEFAULT_TEXTS)


async def test_duration_spreads_events_with_keepalives(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    emu.keepalive_interval = 0.02
    emu.script("slow", Turn(texts=["done"], tool_calls=False, duration=0.15))
    headers = await login(client)
    sid = await new_session(client, headers)
    started = time.monotonic()
    answer = await chat(client, headers, sid, "slow please")
    assert time.monotonic() - started >= 0.15
    assert blocks(answer.text).count('data: {"type":"heartbeat"}') >= 5
    assert visible_texts(events(answer.text)) == ["done"]


async def test_legacy_framing(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    emu.framing = "legacy"
    headers = await login(client)
    sid = await new_session(client, headers)
    evs = events((await chat(client, headers, sid, "hello")).text)
    assert [ev["type"] for ev in evs] == ["text", "tool_call", "tool_result", "text"]
    assert visible_texts(evs) == list(DEFAULT_TEXTS)
    assert evs[1]["name"] == "edit_timeline"


async def test_partials_and_thoughts(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    emu.script("think", Turn(texts=["All set for you."], partials=True, thoughts=True, tool_calls=False))
    headers = await login(client)
    sid = await new_session(client, headers)
    evs = events((await chat(client, headers, sid, "Think hard")).text)
    partials = [ev["content"]["parts"][0]["text"] for ev in evs if ev.get("partial") is True]
    assert "".join(partials) == "All set for you." and len(partials) == 2
    assert any(p.get("thought") for ev in evs for p in ev["content"]["parts"])
    assert visible_texts(evs) == ["All set for you."]


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("event", '"errorCode":"SAFETY"'),
        ("line", 'data: {"error":"SAFETY","error_details":'),
        ("garbage", "data: Traceback (most recent call last): SAFETY"),
    ],
)
async def test_error_styles(emu: NemoEmulator, client: httpx.AsyncClient, style: str, expected: str) -> None:
    emu.script("unsafe", Turn(texts=[], tool_calls=False, error="SAFETY", error_style=style))
    headers = await login(client)
    sid = await new_session(client, headers)
    answer = await chat(client, headers, sid, "something unsafe")
    assert answer.status_code == 200
    assert expected in answer.text
    assert visible_texts(events(answer.text)) == []


async def test_drop_after_closes_abruptly(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    emu.script(
        "drop", Turn(texts=["one", "two"], drop_after=1, draft_change=lambda d: d["t"].append({"tt": 9}))
    )
    headers = await login(client)
    sid = await new_session(client, headers)
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream(
            "POST", "/run_sse", json=chat_body(sid, "drop it"), headers=headers
        ) as answer:
            async for line in answer.aiter_lines():
                received.append(line)
    assert sum(line.startswith("data: ") for line in received) == 1
    assert emu.sessions[sid].draft["t"] == [{"tt": 9}]  # the agent finished anyway


async def test_hang_after_last_keeps_the_stream_open(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    emu.script("hang", Turn(texts=["hi"], tool_calls=False, hang_after_last=0.15))
    headers = await login(client)
    sid = await new_session(client, headers)
    started = time.monotonic()
    answer = await chat(client, headers, sid, "hang on")
    assert time.monotonic() - started >= 0.15
    assert visible_texts(events(answer.text)) == ["hi"]


async def test_stop_ends_a_hanging_stream(emu: NemoEmulator) -> None:
    emu.script("hang", Turn(texts=["hi"], tool_calls=False, hang_after_last=30))
    async with httpx.AsyncClient(base_url=emu.base_url, timeout=5) as http:
        headers = await login(http)
        sid = await new_session(http, headers)
        async with http.stream("POST", "/run_sse", json=chat_body(sid, "hang"), headers=headers) as answer:
            lines = answer.aiter_lines()
            assert (await anext(lines)).startswith("data: ")
            started = time.monotonic()
            await emu.stop()
            assert time.monotonic() - started < 2.5


async def test_script_matching_is_case_insensitive_and_later_wins(
    emu: NemoEmulator, client: httpx.AsyncClient
) -> None:
    emu.script("promo", Turn(texts=["first"], tool_calls=False))
    emu.script("PROMO", Turn(texts=["second"], tool_calls=False))
    headers = await login(client)
    sid = await new_session(client, headers)
    assert visible_texts(events((await chat(client, headers, sid, "A Promo please")).text)) == ["second"]


async def test_run_sse_refusals(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    headers = await login(client)
    sid = await new_session(client, headers)
    bad = await client.post("/run_sse", json={"app_name": "nemo_agent"}, headers=headers)
    assert bad.status_code == 422 and isinstance(bad.json()["detail"], list)
    unknown = await chat(client, headers, "123", "hi")
    assert unknown.status_code == 404 and unknown.json() == {"detail": "Session not found: 123"}
    next(iter(emu.accounts.values())).credits_available = 0
    broke = await chat(client, headers, sid, "hi")
    assert broke.status_code == 200 and broke.json()["code"] == 2001


# ---- faults ------------------------------------------------------------------------------------


async def test_inject_codes_statuses_bodies_and_delays(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    headers = await login(client)
    emu.inject("credits", code=2001)
    emu.inject("credits", http_status=429)
    emu.inject("credits", body=b"<html>oops")
    emu.inject("credits", delay=0.1)
    emu.inject("credits", code=1002, http_status=400, times=2)

    coded = await client.get("/api/credits/balance/simple", headers=headers)
    assert coded.status_code == 200 and coded.json() == {
        "code": 2001,
        "message": "injected error 2001",
        "data": None,
    }
    limited = await client.get("/api/credits/balance/simple", headers=headers)
    assert limited.status_code == 429 and "detail" in limited.json()
    garbage = await client.get("/api/credits/balance/simple", headers=headers)
    assert garbage.status_code == 200 and garbage.content == b"<html>oops"
    started = time.monotonic()
    slow = await client.get("/api/credits/balance/simple", headers=headers)
    assert time.monotonic() - started >= 0.1 and slow.json()["data"]["available"] == 100
    for _ in range(2):
        twice = await client.get("/api/credits/balance/simple", headers=headers)
        assert twice.status_code == 400 and twice.json()["code"] == 1002
    assert (await client.get("/api/credits/balance/simple", headers=headers)).json()["code"] == 0
    assert [r.status for r in emu.calls("credits")] == [200, 429, 200, 200, 400, 400, 200]

    with pytest.raises(ValueError, match="unknown endpoint"):
        emu.inject("credit", code=1)


async def test_error_http_status_applies_to_business_codes(
    emu: NemoEmulator, client: httpx.AsyncClient
) -> None:
    emu.error_http_status = 401
    answer = await client.get("/api/credits/balance/simple", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401 and answer.json()["code"] == 1001


async def test_expire_tokens_gives_1001_and_credits_survive(
    emu: NemoEmulator, client: httpx.AsyncClient
) -> None:
    headers = await login(client, "same-client")
    emu.account_for_client("same-client").credits_available = 0  # type: ignore[union-attr]
    emu.expire_tokens()
    expired = await client.get("/api/credits/balance/simple", headers=headers)
    assert expired.status_code == 200 and expired.json()["code"] == 1001
    fresh = await login(client, "same-client")
    balance = (await client.get("/api/credits/balance/simple", headers=fresh)).json()
    assert balance["code"] == 0 and balance["data"]["available"] == 0

    account = emu.account_for_client("same-client")
    assert account is not None
    account.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert (await client.get("/api/credits/balance/simple", headers=fresh)).json()["code"] == 1001


async def test_drop_sessions(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    headers = await login(client)
    sid = await new_session(client, headers)
    emu.drop_sessions()
    gone = await chat(client, headers, sid, "hi")
    assert gone.status_code == 404 and gone.json() == {"detail": f"Session not found: {sid}"}
    state = await client.get(f"/api/state/nemo_agent/me/{sid}/latest", headers=headers)
    assert state.json()["code"] == 1002
    upload = await client.post(
        f"/api/upload-video/nemo_agent/me/{sid}",
        json={"urls": ["https://x.test/a.mp4"], "source_type": "url"},
        headers=headers,
    )
    assert upload.json()["code"] == 1002


# ---- accounts and claim links ------------------------------------------------------------------

CAP_REFUSAL = {
    "code": 429,
    "message": "anonymous token limit reached for this IP (10 per 7 days)",
    "data": None,
}


@pytest.mark.parametrize(("refusal", "http_status"), [("status", 429), ("envelope", 200)])
async def test_trial_cap_refuses_past_the_cap(
    emu: NemoEmulator, client: httpx.AsyncClient, refusal: str, http_status: int
) -> None:
    emu.trial_cap, emu.trial_refusal = 3, refusal
    for i in range(3):
        granted = await client.post("/api/auth/anonymous-token", headers={"X-Client-Id": f"c{i}"})
        assert granted.status_code == 200 and granted.json()["code"] == 0
    for _ in range(2):  # refusals do not count
        refused = await client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "c3"})
        assert refused.status_code == http_status and refused.json() == CAP_REFUSAL
    assert emu.trials_granted == 3 and emu.account_for_client("c3") is None


async def test_one_trial_per_client_until_the_token_is_gone(
    emu: NemoEmulator, client: httpx.AsyncClient
) -> None:
    emu.one_trial_per_client = True
    first = (await client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "c1"})).json()
    again = await client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "c1"})
    assert again.status_code == 429 and again.json()["code"] == 429 and again.json()["data"] is None
    other = await client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "c2"})
    assert other.json()["code"] == 0
    emu.expire_tokens()
    renewed = (await client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "c1"})).json()
    assert renewed["code"] == 0 and renewed["data"]["user_id"] == first["data"]["user_id"]
    assert emu.trials_granted == 3


async def test_personal_account_works_until_revoked(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    account = emu.add_personal_account()
    assert account.personal and account.registered and account.user_id.startswith("usr_")
    assert re.fullmatch(r"nmv_usr_[0-9a-f]{32}", account.token)
    assert account.expires_at - datetime.now(UTC) > timedelta(days=300)
    headers = {"Authorization": f"Bearer {account.token}", **ATTRIBUTION}
    balance = (await client.get("/api/credits/balance/simple", headers=headers)).json()
    assert balance["data"] == {"available": 500, "frozen": 0, "total": 500}
    made = (
        await client.post("/api/tasks/me/with-session/nemo_agent", json={"language": "en"}, headers=headers)
    ).json()["data"]
    assert made["user_id"] == account.user_id and emu.sessions[made["session_id"]].user_id == account.user_id
    assert visible_texts(events((await chat(client, headers, made["session_id"], "hi")).text))
    assert emu.wallets[account.user_id].credits_available == 499

    second = emu.add_personal_account(credits=20, user_id="usr_fixed")
    emu.revoke(account.token)
    for path in ("/api/credits/balance/simple", f"/api/state/nemo_agent/me/{made['session_id']}/latest"):
        assert (await client.get(path, headers=headers)).json()["code"] == 1001
    other = {"Authorization": f"Bearer {second.token}"}
    assert (await client.get("/api/credits/balance/simple", headers=other)).json()["data"]["available"] == 20


async def test_claim_tokens_and_the_claim_page(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    headers = await login(client, "owner")
    sid = await new_session(client, headers)
    task_id = emu.sessions[sid].task_id
    answer = await client.post(
        "/api/auth/claim-token", json={"task_id": task_id, "session_id": sid}, headers=headers
    )
    data = answer.json()["data"]
    assert data["claim_token"].startswith("clm_") and data["expires_in"] == 604800
    assert emu.claims == {data["claim_token"]: (task_id, sid)}

    stranger = await login(client, "stranger")
    theirs = await client.post(
        "/api/auth/claim-token", json={"task_id": task_id, "session_id": sid}, headers=stranger
    )
    unknown = await client.post(
        "/api/auth/claim-token", json={"task_id": task_id, "session_id": "123"}, headers=headers
    )
    assert theirs.json()["code"] == 1002 and unknown.json()["code"] == 1002 and len(emu.claims) == 1

    page = await client.get("/workspace/claim", params={"ct": data["claim_token"]})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert task_id in page.text
    assert (await client.get("/workspace/claim", params={"ct": "clm_nope"})).status_code == 404
    emu.claim_lifetime = 60
    short = await client.post(
        "/api/auth/claim-token", json={"task_id": task_id, "session_id": sid}, headers=headers
    )
    assert short.json()["data"]["expires_in"] == 60


# ---- upload ------------------------------------------------------------------------------------


async def test_upload_multipart(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    headers = await login(client)
    sid = await new_session(client, headers)
    clip, photo = (MEDIA / "clip.mp4").read_bytes(), (MEDIA / "photo.jpg").read_bytes()
    answer = await client.post(
        f"/api/upload-video/nemo_agent/me/{sid}",
        files=[("files", ("clip.mp4", clip, "video/mp4")), ("files", ("photo.jpg", photo, "image/jpeg"))],
        headers=headers,
    )
    data = answer.json()["data"]
    assert data["session_state_applied"] is True
    video, image = data["files"]
    assert video["file_type"] == "video" and video["duration"] == pytest.approx(2.0, abs=0.2) and video["fps"]
    assert image["file_type"] == "image" and image["width"] and image["height"]
    assert video["cdn_url"].startswith(f"{emu.base_url}/cdn/") and video["hash"]
    assert emu.calls("upload")[0].files == [("clip.mp4", len(clip)), ("photo.jpg", len(photo))]
    assert emu.sessions[sid].media == data["files"]
    cdn = await client.get(video["cdn_url"])
    assert cdn.status_code == 200 and cdn.headers["content-type"] == "video/mp4"

    await chat(client, headers, sid, "combine them")
    segments = emu.sessions[sid].draft["t"][0]["sg"]
    assert [s["m"]["name"] for s in segments] == ["clip.mp4", "photo.jpg"]


async def test_upload_refusals(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    headers = await login(client)
    sid = await new_session(client, headers)
    url = f"/api/upload-video/nemo_agent/me/{sid}"
    voice = await client.post(url, files={"files": ("voice.ogg", b"OggS", "audio/ogg")}, headers=headers)
    assert voice.json()["code"] == 4001
    double = await client.post(
        url, files={"files": ("photo.jpg.exe", b"\xff\xd8", "image/jpeg")}, headers=headers
    )
    assert double.json()["code"] == 4001
    emu.max_upload_bytes = 1000
    big = await client.post(
        url, files={"files": ("tone.wav", (MEDIA / "tone.wav").read_bytes())}, headers=headers
    )
    assert big.json()["code"] == 4002
    assert emu.calls("upload")[-1].files == [("tone.wav", (MEDIA / "tone.wav").stat().st_size)]
    assert emu.sessions[sid].media == []


async def test_upload_by_url(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    headers = await login(client)
    sid = await new_session(client, headers)
    answer = await client.post(
        f"/api/upload-video/nemo_agent/me/{sid}",
        json={
            "urls": ["https://example.test/media/beach%20day.mov?x=1", "https://example.test/song.mp3"],
            "source_type": "url",
        },
        headers=headers,
    )
    files = answer.json()["data"]["files"]
    assert [(f["filename"], f["file_type"]) for f in files] == [
        ("beach day.mov", "video"),
        ("song.mp3", "audio"),
    ]
    assert files[0]["duration"] > 0 and files[1]["duration"] > 0
    assert emu.calls("upload")[0].json["source_type"] == "url"


# ---- render ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["output", "success", "envelope"])
async def test_render_reaches_completed_and_downloads(
    emu: NemoEmulator, client: httpx.AsyncClient, shape: str
) -> None:
    emu.render_shape, emu.render_polls_per_step = shape, 2
    headers = await login(client)
    sid = await new_session(client, headers)
    emu.set_draft(sid, sample_draft())
    body = {
        "id": "render_1",
        "sessionId": sid,
        "draft": sample_draft(),
        "output": {"format": "mp4", "quality": "high"},
    }
    started = (await client.post("/api/render/proxy/lambda", json=body, headers=headers)).json()
    unwrap = started.get("data", started)
    assert unwrap["id"] == "render_1" and unwrap["status"] == "pending"

    seen = []
    for _ in range(10):
        answer = (await client.get("/api/render/proxy/lambda/render_1", headers=headers)).json()
        if shape == "success":
            assert answer["success"] is True
        status = answer.get("data", answer)
        seen.append(status["status"])
        if status["status"] == "completed":
            break
    assert seen == ["pending", "pending", "processing", "processing", "completed"]
    assert status["progress"] == 100
    url = status["outputUrl"] if shape == "success" else status["output"]["url"]
    assert url == f"{emu.base_url}/static/render/render_1.mp4"
    if shape != "success":
        assert status["output"]["size"] == (MEDIA / "clip.mp4").stat().st_size
        assert status["output"]["duration"] == pytest.approx(2.0, abs=0.2)
    video = await client.get(url)
    assert video.headers["content-type"] == "video/mp4" and video.content == (MEDIA / "clip.mp4").read_bytes()


async def test_render_refusals_failures_and_cancel(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    headers = await login(client)
    sid = await new_session(client, headers)
    body = {
        "id": "r1",
        "sessionId": sid,
        "draft": sample_draft(),
        "output": {"format": "mp4", "quality": "high"},
    }
    assert (await client.post("/api/render/proxy/lambda", json=body, headers=headers)).json()[
        "status"
    ] == "pending"
    duplicate = (await client.post("/api/render/proxy/lambda", json=body, headers=headers)).json()
    assert duplicate["code"] != 0 and "duplicate" in duplicate["message"]
    empty = {**body, "id": "r2", "draft": {"t": [{"tt": 0, "sg": []}]}}
    assert (await client.post("/api/render/proxy/lambda", json=empty, headers=headers)).json()["code"] != 0
    missing = await client.get("/api/render/proxy/lambda/nope", headers=headers)
    assert missing.status_code == 404

    emu.render_fail, emu.render_polls_per_step = "encoder crashed", 0
    failed = (await client.get("/api/render/proxy/lambda/r1", headers=headers)).json()
    assert failed["status"] == "failed" and failed["error"] == "encoder crashed" and "output" not in failed
    assert (await client.get(f"{emu.base_url}/static/render/r1.mp4")).status_code == 404

    emu.render_fail = None
    await client.post("/api/render/proxy/lambda", json={**body, "id": "r3"}, headers=headers)
    cancelled = (await client.post("/api/render/proxy/lambda/r3/cancel", headers=headers)).json()
    assert cancelled["status"] == "failed" and emu.renders["r3"].cancelled


async def test_render_needs_attribution_headers(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    headers = await login(client)
    sid = await new_session(client, headers)
    bare = {"Authorization": headers["Authorization"]}
    body = {
        "id": "r1",
        "sessionId": sid,
        "draft": sample_draft(),
        "output": {"format": "mp4", "quality": "high"},
    }
    refused = await client.post("/api/render/proxy/lambda", json=body, headers=bare)
    assert refused.status_code == 402 and "detail" in refused.json()
    emu.require_attribution = False
    accepted = await client.post("/api/render/proxy/lambda", json=body, headers=bare)
    assert accepted.status_code == 200 and accepted.json()["status"] == "pending"


async def test_render_download_endpoint(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    headers = await login(client)
    sid = await new_session(client, headers)
    no_token = await client.get("/api/render/proxy/r1/download")
    assert no_token.json()["code"] == 1001
    unknown = await client.get("/api/render/proxy/r1/download", headers=headers)
    assert unknown.status_code == 404 and unknown.json() == {"detail": "Render not found"}
    await client.post("/api/render/proxy/lambda", json=render_body(sid, "r1"), headers=headers)
    pending = await client.get("/api/render/proxy/r1/download", headers=headers)
    assert pending.status_code == 404 and pending.json() == {"detail": "Render not found"}

    emu.render_polls_per_step = 0
    await client.get("/api/render/proxy/lambda/r1", headers=headers)
    video = await client.get("/api/render/proxy/r1/download", headers=headers)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content == (MEDIA / "clip.mp4").read_bytes()
    emu.inject("render_download", http_status=500)
    assert (await client.get("/api/render/proxy/r1/download", headers=headers)).status_code == 500


@pytest.mark.parametrize("status", [404, 503])
async def test_dead_cdn_answers_a_status_and_download_still_works(
    emu: NemoEmulator, client: httpx.AsyncClient, status: int
) -> None:
    headers = await login(client)
    url = await finished_render(emu, client, headers)
    emu.cdn_dead = status
    dead = await client.get(url)
    assert dead.status_code == status and dead.headers["content-type"] != "video/mp4"
    video = await client.get("/api/render/proxy/r1/download", headers=headers)
    assert video.status_code == 200 and video.content == (MEDIA / "clip.mp4").read_bytes()


async def test_hanging_cdn_times_the_client_out(emu: NemoEmulator, client: httpx.AsyncClient) -> None:
    headers = await login(client)
    url = await finished_render(emu, client, headers)
    emu.cdn_dead = 0
    async with httpx.AsyncClient(timeout=0.3) as impatient:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await impatient.get(url)
        assert time.monotonic() - started < 2
    video = await client.get("/api/render/proxy/r1/download", headers=headers)
    assert video.status_code == 200 and video.content == (MEDIA / "clip.mp4").read_bytes()


@pytest.mark.parametrize(("code", "http_status"), [(None, 503), (5000, None)])
async def test_failed_render_start_leaves_no_render(
    emu: NemoEmulator, client: httpx.AsyncClient, code: int | None, http_status: int | None
) -> None:
    headers = await login(client)
    sid = await new_session(client, headers)
    emu.inject("render_start", code=code, http_status=http_status)
    failed = await client.post("/api/render/proxy/lambda", json=render_body(sid, "r1"), headers=headers)
    assert failed.status_code == (http_status or 200)
    assert failed.json().get("code") == code and "status" not in failed.json()
    assert emu.renders == {}
    retried = await client.post("/api/render/proxy/lambda", json=render_body(sid, "r2"), headers=headers)
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    assert list(emu.renders) == ["r2"]
