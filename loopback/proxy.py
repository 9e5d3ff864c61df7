"""Round-robin reverse proxies on 127.0.0.1 in front of N upstreams, for tests.

`round_robin_proxy(upstreams)` gives nginx where it is installed (what production runs, see
deploy/nginx.conf) and otherwise `PythonProxy`, a small aiohttp proxy with the same behaviour:
requests go to the upstreams in turn, and one that refuses the connection is skipped for the next
(nginx's `proxy_next_upstream error`); 502 when none answers.

    async with round_robin_proxy([("127.0.0.1", 8001), ("127.0.0.1", 8002)]) as proxy:
        httpx.get(f"{proxy.url}/healthz")   # proxy.kind is "nginx" or "python"
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

Upstream = tuple[str, int]

# RFC 9110 7.6.1: meaningful for one connection only, so never forwarded (plus any that
# `Connection` names). Content-Length is dropped too: the body is re-sent and measured again.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_COPIED = HOP_BY_HOP | {"content-length", "host"}


def free_port() -> int:
    """A loopback port that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_nginx() -> str | None:
    """nginx on PATH, or in the sbin folders a non-root PATH may lack."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")


def _forwardable(headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """Every header but the hop-by-hop ones, repeated headers kept in order."""
    named = {
        token.strip().lower() for value in headers.getall("Connection", []) for token in value.split(",")
    }
    return [(k, v) for k, v in headers.items() if k.lower() not in _NOT_COPIED | named]


class PythonProxy:
    """An aiohttp reverse proxy: round robin over `upstreams`, the next one when a connect fails.

    `requests` counts the requests each upstream answered; `failures` the connections it refused.
    Bodies are read whole (fine for tests, not for streaming).
    """

    kind = "python"

    def __init__(
        self, upstreams: Sequence[Upstream], *, connect_timeout: float = 1.0, timeout: float = 10.0
    ) -> None:
        if not upstreams:
            raise ValueError("at least one upstream")
        self.upstreams: list[Upstream] = list(upstreams)
        self.requests: Counter[Upstream] = Counter()
        self.failures: Counter[Upstream] = Counter()
        self.port = 0
        self._next = 0
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # auto_decompress off: bytes and Content-Encoding pass through as the upstream sent them.
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _pick(self) -> Upstream:
        upstream = self.upstreams[self._next % len(self.upstreams)]
        self._next += 1
        return upstream

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = _forwardable(request.headers)
        peer = request.remote or ""
        earlier = request.headers.get("X-Forwarded-For")
        headers.append(("X-Forwarded-For", f"{earlier}, {peer}" if earlier else peer))
        headers.append(("Host", request.host))
        for _ in range(len(self.upstreams)):
            host, port = upstream = self._pick()
            try:
                async with self._session.request(
                    request.method,
                    URL(f"http://{host}:{port}{request.raw_path}", encoded=True),  # as it came
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                ) as answer:
                    payload = await answer.read()
                    self.requests[upstream] += 1
                    return web.Response(
                        status=answer.status,
                        reason=answer.reason,
                        body=payload,
                        headers=_forwardable(answer.headers),
                    )
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
                self.failures[upstream] += 1  # never reached it: the next one may take the request
            except aiohttp.ClientError:
                # It had the request: not sent again (nginx would, for an idempotent method only)
                return web.Response(status=502, text="502 Bad Gateway: the upstream failed\n")
        return web.Response(status=502, text="502 Bad Gateway: no upstream answered\n")


class NginxProxy:
    """The installed nginx, run unprivileged-agnostic from a temporary folder, as the same proxy.

    Everything nginx writes (pid, error log, temp files) stays in that folder; the master runs in
    the foreground and is stopped with SIGQUIT (graceful), then SIGKILL, both bounded in time.
    """

    kind = "nginx"

    def __init__(
        self,
        upstreams: Sequence[Upstream],
        *,
        nginx: str | None = None,
        server_body: str | None = None,
        upstream_name: str = "upstreams",
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        """`server_body` replaces the default `location /` (it may refer to `http://<upstream_name>`)."""
        if not upstreams:
            raise ValueError("at least one upstream")
        binary = nginx or find_nginx()
        if binary is None:
            raise RuntimeError("nginx is not installed")
        self.nginx = binary
        self.upstreams: list[Upstream] = list(upstreams)
        self.upstream_name = upstream_name
        self.server_body = server_body
        self.port = 0
        self.folder: Path | None = None
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, folder: Path, port: int) -> str:
        servers = "\n".join(
            f"        server {host}:{p} max_fails=1 fail_timeout=10s;" for host, p in self.upstreams
        )
        body = self.server_body or (
            "        location / {\n"
            f"            proxy_pass http://{self.upstream_name};\n"
            "            proxy_http_version 1.1;\n"
            '            proxy_set_header Connection "";\n'
            "            proxy_set_header Host $http_host;\n"
            "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
            "            proxy_next_upstream error timeout;\n"
            "            proxy_connect_timeout 1s;\n"
            "            proxy_read_timeout 10s;\n"
            "        }\n"
        )
        user = ""
        if os.geteuid() == 0:  # workers would drop to a compiled-in user whose group may not exist
            nobody = pwd.getpwnam("nobody")
            user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};\n"
        return (
            f"{user}"
            "daemon off;\n"
            "master_process on;\n"
            "worker_processes 1;\n"
            f"pid {folder}/nginx.pid;\n"
            f"lock_file {folder}/nginx.lock;\n"
            f"error_log {folder}/error.log warn;\n"
            "events {\n    worker_connections 256;\n}\n"
            "http {\n"
            "    access_log off;\n"
            "    default_type application/octet-stream;\n"
            f"    client_body_temp_path {folder}/client_body;\n"
            f"    proxy_temp_path {folder}/proxy;\n"
            f"    fastcgi_temp_path {folder}/fastcgi;\n"
            f"    uwsgi_temp_path {folder}/uwsgi;\n"
            f"    scgi_temp_path {folder}/scgi;\n"
            f"    upstream {self.upstream_name} {{\n{servers}\n        keepalive 8;\n    }}\n"
            "    server {\n"
            f"        listen 127.0.0.1:{port};\n"
            f"{body}"
            "    }\n"
            "}\n"
        )

    async def start(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="nvb-nginx-"))
        self.folder.chmod(0o755)  # workers (nobody, when run as root) create their temp files here
        self.port = free_port()
        conf = self.folder / "nginx.conf"
        conf.write_text(self.config(self.folder, self.port))
        with (self.folder / "stderr.log").open("wb") as stderr:
            self._process = await asyncio.create_subprocess_exec(
                self.nginx,
                "-e",
                str(self.folder / "error.log"),
                "-p",
                f"{self.folder}/",
                "-c",
                str(conf),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            await self._wait_until_listening()
        except BaseException:
            await self.stop()
            raise

    async def _wait_until_listening(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._process.returncode is not None:
                raise RuntimeError(f"nginx exited with {self._process.returncode}: {self._log()}")
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 1.0)
            except (OSError, TimeoutError) as error:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"nginx did not listen within {self._start_timeout}s: {self._log()}"
                    ) from error
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    def _log(self) -> str:
        if self.folder is None:
            return ""
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.folder / name
            if path.exists():
                parts.append(path.read_text(errors="replace").strip())
        return " | ".join(p for p in parts if p)[-2000:]

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGQUIT)
            try:
                await asyncio.wait_for(process.wait(), self._stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.wait_for(process.wait(), self._stop_timeout)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def round_robin_proxy(
    upstreams: Sequence[Upstream], *, prefer_nginx: bool = True
) -> AsyncIterator[PythonProxy | NginxProxy]:
    """nginx when `prefer_nginx` and it is installed, else `PythonProxy`; stopped on exit."""
    nginx = find_nginx() if prefer_nginx else None
    proxy: PythonProxy | NginxProxy = NginxProxy(upstreams, nginx=nginx) if nginx else PythonProxy(upstreams)
    async with proxy:
        yield proxy
