"""Render the README's example timeline picture (docs/timeline.png) with bot/telegram/pictures.py.

    .venv/bin/python scripts/timeline_example.py [out.png]

The draft is the README conversation's: three photos as a 30-second video, lo-fi music at 35 %,
and a 3-second title. tests/test_timeline_picture.py checks the committed picture has its 3 rows.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bot.core.timeline import format_timeline, tracks
from bot.telegram.pictures import render_png

EXAMPLE_DRAFT: dict[str, Any] = {
    "t": [
        {
            "tt": 0,
            "m": {"name": "Video"},
            "sg": [{"d": 10_000, "m": {"name": f"photo_{i}.jpg"}} for i in (1, 2, 3)],
        },
        {"tt": 1, "m": {"name": "BGM", "volume": 0.35}, "sg": [{"d": 30_000, "m": {"name": "Lo-fi"}}]},
        {"tt": 7, "m": {"name": "Title"}, "sg": [{"d": 3000, "m": {"title": "Grand Opening"}}]},
    ]
}


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent.parent / "docs" / "timeline.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(render_png(EXAMPLE_DRAFT))
    print(f"{out}: {out.stat().st_size} bytes; {format_timeline(tracks(EXAMPLE_DRAFT))}")


if __name__ == "__main__":
    main()
