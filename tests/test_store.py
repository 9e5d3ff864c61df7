"""The Redis store, on fakeredis and on a real redis-server started by the tests."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import fakeredis
import pytest
from redis.asyncio import Redis

from bot.chat.access import overflowing
from bot.state.projects import ProjectRecord
from bot.state.renders import InvalidMove, RenderRecord, RenderState
from bot.state.store import Store
from bot.state.turns import TurnRecord
from loopback.servers import RETENTION, RedisServer


@pytest.fixture(params=["fakeredis", "redis-server"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    server = None
    if request.param == "fakeredis":
        redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    else:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed: the real-Redis tier needs it")
        server = RedisServer(tmp_path)
        server.start()
        redis = Redis.from_url(server.url, decode_responses=True)
    yield Store(redis, "nvb:test", RETENTION)
    await redis.aclose()
    if server is not None:
        server.stop()


async def test_chat_record_round_trip_and_token_expiry(any_store: Store) -> None:
    await any_store.save_chat("1", client_id="c-1", session_id="5529798706024415232", language="en")
    await any_store.save_token("1", "nmv_usr_x", time.time() + 100)
    record = await any_store.load_chat("1")
    assert (record.client_id, record.session_id, record.token) == ("c-1", "5529798706024415232", "nmv_usr_x")
    assert 0 < await any_store.redis.ttl(any_store.keys.token("1")) <= 100
    assert await any_store.redis.ttl(any_store.keys.chat("1")) > 0
    await any_store.forget_session("1")
    await any_store.drop_token("1")
    record = await any_store.load_chat("1")
    assert record.session_id == "" and record.token == "" and record.client_id == "c-1"


async def test_one_turn_at_a_time(any_store: Store) -> None:
    turn = TurnRecord(time.time(), "make a promo", 1)
    assert await any_store.start_turn("1", turn, 60)
    assert not await any_store.start_turn("1", turn, 60)
    assert await any_store.start_turn("2", turn, 60)
    assert [key for key, _ in await any_store.running_turns()] in (["1", "2"], ["2", "1"])
    await any_store.end_turn("1")
    assert await any_store.current_turn("1") is None


async def test_renders_are_recorded_once_per_chat_and_closed(any_store: Store) -> None:
    first = RenderRecord("render_1", "1", 1, "s")
    assert await any_store.add_render(first)
    assert not await any_store.add_render(RenderRecord("render_2", "1", 1, "s"))
    assert await any_store.active_renders() == ["render_1"]
    assert (await any_store.chat_render("1")) == first
    assert await any_store.move_render(first, RenderState.FAILED)
    assert await any_store.active_renders() == []
    assert await any_store.chat_render("1") is None
    assert (await any_store.get_render("render_1")).status == "failed"  # type: ignore[union-attr]
    assert await any_store.add_render(RenderRecord("render_3", "1", 1, "s"))


async def test_two_bots_share_one_redis_without_seeing_each_other(real_store: Store) -> None:
    other = Store(real_store.redis, "nvb:999", RETENTION)
    await real_store.save_chat("1", session_id="mine")
    assert (await other.load_chat("1")).session_id == ""


async def test_state_survives_a_redis_restart_with_append_only_persistence(redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    store = Store(redis, "nvb:test", RETENTION)
    await store.add_render(RenderRecord("render_9", "7", 7, "s"))
    await redis.aclose()
    redis_server.stop()
    redis_server.start()
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    store = Store(redis, "nvb:test", RETENTION)
    assert await store.active_renders() == ["render_9"]
    await redis.aclose()


async def test_concurrent_attempts_never_take_more_than_the_allowance(any_store: Store) -> None:
    """Thirty members of one group at once, ten turns allowed: ten go, and the refused twenty use
    up nothing (each member's own counter stays at what she was allowed)."""
    members = range(30)

    async def attempt(member: int) -> int:
        limits = {f"turns:user:{member}": 5, "turns:chat:-100": 10}
        return await any_store.take_allowance(limits, 3600, 1, overflowing)

    waits = await asyncio.gather(*(attempt(member) for member in members))
    assert waits.count(0) == 10
    assert all(0 < wait <= 3600 for wait in waits if wait)
    assert int(await any_store.redis.get(any_store.keys.counter("turns:chat:-100"))) == 10
    counted = [await any_store.redis.get(any_store.keys.counter(f"turns:user:{m}")) for m in members]
    assert sorted(counted, key=str) == ["1"] * 10 + [None] * 20


async def test_a_render_moves_only_from_the_state_it_was_read_in(any_store: Store) -> None:
    """Two processes holding the same render: the first move wins, the stale one changes nothing."""
    record = RenderRecord("render_5", "5", 5, "s", status=RenderState.PROCESSING)
    assert await any_store.add_render(record)
    stale = await any_store.get_render("render_5")
    assert stale is not None
    record.url = "https://cdn.example/v.mp4"
    assert await any_store.move_render(record, RenderState.COMPLETED)
    assert not await any_store.move_render(stale, RenderState.FAILED)
    assert stale.status is RenderState.PROCESSING  # the stale copy is left as it was read
    stored = await any_store.get_render("render_5")
    assert stored is not None and stored.status is RenderState.COMPLETED and stored.url
    assert await any_store.active_renders() == ["render_5"]
    with pytest.raises(InvalidMove):
        await any_store.move_render(record, RenderState.PENDING)  # never back from a video


async def test_a_chats_projects_live_as_long_as_the_chat_is_used(any_store: Store) -> None:
    await any_store.save_project("7", ProjectRecord("1", name="Teaser", created_at=1.0))
    await any_store.save_project("7", ProjectRecord("2", created_at=2.0))
    await any_store.touch_project("7", "2", 50.0)
    await any_store.redis.expire(any_store.keys.projects("7"), 5)
    await any_store.redis.expire(any_store.keys.project_times("7"), 5)
    await any_store.load_chat("7", touch=True)  # the chat is used: its projects are kept as long
    assert await any_store.redis.ttl(any_store.keys.projects("7")) > 100
    assert await any_store.redis.ttl(any_store.keys.project_times("7")) > 100
    kept = await any_store.projects("7")
    assert [(p.project_id, p.name, p.updated_at) for p in kept] == [("1", "Teaser", 1.0), ("2", "", 50.0)]
    await any_store.save_project("7", ProjectRecord("2", name="Reel", created_at=2.0))  # a rename
    assert [p.updated_at for p in await any_store.projects("7")] == [1.0, 50.0]  # keeps its time


async def test_reading_a_chat_never_leaves_a_record_that_does_not_expire(any_store: Store) -> None:
    await any_store.load_chat("8", touch=True)
    assert not await any_store.redis.exists(any_store.keys.chat("8"))
    await any_store.note_changed("8")
    assert 0 < await any_store.redis.ttl(any_store.keys.chat("8")) <= 3600
