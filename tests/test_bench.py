"""Tiny runs of the load and core benchmarks, so they never rot (behaviour only, never a timing)."""

from __future__ import annotations

import shutil

import pytest

from bench import bench_core
from bench.bench_load import BURST_HEADERS, run_bursts, run_replica_burst, table


def test_the_core_benchmark_measures_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    bench_core.main(seconds=0.01)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("json.loads baseline") and len(lines) == 7
    assert all("x baseline" in line for line in lines[1:])


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_the_burst_benchmark_runs_both_bots_and_prints_a_row_each() -> None:
    outcomes = await run_bursts(5, within=30)
    assert [o.scenario for o in outcomes] == [
        "nemo-video-bot, cold",
        "nemo-video-bot, warm",
        "naive PTB bot, cold",
        "naive PTB bot, warm",
    ]
    assert all(o.answered == 5 and o.failures == 0 for o in outcomes)
    text = table("tiny burst", BURST_HEADERS, [o.row() for o in outcomes])
    assert text.count("\n| ") == 5  # the header and one row per scenario


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_the_replica_burst_runs_replicas_behind_a_proxy() -> None:
    outcome = await run_replica_burst(5, 2, within=30)
    assert outcome.answered == 5 and outcome.failures == 0
    assert outcome.scenario.startswith("now: 2 replicas")
