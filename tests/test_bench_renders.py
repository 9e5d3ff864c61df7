"""The render benchmark in miniature, and the batched leases the render watcher polls with.

Behaviour only, never a timing: every render that completes is delivered exactly once, to its own
chat, by one bot process or by two sharing one Redis.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import fakeredis
import pytest
from redis.asyncio import Redis

from bench.bench_renders import run
from bot.store import RenderRecord, Store
from tests.conftest import RETENTION, RedisServer

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@needs_redis
@pytest.mark.parametrize(("processes", "renders", "latency"), [(1, 30, 0.0), (2, 100, 0.02)])
async def test_a_tiny_run_delivers_every_completed_render_once_to_its_chat(
    processes: int, renders: int, latency: float
) -> None:
    """Two processes: each lists the active renders, then leases them one batch at a time, so one
    may reach a render the other has delivered since (a status poll that takes `latency` widens
    that window): it must not deliver it again."""
    [row] = await run(
        renders,
        poll_seconds=0.3,
        intervals=3,
        completions_per_interval=4,
        processes=processes,
        latency=latency,
    )
    assert row.completed == 12
    assert row.undelivered == 0
    assert row.duplicates == 0  # no second video, no "if it didn't come through" link
    assert row.strays == 0  # no video in a chat whose render had not completed
    assert row.delivered_once == row.completed


@pytest.fixture(params=["fakeredis", "redis-server"])
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Store]:
    server = None
    if request.param == "fakeredis":
        redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    else:
        if shutil.which("redis-server") is None:
            pytest.skip("needs redis-server")
        server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False)
        server.start()
        redis = Redis.from_url(server.url, decode_responses=True)
    try:
        yield Store(redis, "nvb:test", RETENTION)
    finally:
        await redis.aclose()
        if server is not None:
            server.stop()


async def add(store: Store, index: int) -> RenderRecord:
    record = RenderRecord(f"render_{index}", f"chat{index}", index, "s1", status="processing")
    assert await store.add_render(record)
    return record


async def test_a_batch_lease_takes_only_free_renders_and_reads_their_records(store: Store) -> None:
    for index in range(5):
        await add(store, index)
    assert await store.lease_render("render_1", "other", 30)
    leased = await store.lease_renders(await store.active_renders(), "me", 30)
    assert [render_id for render_id, _ in leased] == ["render_0", "render_2", "render_3", "render_4"]
    assert all(record is not None and record.render_id == rid for rid, record in leased)
    assert not await store.lease_render("render_2", "other", 30)  # held now
    assert await store.lease_render("render_2", "me", 30)  # by its owner, who may renew it
    assert [rid for rid, _ in await store.lease_renders(["render_2"], "me", 30)] == ["render_2"]
    assert await store.lease_renders(["render_2"], "other", 30) == []
    await store.release_renders(["render_0", "render_2", "render_3", "render_4"])
    assert [rid for rid, _ in await store.lease_renders(["render_2", "render_3"], "other", 30)] == [
        "render_2",
        "render_3",
    ]


async def test_a_render_closed_since_the_list_was_read_is_not_leased_again(store: Store) -> None:
    """Another process delivered it between our reading the active set and our lease."""
    records = [await add(store, index) for index in range(3)]
    listed = await store.active_renders()
    records[1].status = "delivered"
    await store.close_render(records[1])
    leased = await store.lease_renders(listed, "me", 30)
    assert [rid for rid, _ in leased] == ["render_0", "render_2"]
    assert await store.lease_render("render_1", "other", 30)  # its lease was not kept


async def test_a_render_whose_record_is_gone_leaves_the_active_set(store: Store) -> None:
    await add(store, 0)
    await add(store, 1)
    await store.redis.delete(store.keys.render("render_0"))
    leased = await store.lease_renders(await store.active_renders(), "me", 30)
    assert [rid for rid, _ in leased] == ["render_1"]
    assert await store.active_renders() == ["render_1"]
