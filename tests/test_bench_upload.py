"""The upload benchmark, tiny: a 5 MB video through local Bot API mode arrives whole (no timings)."""

from __future__ import annotations

import shutil

import pytest

from bench.bench_upload import run

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("curl") is None,
    reason="the upload benchmark needs redis-server and curl",
)


async def test_a_small_video_is_forwarded_whole_through_local_mode() -> None:
    bot, *pipes = await run(5)
    size = 5 * 1024 * 1024
    assert bot.size == size
    assert bot.received == size and bot.digest_ok  # the emulator read the whole file, same sha256
    assert "Added to your project" in bot.reply and "holiday.mp4" in bot.reply
    assert bot.rss_before is not None and bot.rss_peak is not None
    assert len(pipes) == 3
    for pipe in pipes:
        assert pipe.received == size and pipe.digest_ok
