"""The Redis store, on fakeredis and on a real redis-server started by the tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import fakeredis
import pytest
from redis.asyncio import Redis

from bot.store import RenderRecord, Store, TurnRecord
from tests.conftest import RETENTION, RedisServer


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
    assert [key for key, _ in await any_store.interrupted_turns()] in (["1", "2"], ["2", "1"])
    await any_store.end_turn("1")
    assert await any_store.current_turn("1") is None


async def test_renders_are_recorded_once_per_chat_and_closed(any_store: Store) -> None:
    first = RenderRecord("render_1", "1", 1, "s")
    assert await any_store.add_render(first)
    assert not await any_store.add_render(RenderRecord("render_2", "1", 1, "s"))
    assert await any_store.active_renders() == ["render_1"]
    assert (await any_store.chat_render("1")) == first
    first.status = "delivered"
    await any_store.close_render(first)
    assert await any_store.active_renders() == []
    assert await any_store.chat_render("1") is None
    assert (await any_store.get_render("render_1")).status == "delivered"  # type: ignore[union-attr]
    assert await any_store.add_render(RenderRecord("render_3", "1", 1, "s"))


async def test_lease_keeps_a_second_owner_out(any_store: Store) -> None:
    assert await any_store.lease_render("r", "a", 5)
    assert await any_store.lease_render("r", "a", 5)
    assert not await any_store.lease_render("r", "b", 5)
    await any_store.release_render("r")
    assert await any_store.lease_render("r", "b", 5)


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
