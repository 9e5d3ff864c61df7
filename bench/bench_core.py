"""Throughput of the hot pure paths, measured on this machine (no timing asserts: read the numbers).

    .venv/bin/python bench/bench_core.py

Each line: operations per second, and the ratio to a baseline of `json.loads` on the same payload
(a ratio stays comparable across machines where absolute numbers do not).
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable

from bot.core.agent_text import split_html, to_chat
from bot.core.intents import route
from bot.core.timeline import format_timeline, tracks
from bot.nemo.sse import parse_event

EVENT = json.dumps(
    {
        "content": {
            "parts": [{"text": "Your 10-second clip is on the timeline. Click the Export button."}],
            "role": "model",
        },
        "author": "nemo_agent",
        "invocationId": "e-1",
        "id": "a4",
        "timestamp": 1795296051.2,
        "actions": {"stateDelta": {}, "artifactDelta": {}},
    }
)
DRAFT = {
    "t": [
        {"tt": 0, "sg": [{"d": 10000, "m": {"name": f"clip {i}"}} for i in range(20)]},
        {"tt": 1, "sg": [{"d": 30000, "m": {"name": "Lo-fi"}}], "m": {"volume": 0.35}},
        {"tt": 7, "sg": [{"d": 3000, "m": {"title": "Urban Dreams"}}]},
    ]
}
LONG = html.escape("The quick brown fox & friends jump over the lazy dog. " * 400)


def rate(fn: Callable[[], object], seconds: float = 0.5) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            fn()
        count += 100
    return count / (time.perf_counter() - start)


def main(seconds: float = 0.5) -> None:
    """Print each case's rate, measured for `seconds` (a test runs it for a moment)."""
    baseline = rate(lambda: json.loads(EVENT), seconds)
    cases = {
        "parse_event (ADK text event)": lambda: parse_event(EVENT),
        "route (short command)": lambda: route("export 1080p MP4"),
        "route (long request)": lambda: route(
            "combine these images into a 30-second promo video with music and text"
        ),
        "to_chat (GUI translation + escaping)": lambda: to_chat(
            "Done! Click the Export button or preview it in the timeline.", "en"
        ),
        "format_timeline (22 segments)": lambda: format_timeline(tracks(DRAFT)),
        "split_html (22 KB reply)": lambda: split_html(LONG),
    }
    print(f"{'json.loads baseline':40s} {baseline:12,.0f}/s")
    for name, fn in cases.items():
        ops = rate(fn, seconds)
        print(f"{name:40s} {ops:12,.0f}/s   {ops / baseline:6.3f}x baseline")


if __name__ == "__main__":
    main()
