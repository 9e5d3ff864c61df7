"""The deployment files say what the README promises: compose runs a persistent Redis and the bot."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.settings import Settings

ROOT = Path(__file__).parent.parent


def test_compose_runs_persistent_healthy_redis_and_the_bot_on_it() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    redis, bot = compose["services"]["redis"], compose["services"]["bot"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert redis["volumes"] and "redis-cli" in redis["healthcheck"]["test"]
    assert bot["env_file"] == ".env" and bot["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert (ROOT / "Dockerfile").read_text().count("python") >= 1


def test_env_example_names_every_setting_and_loads(tmp_path: Path, monkeypatch: object) -> None:
    text = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    readme = (ROOT / "README.md").read_text()
    for field in Settings.model_fields:
        assert field.upper() in readme, f"{field.upper()} is not documented in the README"
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
    assert settings.nemo_skill == "maker-online-free" and settings.upload_limit_mb == 500
