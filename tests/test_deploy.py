"""The deployment files say what docs/operating.md promises: compose runs a persistent Redis and the
bot; its `scale` profile runs webhook replicas behind nginx instead, never beside the polling bot."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from pydantic import ValidationError

from bot.settings import Settings
from bot.wiring import upload_limit_mb
from loopback.proxy import NginxProxy, find_nginx

ROOT = Path(__file__).parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_SERVICE = "bot-webhook"


def load_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def enabled(compose: dict[str, Any], *profiles: str) -> set[str]:
    """The services `docker compose [--profile P ...] up` starts, by compose's rule: those without
    profiles, and those with an active one. With no --profile the active list is [""]."""
    active = set(profiles) or {""}
    return {
        name
        for name, service in compose["services"].items()
        if not service.get("profiles") or active & set(service["profiles"])
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def is_bot(service: dict[str, Any]) -> bool:
    return "build" in service


def test_compose_runs_persistent_healthy_redis_and_the_bot_on_it() -> None:
    compose = load_compose()
    redis, bot = compose["services"]["redis"], compose["services"]["bot"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert redis["volumes"] and "redis-cli" in redis["healthcheck"]["test"]
    assert bot["env_file"] == ".env" and bot["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert (ROOT / "Dockerfile").read_text().count("python") >= 1


def test_env_example_names_every_setting_and_loads(tmp_path: Path, monkeypatch: object) -> None:
    text = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    settings_table = (ROOT / "docs" / "operating.md").read_text().split("## Settings", 1)[1]
    for field in Settings.model_fields:
        assert f"`{field.upper()}`" in settings_table, (
            f"{field.upper()} is not in docs/operating.md's settings"
        )
    required = {
        "TELEGRAM_BOT_TOKEN",
        "NEMO_API_BASE",
        "NEMO_TOKEN",
        "NEMO_SKILL",
        "REDIS_URL",
        "RENDER_POLL_SECONDS",
    }
    assert required <= named
    env = tmp_path / ".env"
    env.write_text(text.replace("TELEGRAM_BOT_TOKEN=\n", "TELEGRAM_BOT_TOKEN=123:abcdef\n"))
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert settings.nemo_skill == "maker-online-free" and upload_limit_mb(settings) == 500


def test_default_profile_is_one_polling_bot_and_redis() -> None:
    compose = load_compose()
    services = compose["services"]
    assert enabled(compose) == {"redis", "bot"}
    bot = services["bot"]
    assert bot.get("deploy", {}).get("replicas", 1) == 1 and "ports" not in bot
    # Polling even when .env also holds the scale profile's webhook settings (empty = unset)
    assert environment(bot)["TELEGRAM_WEBHOOK_URL"] == ""
    assert bot["stop_grace_period"] == "30s" and bot["restart"] == "unless-stopped"


def test_scale_profile_is_three_webhook_replicas_behind_nginx_alone() -> None:
    compose = load_compose()
    services = compose["services"]
    scale = enabled(compose, "scale")
    assert scale == {"redis", "webhook-settings", WEBHOOK_SERVICE, "nginx"}
    assert "bot" not in scale, "one token: polling and a webhook never run together"
    assert [name for name in scale if is_bot(services[name])] == [WEBHOOK_SERVICE]

    replicas = services[WEBHOOK_SERVICE]
    assert replicas["deploy"]["replicas"] == 3 and "container_name" not in replicas
    env = environment(replicas)
    assert env["REDIS_URL"] == environment(services["bot"])["REDIS_URL"]  # one Redis for all
    assert env["TELEGRAM_WEBHOOK_URL"].startswith("${TELEGRAM_WEBHOOK_URL")
    assert (env["HTTP_HOST"], env["HTTP_PORT"]) == ("0.0.0.0", "8080")
    assert replicas["depends_on"]["redis"]["condition"] == "service_healthy"
    assert replicas["depends_on"]["webhook-settings"]["condition"] == "service_completed_successfully"
    grace = int(env["SHUTDOWN_GRACE_SECONDS"])
    assert seconds(replicas["stop_grace_period"]) >= grace + 5, "SIGKILL only after the hand-over"
    check = " ".join(replicas["healthcheck"]["test"])
    assert "urllib.request" in check and "/healthz" in check and "HTTP_PORT" in check

    # nginx: the official image, new enough for "resolve", the only published port
    nginx = services["nginx"]
    image, _, tag = nginx["image"].partition(":")
    assert image == "nginx" and version(tag) >= (1, 27, 3)
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert [name for name, s in services.items() if s.get("ports")] == ["nginx"]
    assert nginx["depends_on"][WEBHOOK_SERVICE]["condition"] in {"service_started", "service_healthy"}
    assert "/nginx-healthz" in " ".join(nginx["healthcheck"]["test"])

    # Redis is shared by both profiles, on disk
    redis = services["redis"]
    assert "redis" in scale and not redis.get("profiles")
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"]) and "redis-cli" in redis["healthcheck"]["test"]


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match.group(1))


def version(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", tag.split("-")[0]))


def test_the_webhook_secret_comes_from_the_environment_never_a_literal() -> None:
    compose = load_compose()
    for name, service in compose["services"].items():
        value = environment(service).get("TELEGRAM_WEBHOOK_SECRET")
        if value is not None:
            assert re.fullmatch(r"\$\{TELEGRAM_WEBHOOK_SECRET(:?[-?][^}]*)?\}", value), (name, value)
    text = (ROOT / "docker-compose.yml").read_text()
    for line in text.splitlines():
        assignment = re.match(r"\s*-?\s*TELEGRAM_WEBHOOK_SECRET\s*[:=]\s*(.*)", line)
        if assignment:
            assert assignment.group(1).startswith("${"), line
    assert "webhook-settings" in enabled(compose, "scale")


def webhook_settings_script() -> str:
    entrypoint = load_compose()["services"]["webhook-settings"]["entrypoint"]
    assert entrypoint[:2] == ["sh", "-c"]
    return str(entrypoint[2]).replace("$$", "$")  # compose's escape for a literal $


@pytest.mark.parametrize(
    ("url", "secret", "ok"),
    [
        ("https://bot.example.com/telegram", "s3cr3t_Token-42", True),
        (None, None, False),
        ("https://bot.example.com/telegram", None, False),
        ("https://bot.example.com/telegram", "", False),
        (None, "s3cr3t", False),
        ("http://bot-api:8081/telegram", "s3cr3t", True),  # a self-hosted Bot API allows http
        ("https://bot.example.com/telegram", "has space", False),
        ("https://bot.example.com/telegram", "base64+/=", False),
        ("https://bot.example.com/telegram", "x" * 256, True),
        ("https://bot.example.com/telegram", "x" * 257, False),
    ],
)
def test_the_scale_profile_refuses_to_start_without_a_webhook_url_and_secret(
    url: str | None, secret: str | None, ok: bool
) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env |= {"TELEGRAM_WEBHOOK_URL": url} if url is not None else {}
    env |= {"TELEGRAM_WEBHOOK_SECRET": secret} if secret is not None else {}
    # dash here; busybox's sh too where installed, the shell of the alpine image it runs in
    shells = [[shutil.which("sh") or "/bin/sh"]] + (
        [[busybox, "sh"]] if (busybox := shutil.which("busybox")) else []
    )
    for shell in shells:
        done = subprocess.run(
            [*shell, "-c", webhook_settings_script()], env=env, capture_output=True, text=True, timeout=10
        )
        said = done.stderr + done.stdout
        assert (done.returncode == 0) is ok, (shell, said)
        if not ok:
            assert "TELEGRAM_WEBHOOK_" in said  # names what to fix
        if secret and len(secret) > 3:
            assert secret not in said  # and never prints the secret
    if url is not None and secret is not None:  # the bot's own settings agree on what may start
        try:
            Settings(
                telegram_bot_token="123:abc",
                telegram_webhook_url=url,
                telegram_webhook_secret=secret,
                _env_file=None,
            )
        except ValidationError:
            assert not ok
        else:
            assert ok


async def test_the_replicas_health_check_passes_on_200_and_fails_on_503() -> None:
    status = {"code": 200}

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(status=status["code"], text="redis: down" if status["code"] != 200 else "ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    test = load_compose()["services"][WEBHOOK_SERVICE]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    try:
        codes = []
        for code in (200, 503):
            status["code"] = code
            process = await asyncio.create_subprocess_exec(
                sys.executable, *test[2:], env={"HTTP_PORT": str(port), "PATH": os.environ["PATH"]}
            )
            codes.append(await asyncio.wait_for(process.wait(), 15))
    finally:
        await runner.cleanup()
    assert codes[0] == 0 and codes[1] != 0


# --- deploy/nginx.conf -------------------------------------------------------------------------


def test_nginx_conf_keeps_metrics_private_and_passes_the_secret_header() -> None:
    conf = NGINX_CONF.read_text()
    code = re.sub(r"#[^\n]*", "", conf)  # directives only
    assert re.search(r"location\s*=\s*/metrics\s*\{\s*return\s+404;\s*\}", code)
    assert re.search(r"location\s*\^~\s*/metrics/\s*\{\s*return\s+404;\s*\}", code)
    assert re.search(
        rf"proxy_set_header\s+{SECRET_HEADER}\s+\$http_x_telegram_bot_api_secret_token;", code, re.IGNORECASE
    )
    assert "underscores_in_headers" not in code
    assert re.search(r"proxy_next_upstream\s+error\s+timeout;", code)
    assert "non_idempotent" not in code, "a POSTed update must never be sent twice by nginx"
    assert re.search(r"resolver\s+127\.0\.0\.11\b", code)
    # every replica of the service, re-resolved, on the port compose gives them
    port = environment(load_compose()["services"][WEBHOOK_SERVICE])["HTTP_PORT"]
    assert re.search(rf"server\s+{WEBHOOK_SERVICE}:{port}\s+resolve\b", code)
    assert re.search(r"\bzone\s+\w+\s+\d+k;", code)
    assert re.search(r"client_max_body_size\s+\d+[km];", code)
    assert re.search(r"location\s*=\s*/healthz\s*\{", code)
    assert re.search(r"listen\s+127\.0\.0\.1:8081;", code)  # the health check's own, not published


def public_server() -> str:
    """The directives and locations of the public server block, as deploy/nginx.conf has them."""
    match = re.search(
        r"# BEGIN public server[^\n]*\n(.*?)\n\s*# END public server", NGINX_CONF.read_text(), re.S
    )
    assert match, "deploy/nginx.conf lost its BEGIN/END public server markers"
    return match.group(1) + "\n"


@pytest.fixture
async def replica() -> AsyncIterator[dict[str, Any]]:
    """One stand-in replica: /telegram checks the secret, /healthz answers, /metrics is private."""
    seen: dict[str, Any] = {"hits": [], "secret": []}

    async def webhook(request: web.Request) -> web.Response:
        seen["hits"].append(request.path)
        seen["secret"] = request.headers.getall(SECRET_HEADER, [])
        if seen["secret"] != ["s3cr3t_Token-42"]:
            return web.Response(status=403)
        return web.Response(text="ok")

    async def any_path(request: web.Request) -> web.Response:
        seen["hits"].append(request.path)
        return web.Response(text="nvb_updates_total 1\n" if "metrics" in request.path else "ok")

    app = web.Application()
    app.router.add_post("/telegram", webhook)
    app.router.add_route("*", "/{tail:.*}", any_path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    seen["address"] = ("127.0.0.1", runner.addresses[0][1])
    try:
        yield seen
    finally:
        await runner.cleanup()


async def raw_request(port: int, method: str, target: str) -> bytes:
    """One request with its target sent byte for byte (HTTP clients tidy `//x` and `%6D`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = f"{method} {target} HTTP/1.1\r\nHost: bot\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        writer.write(head.encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed")
async def test_nginx_conf_public_server_in_a_real_nginx(replica: dict[str, Any]) -> None:
    proxy = NginxProxy([replica["address"]], server_body=public_server(), upstream_name="bot_replicas")
    async with proxy, httpx.AsyncClient(base_url=proxy.url, timeout=5) as http:
        for method in ("GET", "POST"):
            for path in (
                "/metrics",
                "/metrics/",
                "/metrics/x",
                "//metrics",
                "/%6Detrics",
                "/healthz/../metrics",
            ):
                answer = await raw_request(proxy.port, method, path)
                assert answer.startswith(b"HTTP/1.1 404 ") and b"nvb_" not in answer, (method, path)
        assert not replica["hits"], "no /metrics request reached a replica"

        update = await http.post(
            "/telegram", content=b'{"update_id": 1}', headers={SECRET_HEADER: "s3cr3t_Token-42"}
        )
        assert update.status_code == 200 and replica["secret"] == ["s3cr3t_Token-42"]
        assert (await http.post("/telegram", content=b"{}")).status_code == 403  # the bot's own check
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/telegram")).status_code == 403  # Telegram only POSTs
        assert (await http.post("/healthz")).status_code == 403
        too_big = await http.post("/telegram", content=b"x" * (2 * 1024 * 1024))
        assert too_big.status_code == 413


def nginx_version(binary: str) -> tuple[int, ...]:
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", done.stderr + done.stdout)
    assert match, done.stderr
    return tuple(int(part) for part in match.groups())


@pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed")
def test_the_whole_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    """Every directive in its context. Paths move into tmp_path; before nginx 1.27.3 (no upstream
    "resolve") the replicas' name becomes a loopback address."""
    binary = find_nginx()
    assert binary
    conf = NGINX_CONF.read_text()
    conf = re.sub(r"(?m)^user\s+\w+;\n", "", conf)
    conf = re.sub(r"(?m)^pid\s+\S+;", f"pid {tmp_path}/nginx.pid;", conf)
    conf = re.sub(r"(?m)^error_log\s+\S+", f"error_log {tmp_path}/error.log", conf)
    conf = re.sub(r"access_log\s+/var/log/nginx/access\.log;", f"access_log {tmp_path}/access.log;", conf)
    temp = "".join(
        f"    {kind}_temp_path {tmp_path}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = conf.replace("http {\n", "http {\n" + temp, 1)
    if nginx_version(binary) < (1, 27, 3):
        conf = re.sub(rf"server\s+{WEBHOOK_SERVICE}:(\d+)\s+resolve", r"server 127.0.0.1:\1", conf)
    (tmp_path / "nginx.conf").write_text(conf)
    done = subprocess.run(
        [
            binary,
            "-t",
            "-q",
            "-e",
            f"{tmp_path}/error.log",
            "-p",
            f"{tmp_path}/",
            "-c",
            f"{tmp_path}/nginx.conf",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


# --- deploy/prometheus.yml ---------------------------------------------------------------------


def test_prometheus_scrapes_every_replica_inside_the_network() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (sd,) = job["dns_sd_configs"]
    port = environment(load_compose()["services"][WEBHOOK_SERVICE])["HTTP_PORT"]
    assert sd["names"] == [WEBHOOK_SERVICE] and sd["type"] == "A" and sd["port"] == int(port)


# --- docker compose itself, where it is installed ----------------------------------------------


def compose_command() -> list[str] | None:
    """Compose v2 (`docker compose` or `docker-compose`). `config` needs no running engine."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        try:
            done = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and re.search(r"v?2\.\d+", done.stdout):
            return command
    return None


def compose_config(tmp_path: Path, extra_env: Iterable[str], *profiles: str) -> dict[str, Any]:
    """`docker compose [--profile P] config` on a copy of the deployment files with a .env."""
    project = tmp_path / ("project-" + "-".join(profiles or ("default",)))
    project.mkdir()
    shutil.copy(ROOT / "docker-compose.yml", project)
    shutil.copy(ROOT / "Dockerfile", project)
    shutil.copytree(ROOT / "deploy", project / "deploy")
    example = (ROOT / ".env.example").read_text()
    (project / ".env").write_text(example + "\n".join(extra_env) + "\n")
    command = compose_command()
    assert command
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "TELEGRAM_", "PROXY_"))}
    done = subprocess.run(
        [*command, *flags, "config", "--format", "json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    try:
        return json.loads(done.stdout)  # type: ignore[no-any-return]
    except json.JSONDecodeError:
        raise AssertionError(f"compose config failed: {done.stderr}") from None


@pytest.mark.skipif(compose_command() is None, reason="docker compose (v2) is not installed")
def test_docker_compose_config_of_both_profiles(tmp_path: Path) -> None:
    # A .env without any webhook setting: the plain `up` must still work as before
    default = compose_config(tmp_path, [])
    assert set(default["services"]) == {"redis", "bot"}
    assert default["services"]["bot"]["environment"]["TELEGRAM_WEBHOOK_URL"] == ""

    webhook = [
        "TELEGRAM_WEBHOOK_URL=https://bot.example.com/telegram",
        "TELEGRAM_WEBHOOK_SECRET=from_dot_env",
    ]
    scale = compose_config(tmp_path, webhook, "scale")["services"]
    assert set(scale) == {"redis", "webhook-settings", WEBHOOK_SERVICE, "nginx"}
    assert scale[WEBHOOK_SERVICE]["deploy"]["replicas"] == 3
    assert scale[WEBHOOK_SERVICE]["environment"]["TELEGRAM_WEBHOOK_SECRET"] == "from_dot_env"
    assert [name for name, s in scale.items() if s.get("ports")] == ["nginx"]
    assert [p["target"] for p in scale["nginx"]["ports"]] == [80]
