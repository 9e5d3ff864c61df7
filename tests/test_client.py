"""The NemoVideo client and the project recovery rules, against the emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.chat.projects import ChatRef, OperatorTokenRejected, Projects
from bot.nemo import errors
from bot.nemo.client import LocalFile, NemoClient, RetryPolicy
from bot.nemo.sse import AgentEvent
from bot.state.store import Store
from loopback.emulator import NemoEmulator, Turn, sample_draft
from loopback.servers import MEDIA

CHAT = ChatRef.of(42)


async def collect(projects: Projects, text: str, chat: ChatRef = CHAT) -> list[AgentEvent]:
    async with projects.open_turn(chat, "en", text) as events:
        return [event async for event in events]


async def test_first_contact_gets_a_token_and_a_session_with_attribution(
    projects: Projects, emulator: NemoEmulator, store: Store
) -> None:
    connection = await projects.connect(CHAT, "zh-CN")
    record = await store.load_chat(CHAT.key)
    assert connection.token.startswith("nmv_usr_") and record.token == connection.token
    assert record.session_id == connection.session_id and record.client_id
    assert emulator.sessions[connection.session_id].language == "zh-CN"
    token_call, session_call = emulator.requests[0], emulator.requests[1]
    assert token_call.headers["x-client-id"] == record.client_id
    assert "authorization" not in token_call.headers
    for request in (token_call, session_call):
        assert request.headers["x-skill-source"] == "maker-online-free"
        assert (
            request.headers["x-skill-version"] == "1.0.0" and request.headers["x-skill-platform"] == "unknown"
        )
    assert session_call.headers["authorization"] == f"Bearer {connection.token}"
    assert all(connection.token not in r.path for r in emulator.requests)


async def test_default_turn_yields_only_the_model_text(projects: Projects) -> None:
    events = await collect(projects, "make a promo")
    texts = [e.text for e in events if e.kind == "text"]
    assert texts == ["Sure, give me a moment.", "Your 10-second clip is on the timeline."]


@pytest.mark.parametrize("keepalive", ["comment", "empty", "heartbeat"])
@pytest.mark.parametrize("framing", ["adk", "legacy"])
async def test_every_keepalive_and_framing_gives_the_same_text(
    projects: Projects, emulator: NemoEmulator, keepalive: str, framing: str
) -> None:
    emulator.keepalive, emulator.framing = keepalive, framing
    emulator.script("hello", Turn(texts=["Hi there."], duration=0.15, partials=True, thoughts=True))
    texts = [e.text for e in await collect(projects, "hello") if e.kind == "text"]
    assert texts == ["Hi there."]


@pytest.mark.parametrize("style", ["event", "line"])
async def test_error_events_are_reported(projects: Projects, emulator: NemoEmulator, style: str) -> None:
    emulator.script(
        "unsafe", Turn(texts=[], error="SAFETY", error_style=style, error_message="blocked by safety")
    )
    events = await collect(projects, "unsafe thing")
    assert [e.kind for e in events if e.kind == "error"] == ["error"]


async def test_garbage_lines_are_skipped(projects: Projects, emulator: NemoEmulator) -> None:
    emulator.script("boom", Turn(texts=["ok"], error="boom", error_style="garbage"))
    events = await collect(projects, "boom")
    assert [e.text for e in events if e.kind == "text"] == ["ok"]


async def test_a_cut_stream_raises_stream_dropped(projects: Projects, emulator: NemoEmulator) -> None:
    emulator.script("cut", Turn(texts=["one", "two", "three"], drop_after=1))
    with pytest.raises(errors.StreamDropped):
        await collect(projects, "cut")


async def test_a_silent_open_stream_raises_stream_idle(projects: Projects, emulator: NemoEmulator) -> None:
    emulator.keepalive = "none"
    emulator.script("hang", Turn(texts=["done"], hang_after_last=3.0))
    seen: list[str] = []
    with pytest.raises(errors.StreamIdle):
        async with projects.open_turn(CHAT, "en", "hang") as events:
            async for event in events:
                seen.append(event.text)
    assert "done" in seen


async def test_expired_token_is_renewed_with_the_same_client_id(
    projects: Projects, emulator: NemoEmulator, store: Store
) -> None:
    first = await projects.connect(CHAT, "en")
    client_id = (await store.load_chat(CHAT.key)).client_id
    emulator.expire_tokens()
    balance = await projects.call(CHAT, "en", lambda c: projects.client.credits(c.token))
    assert balance.total == 100
    renewed = await store.load_chat(CHAT.key)
    assert renewed.token != first.token and renewed.client_id == client_id
    token_calls = emulator.calls("anonymous_token")
    assert [c.headers["x-client-id"] for c in token_calls] == [client_id, client_id]


async def test_lost_session_is_recreated_and_the_turn_retried_once(
    projects: Projects, emulator: NemoEmulator, store: Store
) -> None:
    first = await projects.connect(CHAT, "en")
    emulator.drop_sessions()
    texts = [e.text for e in await collect(projects, "hello again") if e.kind == "text"]
    assert texts and (await store.load_chat(CHAT.key)).session_id != first.session_id
    assert len(emulator.calls("run_sse")) == 2


async def test_rate_limit_waits_and_retries_once(projects: Projects, emulator: NemoEmulator) -> None:
    await projects.connect(CHAT, "en")
    emulator.inject("credits", http_status=429)
    assert (await projects.call(CHAT, "en", lambda c: projects.client.credits(c.token))).available == 100
    emulator.inject("credits", http_status=429, times=2)
    with pytest.raises(errors.RateLimited):
        await projects.call(CHAT, "en", lambda c: projects.client.credits(c.token))


@pytest.mark.parametrize("status", [200, 400, 401])
@pytest.mark.parametrize(
    ("code", "kind"),
    [(2001, errors.OutOfCredits), (4001, errors.UnsupportedFile), (4002, errors.FileTooLarge)],
)
async def test_business_codes_map_to_errors_whatever_the_status(
    projects: Projects, emulator: NemoEmulator, status: int, code: int, kind: type[Exception]
) -> None:
    await projects.connect(CHAT, "en")
    emulator.error_http_status = status
    emulator.inject("credits", code=code)
    with pytest.raises(kind):
        await projects.call(CHAT, "en", lambda c: projects.client.credits(c.token))


@pytest.mark.parametrize(
    "fault",
    [{"http_status": 502}, {"body": b"<html>oops"}, {"body": b'{"code":0,"data":[]}'}, {"delay": 0.5}],
)
async def test_idempotent_calls_retry_broken_answers_then_give_up(
    client: NemoClient, emulator: NemoEmulator, fault: dict
) -> None:
    import httpx

    from tests.conftest import ATTRIBUTION

    async with httpx.AsyncClient(base_url=emulator.base_url, timeout=0.3) as http:
        retrying = NemoClient(http, ATTRIBUTION, retry=RetryPolicy(2, 0.01))
        account = emulator.add_account("c")
        session = emulator.add_session(account.user_id)
        emulator.inject("state", **fault, times=2)
        state = await retrying.state(account.token, session.session_id)  # third try answers
        assert state.draft == {"t": []} and len(emulator.calls("state")) == 3
        emulator.inject("state", **fault, times=3)
        with pytest.raises(errors.BackendUnavailable):
            await retrying.state(account.token, session.session_id)


async def test_chat_turns_and_render_starts_are_never_retried(
    projects: Projects, emulator: NemoEmulator
) -> None:
    connection = await projects.connect(CHAT, "en")
    emulator.inject("run_sse", http_status=502)
    with pytest.raises(errors.BackendUnavailable):
        await collect(projects, "hello")
    assert len(emulator.calls("run_sse")) == 1
    emulator.inject("render_start", http_status=502)
    with pytest.raises(errors.BackendUnavailable):
        await projects.client.start_render(
            connection.token, connection.session_id, "render_z", sample_draft()
        )
    assert len(emulator.calls("render_start")) == 1


async def test_timeouts_are_backend_unavailable(emulator: NemoEmulator) -> None:
    import httpx

    from tests.conftest import ATTRIBUTION

    async with httpx.AsyncClient(base_url=emulator.base_url, timeout=0.2) as http:
        client = NemoClient(http, ATTRIBUTION)
        emulator.inject("anonymous_token", delay=1.0)
        with pytest.raises(errors.BackendUnavailable):
            await client.anonymous_token("c1")


async def test_operator_token_is_used_and_never_renewed(
    client: NemoClient, emulator: NemoEmulator, store: Store
) -> None:
    account = emulator.add_account("operator")
    projects = Projects(client, store, operator_token=account.token, rate_limit_wait=0)
    await projects.connect(CHAT, "en")
    assert not emulator.calls("anonymous_token")
    emulator.expire_tokens()
    with pytest.raises(OperatorTokenRejected):
        await projects.call(CHAT, "en", lambda c: projects.client.credits(c.token))


async def test_upload_files_streams_bytes_and_urls(projects: Projects, emulator: NemoEmulator) -> None:
    files = [
        LocalFile(MEDIA / "photo.jpg", "photo.jpg", "image/jpeg"),
        LocalFile(MEDIA / "clip.mp4", "clip.mp4", "video/mp4"),
    ]
    uploaded = await projects.call(
        CHAT, "en", lambda c: projects.client.upload_files(c.token, c.session_id, files)
    )
    assert [(m.filename, m.file_type) for m in uploaded] == [("photo.jpg", "image"), ("clip.mp4", "video")]
    request = emulator.calls("upload")[-1]
    assert request.files == [("photo.jpg", (MEDIA / "photo.jpg").stat().st_size), ("clip.mp4", 30799)]
    by_url = await projects.call(
        CHAT,
        "en",
        lambda c: projects.client.upload_urls(c.token, c.session_id, ["https://example.com/a.mp4"]),
    )
    assert by_url[0].filename == "a.mp4"
    assert emulator.calls("upload")[-1].json == {"urls": ["https://example.com/a.mp4"], "source_type": "url"}


@pytest.mark.parametrize("shape", ["output", "success"])
async def test_render_reaches_completed_in_both_shapes(
    projects: Projects, emulator: NemoEmulator, shape: str, tmp_path: Path
) -> None:
    connection = await projects.connect(CHAT, "en")
    emulator.render_shape = shape
    emulator.set_draft(connection.session_id, sample_draft())
    started = await projects.client.start_render(
        connection.token, connection.session_id, "render_1", sample_draft()
    )
    assert started.status == "pending"
    seen = []
    for _ in range(10):
        status = await projects.client.render_status(connection.token, "render_1")
        seen.append(status.status)
        if status.finished:
            break
    assert seen[-1] == "completed" and status.url
    size = await projects.client.download(status.url, tmp_path / "out.mp4", 10**7, seconds=10)
    assert (tmp_path / "out.mp4").read_bytes() == (MEDIA / "clip.mp4").read_bytes() and size == 30799


async def test_render_without_attribution_is_refused_with_402(emulator: NemoEmulator, tmp_path: Path) -> None:
    import httpx

    from bot.nemo.client import Attribution

    async with httpx.AsyncClient(base_url=emulator.base_url) as http:
        account = emulator.add_account("c")
        session = emulator.add_session(account.user_id, draft=sample_draft())
        client = NemoClient(http, Attribution("", "", ""))
        client._attribution = type("NoHeaders", (), {"headers": staticmethod(dict)})()  # type: ignore[assignment]
        with pytest.raises(errors.ExportNotAllowed):
            await client.start_render(account.token, session.session_id, "render_x", sample_draft())


async def test_concurrent_first_messages_share_one_connection(
    projects: Projects, emulator: NemoEmulator
) -> None:
    results = await asyncio.gather(*(projects.connect(CHAT, "en") for _ in range(5)))
    assert len({r.session_id for r in results}) == 1
    assert len(emulator.calls("anonymous_token")) == 1
