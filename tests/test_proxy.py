"""The round-robin proxy of the scale profile, in the small: requests spread over every replica, the
webhook's headers and body arrive intact, and a replica that is down is skipped.

Each test runs through the Python proxy always and through nginx where it is installed, the same
proxy `docker compose --profile scale up` puts in front of the bot's replicas."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web

from loopback.proxy import NginxProxy, PythonProxy, Upstream, find_nginx, free_port, round_robin_proxy

NGINX = find_nginx()
KINDS = [
    "python",
    pytest.param("nginx", marks=pytest.mark.skipif(NGINX is None, reason="nginx is not installed")),
]
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@dataclass
class Replica:
    """A stand-in for one bot replica: answers every request with its name and what it received."""

    name: str
    hits: Counter[str] = field(default_factory=Counter)
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.answer)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def address(self) -> Upstream:
        return ("127.0.0.1", self.port)

    async def answer(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        body = await request.read()
        seen = {
            "name": self.name,
            "method": request.method,
            "target": request.raw_path,  # path and query exactly as they arrived
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": base64.b64encode(body).decode(),
        }
        return web.json_response(seen, headers={"X-Replica": self.name})


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    started = [Replica(name) for name in ("a", "b", "c")]
    for replica in started:
        await replica.start()
    try:
        yield started
    finally:
        for replica in started:
            await replica.stop()


def dead_upstream() -> Upstream:
    """A loopback port nobody listens on: connecting is refused at once."""
    return ("127.0.0.1", free_port())


@pytest.mark.parametrize("kind", KINDS)
async def test_requests_go_round_robin_over_every_replica(kind: str, replicas: list[Replica]) -> None:
    async with round_robin_proxy([r.address for r in replicas], prefer_nginx=kind == "nginx") as proxy:
        assert proxy.kind == kind
        async with httpx.AsyncClient(base_url=proxy.url, timeout=5) as http:
            names = [(await http.get("/healthz")).json()["name"] for _ in range(9)]
    assert Counter(names) == {"a": 3, "b": 3, "c": 3}
    # In turn, not merely evenly: each window of three saw every replica
    assert all(set(names[i : i + 3]) == {"a", "b", "c"} for i in range(0, 9, 3))
    if isinstance(proxy, PythonProxy):
        assert proxy.requests == Counter({r.address: 3 for r in replicas})


@pytest.mark.parametrize("kind", KINDS)
async def test_the_webhook_arrives_intact(kind: str, replicas: list[Replica]) -> None:
    update = json.dumps({"update_id": 7, "message": {"text": "héllo \u2603 <b>&amp;"}}).encode()
    async with (
        round_robin_proxy([r.address for r in replicas], prefer_nginx=kind == "nginx") as proxy,
        httpx.AsyncClient(base_url=proxy.url, timeout=5) as http,
    ):
        answer = await http.post(
            "/telegram?x=1&y=%2F",
            content=update,
            headers={
                "Content-Type": "application/json",
                SECRET_HEADER: "s3cr3t_Token-42",
                "X-Custom": "kept",
                "Keep-Alive": "timeout=5",  # hop-by-hop: for the proxy only
            },
        )
    assert answer.status_code == 200 and answer.headers["X-Replica"] in {"a", "b", "c"}
    seen = answer.json()
    assert (seen["method"], seen["target"]) == ("POST", "/telegram?x=1&y=%2F")
    assert base64.b64decode(seen["body"]) == update
    headers: dict[str, list[str]] = {}
    for name, value in seen["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    assert headers[SECRET_HEADER.lower()] == ["s3cr3t_Token-42"]  # once, unchanged
    assert headers["x-custom"] == ["kept"] and headers["content-type"] == ["application/json"]
    assert headers["content-length"] == [str(len(update))]
    assert "keep-alive" not in headers
    assert headers["x-forwarded-for"][0].endswith("127.0.0.1")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_replica_that_is_down_is_skipped(kind: str, replicas: list[Replica]) -> None:
    a, b, _ = replicas
    dead = dead_upstream()
    async with (
        round_robin_proxy([a.address, dead, b.address], prefer_nginx=kind == "nginx") as proxy,
        httpx.AsyncClient(base_url=proxy.url, timeout=5) as http,
    ):
        answers = [await http.post("/telegram", content=b"{}") for _ in range(6)]
    assert [r.status_code for r in answers] == [200] * 6
    assert sum(a.hits.values()) + sum(b.hits.values()) == 6
    assert a.hits["/telegram"] > 0 and b.hits["/telegram"] > 0
    if isinstance(proxy, PythonProxy):
        assert proxy.failures[dead] >= 1 and dead not in proxy.requests


@pytest.mark.parametrize("kind", KINDS)
async def test_bad_gateway_when_no_replica_answers(kind: str) -> None:
    dead = [dead_upstream(), dead_upstream()]
    async with (
        round_robin_proxy(dead, prefer_nginx=kind == "nginx") as proxy,
        httpx.AsyncClient(base_url=proxy.url, timeout=5) as http,
    ):
        assert (await http.post("/telegram", content=b"{}")).status_code == 502


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
async def test_nginx_leaves_nothing_running_and_nothing_behind(replicas: list[Replica]) -> None:
    proxy = NginxProxy([replicas[0].address])
    async with proxy:
        folder, port = proxy.folder, proxy.port
        assert folder is not None and (folder / "nginx.pid").exists()
    assert proxy.folder is None and not folder.exists()
    with pytest.raises(OSError):  # refused: nobody listens there any more
        await asyncio.open_connection("127.0.0.1", port)
