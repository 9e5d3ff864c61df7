"""Upload forwarding: a large video through local Bot API mode to the emulator, beside `curl | curl`.

    .venv/bin/python bench/bench_upload.py                  # one 200 MB video
    .venv/bin/python bench/bench_upload.py --size-mb 50 --runs 2

The fake Bot API runs in local mode (`telegram-bot-api --local`): the user's video is a file on this
machine, getFile answers its absolute path and the real `python -m bot` (TELEGRAM_LOCAL_MODE=true)
copies it from there, checks it and streams it as multipart to the NemoVideo emulator. The video is
`tests/media/clip.mp4` followed by a `free` box that pads it to the size asked for, so it passes the
bot's content checks; it is written in 1 MiB chunks, never held in memory.

Measured: seconds from the update being queued to the emulator having read the whole upload, and to
the bot's "Added to your project" reply; MB/s (MiB, 2^20 bytes) over the first; the bot process's
VmRSS just before the update and its peak, sampled every 50 ms by a thread until the reply (VmHWM
would include start-up). Beside it, on the same file, the baseline pipe
`curl -s file://… | curl -s --data-binary @- …` into a loopback sink that reads, hashes (as the
emulator does) and discards, and the same pipe with `curl -T -`, which streams stdin instead of
reading it whole first. The sink runs in this process, as the emulator does. A last row sends the
file with `curl -F` straight to the emulator's upload endpoint: the same multipart receiver as the
bot's, so the bot's own share of the time shows. RSS of a curl row: its curls' peaks added up.

Figures only: nothing here asserts a timing (tests/test_bench_upload.py checks the behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import struct
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from bench.common import Stack, cpu_seconds, machine, rss_mb, stack, table
from bot.core.media import inspect_file
from loopback.emulator import RecordedRequest
from loopback.fake_telegram import User
from loopback.servers import MEDIA

MB = 1024 * 1024
CHUNK = MB
CHAT = 5150
USER = User(CHAT, "Uma", "uma", language_code="en")
SAMPLE_SECONDS = 0.05

HEADERS = (
    "path",
    "size MB",
    "seconds",
    "MB/s",
    "bot ÷ this",
    "RSS before MB",
    "RSS peak MB",
    "RSS growth MB",
    "arrived whole",
)
DETAIL_HEADERS = (
    "size MB",
    "update → getFile s",
    "getFile → upload starts s (copy, checks)",
    "upload streamed s",
    "streamed MB/s",
    "upload read → reply s",
    "update → reply s",
    "bot CPU s (update → reply)",
    "bench process (emulator, fake) RSS growth MB",
)


@dataclass
class Row:
    """One path's figures, and what arrived (for the behaviour test)."""

    path: str
    size: int  # bytes of the video
    seconds: float  # until the receiver had read the whole body
    rss_before: float | None = None
    rss_peak: float | None = None
    received: int = 0  # bytes of the file the receiver read
    digest_ok: bool = False  # the receiver's hash matches the file's
    reply: str = ""  # the bot's confirmation (bot row only)
    baseline: float | None = None  # MB/s of the bot row, for the ratio on baseline rows
    details: dict[str, float] = field(default_factory=dict)  # the bot's phases (bot row only)

    @property
    def mb_per_s(self) -> float:
        return self.size / MB / self.seconds if self.seconds > 0 else 0.0

    def cells(self) -> list[object]:
        ratio = f"{self.baseline / self.mb_per_s:.2f}" if self.baseline and self.mb_per_s else "—"
        growth = (
            self.rss_peak - self.rss_before
            if self.rss_before is not None and self.rss_peak is not None
            else "—"
        )
        rss = [_or_dash(self.rss_before), _or_dash(self.rss_peak), growth]
        return [
            self.path,
            round(self.size / MB),
            self.seconds,
            self.mb_per_s,
            ratio,
            *rss,
            "yes" if self.digest_ok and self.received == self.size else "NO",
        ]

    def detail_cells(self) -> list[object]:
        d = self.details
        return [
            round(self.size / MB),
            d["to_get_file"],
            d["to_upload"],
            d["streamed"],
            self.size / MB / d["streamed"] if d["streamed"] > 0 else 0.0,
            d["to_reply"],
            d["total_reply"],
            d["cpu"],
            d["bench_rss_growth"],
        ]


def _or_dash(value: float | None) -> object:
    return "—" if value is None else value


def make_video(path: Path, size: int) -> str:
    """A valid MP4 of exactly `size` bytes (the test clip, then a padding `free` box); its sha256."""
    clip = (MEDIA / "clip.mp4").read_bytes()
    pad = size - len(clip)
    if pad < 16:
        raise ValueError(f"size must be at least {len(clip) + 16} bytes")
    header = struct.pack(">I4s", pad, b"free") if pad < 2**32 else struct.pack(">I4sQ", 1, b"free", pad)
    block = os.urandom(CHUNK)  # incompressible, like video
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for piece in (clip, header):
            out.write(piece)
            digest.update(piece)
        left = pad - len(header)
        while left > 0:
            piece = block[: min(CHUNK, left)]
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


class RssSampler:
    """VmRSS of some processes every 50 ms, from a thread (the event loop is busy receiving)."""

    def __init__(self, pids: Sequence[int]):
        self.pids = list(pids)
        self.peaks = dict.fromkeys(self.pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def sample(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # the process has ended
                self.peaks[pid] = max(self.peaks[pid], rss_mb(pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class Sink:
    """POST /sink on loopback: reads the body in 64 KiB chunks, hashes it, discards it."""

    def __init__(self) -> None:
        self.received = 0
        self.digest = ""
        self.done_at = 0.0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/sink", self._sink)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/sink"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _sink(self, request: web.Request) -> web.Response:
        hasher, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_chunked(65536):
            hasher.update(chunk)
            size += len(chunk)
        self.received, self.digest, self.done_at = size, hasher.hexdigest(), time.monotonic()
        return web.json_response({"size": size})


async def curl_pipe(video: Path, size: int, digest: str, streamed: bool) -> Row:
    """`curl -s file://video | curl -s (--data-binary @- | -T -) <sink>`: seconds, both curls' RSS."""
    curl = shutil.which("curl")
    if curl is None:
        raise RuntimeError("curl is not installed")
    sink = Sink()
    await sink.start()
    send = ["-T", "-", "-X", "POST"] if streamed else ["--data-binary", "@-"]
    read_end, write_end = os.pipe()
    try:
        started = time.monotonic()
        reader = await asyncio.create_subprocess_exec(curl, "-s", video.as_uri(), stdout=write_end)
        sender = await asyncio.create_subprocess_exec(
            curl,
            "-s",
            *send,
            "-H",
            "Content-Type: application/octet-stream",
            "-H",
            "Expect:",
            sink.url,
            stdin=read_end,
            stdout=asyncio.subprocess.DEVNULL,
        )
        os.close(write_end)
        os.close(read_end)
        with RssSampler([reader.pid, sender.pid]) as sampler:
            codes = await asyncio.gather(reader.wait(), sender.wait())
        finished = time.monotonic()
    finally:
        await sink.stop()
    if any(codes):
        raise RuntimeError(f"curl failed: exit codes {codes}")
    command = "-T - (streams stdin)" if streamed else "--data-binary @-"
    return Row(
        path=f"curl -s file:// \\| curl -s {command} → loopback sink",  # \| : a pipe in a table cell
        size=size,
        seconds=(sink.done_at or finished) - started,
        rss_peak=sum(sampler.peaks.values()),  # both curls' peaks added up
        received=sink.received,
        digest_ok=sink.digest == digest,
    )


async def curl_to_emulator(servers: Stack, video: Path, size: int, digest: str) -> Row:
    """`curl -F files=@video` straight to the emulator's upload endpoint: the receiver the bot has."""
    curl = shutil.which("curl")
    if curl is None:
        raise RuntimeError("curl is not installed")
    emulator = servers.emulator
    account = emulator.add_account()
    session = emulator.add_session(account.user_id)
    url = f"{emulator.base_url}/api/upload-video/nemo_agent/me/{session.session_id}"
    before = len(emulator.calls("upload"))
    started = time.monotonic()
    sender = await asyncio.create_subprocess_exec(
        curl,
        "-s",
        "-F",
        f"files=@{video};filename=holiday.mp4;type=video/mp4",
        "-H",
        f"Authorization: Bearer {account.token}",
        "-H",
        "Expect:",
        url,
        stdout=asyncio.subprocess.DEVNULL,
    )
    with RssSampler([sender.pid]) as sampler:
        code = await sender.wait()
    uploads = emulator.calls("upload")[before:]
    if code or len(uploads) != 1 or uploads[0].body_read_at is None or not session.media:
        raise RuntimeError(f"curl -F to the emulator failed (exit {code})")
    return Row(
        path="curl -s -F files=@file → emulator (the bot's receiver)",
        size=size,
        seconds=uploads[0].body_read_at - started,
        rss_peak=sampler.peaks[sender.pid],
        received=sum(part_size for _, part_size in uploads[0].files),
        digest_ok=session.media[-1].get("hash") == digest[:16],
    )


def _reply_call_at(servers: Stack, since: float) -> float:
    """When the bot sent (or edited in) its "Added to your project" reply (a text, or the caption of
    the video's preview)."""
    for call in servers.fake.calls:
        said = call.params.get("text") or call.params.get("caption") or ""
        if call.at >= since and "Added to your project" in str(said):
            return call.at
    return time.monotonic()


async def through_bot(servers: Stack, video: Path, size: int, digest: str) -> Row:
    """The real bot in local mode: the update, getFile, the copy and checks, the upload, the reply."""
    fake, emulator = servers.fake, servers.emulator
    fake.use_local_mode(servers.workdir / "telegram-files")
    emulator.max_upload_bytes = max(emulator.max_upload_bytes, size + MB)
    bot = servers.bot(
        TELEGRAM_LOCAL_MODE="true",
        MAX_UPLOAD_MB=str(max(500, size // MB + 1)),
        HTTP_TIMEOUT_SECONDS="60",
        UPLOADS_PER_USER="0",
        UPLOADS_PER_CHAT="0",
    )
    await bot.start()
    try:
        assert bot.process is not None
        pid = bot.process.pid
        fake.send_command(CHAT, "/start", user=USER)
        await fake.wait_for_message(CHAT, "Connected and ready", timeout=60)
        await asyncio.sleep(3.5)  # the chat's pacing window (3 messages in 3 s) is free again
        mark = fake.message_count(CHAT)
        uploads_before = len(emulator.calls("upload"))
        bench_before = rss_mb(os.getpid())
        before = rss_mb(pid)
        cpu_before = cpu_seconds(pid)
        with RssSampler([pid, os.getpid()]) as sampler:
            sent_at = time.monotonic()
            fake.send_video_path(CHAT, video, file_name="holiday.mp4", user=USER)
            reply = await fake.wait_for_message(
                CHAT, "Added to your project", after=mark, timeout=max(120, size / MB)
            )
        replied_at = _reply_call_at(servers, sent_at)
        cpu = cpu_seconds(pid) - cpu_before
    finally:
        code = await bot.stop()
    uploads: list[RecordedRequest] = emulator.calls("upload")[uploads_before:]
    if code != 0 or len(uploads) != 1 or uploads[0].body_read_at is None:
        raise RuntimeError(f"the upload did not go through (exit {code}); log:\n{bot.log[-3000:]}")
    upload = uploads[0]
    assert upload.body_read_at is not None
    get_file = next(c for c in fake.calls if c.method == "getFile" and c.at >= sent_at)
    media = [m for s in emulator.sessions.values() for m in s.media]
    received = sum(part_size for _, part_size in upload.files)
    return Row(
        path="bot: local Bot API → bot → emulator (multipart)",
        size=size,
        seconds=upload.body_read_at - sent_at,
        rss_before=before,
        rss_peak=sampler.peaks[pid],
        received=received,
        digest_ok=bool(media) and media[-1].get("hash") == digest[:16],
        reply=reply.text,
        details={
            "to_get_file": get_file.at - sent_at,
            "to_upload": upload.at - get_file.at,
            "streamed": upload.body_read_at - upload.at,
            "to_reply": replied_at - upload.body_read_at,
            "total_reply": replied_at - sent_at,
            "bench_rss_growth": sampler.peaks[os.getpid()] - bench_before,
            "cpu": cpu,
        },
    )


async def run(size_mb: int) -> list[Row]:
    """One video of `size_mb` MiB through the bot, then the curl baselines on the same file."""
    async with stack() as servers:
        video = servers.workdir / "upload-bench.mp4"
        size = size_mb * MB
        digest = await asyncio.to_thread(make_video, video, size)
        check = await asyncio.to_thread(inspect_file, video, "mp4")
        if check.problem is not None:
            raise RuntimeError(f"the bench video fails the bot's checks: {check.problem}")
        bot_row = await through_bot(servers, video, size, digest)
        rows = [bot_row]
        for streamed in (False, True):
            rows.append(await curl_pipe(video, size, digest, streamed))
        rows.append(await curl_to_emulator(servers, video, size, digest))
        for row in rows[1:]:
            row.baseline = bot_row.mb_per_s
        return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="video size in MiB")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(machine(), flush=True)
    rows: list[Row] = []
    for _ in range(args.runs):
        rows += await run(args.size_mb)
    table("Upload forwarding (local Bot API mode)", HEADERS, [row.cells() for row in rows])
    table("The bot's upload, phase by phase", DETAIL_HEADERS, [r.detail_cells() for r in rows if r.details])


if __name__ == "__main__":
    asyncio.run(main())
