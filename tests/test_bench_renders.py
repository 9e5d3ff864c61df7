"""The render benchmark in miniature (its batched leases are tested in tests/test_store.py).

Behaviour only, never a timing: every render that completes is delivered exactly once, to its own
chat, by one bot process or by two sharing one Redis.
"""

from __future__ import annotations

import shutil

import pytest

from bench.bench_renders import run

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
