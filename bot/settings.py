"""Settings from the environment or a `.env` file; every interval and limit lives here."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TELEGRAM_CLOUD_DOWNLOAD_MB = 20  # getFile limit of the cloud Bot API
TELEGRAM_CLOUD_UPLOAD_MB = 50  # sendVideo/sendDocument limit of the cloud Bot API
TELEGRAM_LOCAL_MB = 2000  # both limits with a self-hosted Bot API server in --local mode
DEFAULT_HTTP_PORT = 8080
# Telegram's windows are planned on the bot's clock and counted on Telegram's: the margin covers the
# spread between them, measured at the fake Bot API under load (bench/README.md, "Overload").
LIMIT_MARGIN = 0.1
SHARED_LIMIT_MARGIN = 0.15
WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")  # Telegram's rule for secret_token

MIN_KEY_CHARS = 32  # TOKEN_ENCRYPTION_KEY: at least this many characters
SkillName = Literal["maker-online-free", "maker-free-best", "ai-video-creator-online", "free-generator-maker"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
    )

    telegram_bot_token: SecretStr
    telegram_base_url: str = "https://api.telegram.org/bot"
    telegram_base_file_url: str = "https://api.telegram.org/file/bot"
    telegram_local_mode: bool = False
    # Webhook mode (several replicas behind a proxy); unset, the bot uses long polling
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_max_connections: int = Field(default=40, ge=1, le=100)
    http_host: str = "0.0.0.0"  # noqa: S104  # a replica listens on every interface of its container
    http_port: int | None = Field(default=None, ge=1, le=65535)  # 8080 in webhook mode
    replica_lease_seconds: float = Field(default=15, gt=0)  # a replica silent this long is taken as dead
    inbox_block_seconds: float = Field(default=1, gt=0)  # one wait for new updates in the stream

    nemo_api_base: str = "https://mega-api-prod.nemovideo.ai"
    nemo_token: SecretStr | None = None
    nemo_skill: SkillName = "maker-online-free"
    nemo_skill_version: str = Field(default="1.0.0", min_length=1, max_length=64)
    nemo_skill_platform: Literal["clawhub", "cursor", "unknown"] = "unknown"
    nemo_register_url: str = "https://nemovideo.com/register"
    nemo_web_url: str = "https://nemovideo.com"  # the website: claim links open projects there
    # The studio (a Telegram Mini App): the public HTTPS address that leads to this bot's /studio
    # (Telegram opens Mini Apps over HTTPS only); unset, there is no studio
    mini_app_url: str | None = None
    # Each new project its own topic in private chats, where the bot has topics (Bot API 9.4)
    project_topics: bool = False
    max_projects: int = Field(
        default=20, ge=1, le=90
    )  # projects a chat keeps (/projects shows them as buttons)
    mini_app_auth_seconds: float = Field(default=3600, gt=0)  # a studio's initData is refused once older
    mini_app_refresh_seconds: float = Field(default=5, gt=0)  # the open studio redraws the project this often
    # Accounts: personal tokens (/login) are stored encrypted with a key derived from this secret;
    # unset, personal accounts are off
    token_encryption_key: SecretStr | None = None
    trial_refusal_memory_seconds: float = Field(default=3600, gt=0)  # no trial asked for after a 429
    credits_low_warning: int = Field(default=500, ge=0)  # the operator's balance that warns admins; 0: off
    credits_check_seconds: float = Field(default=900, gt=0)  # how often the operator's balance is read

    redis_url: str | None = None
    chat_ttl_days: int = Field(default=30, gt=0)
    update_memory_hours: int = Field(default=48, gt=0)  # Telegram keeps unconfirmed updates 24 h
    refusal_memory_hours: int = Field(default=24, gt=0)
    finished_render_days: int = Field(default=7, gt=0)
    usage_days: int = Field(default=8, gt=0)
    redis_timeout_seconds: float = Field(default=3, gt=0)
    redis_max_connections: int = Field(default=64, ge=1, le=10_000)
    redis_pool_timeout_seconds: float = Field(default=30, gt=0)  # a busy pool waits this long

    # Load: pools, concurrency and Telegram's flood limits
    concurrent_updates: int = Field(default=256, ge=1, le=100_000)
    setups_at_once: int = Field(default=16, ge=1, le=10_000)  # new chats connected at once
    max_live_turns: int = Field(default=1000, ge=1, le=100_000)  # SSE streams open at once
    nemo_max_connections: int = Field(default=100, ge=1, le=10_000)  # for calls other than streams
    nemo_pool_timeout_seconds: float = Field(default=60, gt=0)
    telegram_connections: int = Field(default=256, ge=1, le=10_000)
    telegram_pool_timeout_seconds: float = Field(default=30, gt=0)
    telegram_global_per_second: int = Field(default=30, ge=1, le=1000)
    telegram_global_burst: int = Field(default=1, ge=1, le=1000)
    telegram_chat_burst: int = Field(default=3, ge=1, le=100)
    telegram_chat_per_second: float = Field(default=1.0, gt=0)
    telegram_group_per_minute: int = Field(default=20, ge=1, le=1000)
    # Added to every window for the jitter between the bot and Telegram (None: as measured on a
    # loaded 2-core machine, 0.1 s for one process, 0.15 s for replicas sharing the windows in Redis)
    telegram_limit_margin_seconds: float | None = Field(default=None, ge=0)
    telegram_flood_retries: int = Field(default=3, ge=0, le=20)
    telegram_slowdown_factor: float = Field(default=1.5, ge=1, le=10)  # windows this much longer after a 429
    telegram_slowdown_seconds: float = Field(default=30, ge=0)  # ... for this long, then the pace returns

    render_poll_seconds: float = Field(default=30, gt=0)
    render_max_seconds: float = Field(default=1800, gt=0)
    render_lease_seconds: float = Field(default=60, gt=0)  # a render step untouched this long is taken over
    render_delivery_attempts: int = Field(default=120, ge=1)  # polls retrying a cut delivery by link
    render_download_seconds: float = Field(default=60, gt=0)  # the finished MP4 from the CDN
    render_poll_concurrency: int = Field(default=40, ge=1, le=1000)  # render steps at once (per replica)
    job_schedule_seconds: float = Field(default=1, gt=0)  # how often due jobs are released to workers
    job_sweep_seconds: float = Field(default=20, gt=0)  # how often jobs of a dead replica are looked for
    job_retries: int = Field(default=3, ge=1, le=100)  # attempts of a job step that raised
    job_retry_seconds: float = Field(default=5, ge=0)  # the first retry's delay, then doubled
    render_delivery_concurrency: int = Field(default=8, ge=1, le=1000)  # videos fetched and sent at once
    still_working_seconds: float = Field(default=120, gt=0)
    sse_max_seconds: float = Field(default=900, gt=0)
    sse_idle_seconds: float = Field(default=300, gt=0)
    rate_limit_wait_seconds: float = Field(default=30, ge=0)
    typing_interval_seconds: float = Field(default=4.5, gt=0)
    turn_busy_grace_seconds: float = Field(default=1.0, ge=0)
    album_wait_seconds: float = Field(default=1.5, gt=0)
    album_memory_seconds: float = Field(default=60, gt=0)  # a group album's addressed item, remembered
    http_timeout_seconds: float = Field(default=30, gt=0)
    http_retries: int = Field(default=2, ge=0, le=10)
    http_retry_base_seconds: float = Field(default=0.5, ge=0)
    dropped_turn_poll_seconds: float = Field(default=30, gt=0)
    dropped_turn_polls: int = Field(default=3, ge=1, le=20)
    telegram_network_attempts: int = Field(default=3, ge=1, le=10)  # a request that met a network error
    telegram_file_seconds: float = Field(default=120, gt=0)  # sending a video, fetching an upload
    max_upload_mb: int | None = Field(default=None, gt=0)
    upload_progress_min_mb: float = Field(default=5, ge=0)  # uploads this large show a progress bar
    upload_progress_seconds: float = Field(default=3, gt=0)  # at most one progress edit this often
    shutdown_grace_seconds: float = Field(default=20, ge=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Shared spaces and access
    group_projects: Literal["shared", "per_user"] = "shared"
    group_admin_only: bool = False  # /new and export in groups only for the group's admins
    group_merge_seconds: float = Field(default=3, ge=0)
    group_admin_cache_seconds: float = Field(default=300, ge=0)  # who is a group admin, remembered

    # A chat that feels alive: the agent's reply shown as it is written, reactions on the request
    live_edit_seconds: float = Field(
        default=1.0, gt=0
    )  # private chats: the live reply edited at most this often
    live_group_edit_seconds: float = Field(default=6, ge=0)  # groups (20 a minute); 0: no live edits
    agent_streaming: bool = False  # ask the agent for token streaming ("streaming": true in /run_sse)
    reactions: bool = True  # 👀 on the request while it runs, then 👍 or 👎
    allowed_user_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    allowed_chat_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    admin_user_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    turns_per_user: int = Field(default=30, ge=0)  # per LIMIT_WINDOW_SECONDS; 0 = no limit
    turns_per_chat: int = Field(default=60, ge=0)
    uploads_per_user: int = Field(default=100, ge=0)
    uploads_per_chat: int = Field(default=200, ge=0)
    limit_window_seconds: int = Field(default=3600, gt=0)

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        head, _, tail = token.partition(":")
        if not head.isdigit() or not tail:
            raise ValueError("must look like 123456:ABC... (the token BotFather gave you)")
        return SecretStr(token)

    @field_validator("token_encryption_key")
    @classmethod
    def _key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_KEY_CHARS:
            raise ValueError(
                f"must be at least {MIN_KEY_CHARS} characters (for example: openssl rand -hex 32)"
            )
        return value

    @field_validator(
        "nemo_api_base", "telegram_base_url", "telegram_base_file_url", "nemo_register_url", "nemo_web_url"
    )
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if "{" not in value else value

    @field_validator("allowed_user_ids", "allowed_chat_ids", "admin_user_ids", mode="before")
    @classmethod
    def _id_list(cls, value: object) -> object:
        """`123, -100456` (commas or spaces) into a set of ids."""
        if isinstance(value, str):
            return frozenset(int(part) for part in value.replace(",", " ").split())
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        if self.telegram_webhook_url and self.telegram_webhook_secret is None:
            raise ValueError(
                "TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_WEBHOOK_URL: without it anyone could post updates"
            )
        if self.telegram_webhook_url and not self.telegram_webhook_url.startswith(("http://", "https://")):
            raise ValueError("TELEGRAM_WEBHOOK_URL must start with https:// (or http:// behind a proxy)")
        return self

    @field_validator("mini_app_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("must start with https:// (Telegram opens Mini Apps over HTTPS only)")
        return value.rstrip("/") if value else None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def bot_id(self) -> str:
        """The bot's numeric id (the public part of its token), used to namespace Redis keys."""
        return self.telegram_bot_token.get_secret_value().split(":", 1)[0]

    @property
    def webhook_path(self) -> str | None:
        """The path of TELEGRAM_WEBHOOK_URL, served by each replica; None in polling mode."""
        if not self.telegram_webhook_url:
            return None
        return urlsplit(self.telegram_webhook_url).path or "/"

    @property
    def listen_port(self) -> int | None:
        """Where the HTTP server listens: HTTP_PORT, 8080 in webhook mode or with the studio, else none."""
        serving = self.telegram_webhook_url or self.mini_app_url
        return self.http_port or (DEFAULT_HTTP_PORT if serving else None)

    @property
    def limit_margin_seconds(self) -> float:
        """TELEGRAM_LIMIT_MARGIN_SECONDS, or the margin measured for this mode (see bench/README.md)."""
        if self.telegram_limit_margin_seconds is not None:
            return self.telegram_limit_margin_seconds
        shared = bool(self.telegram_webhook_url and self.redis_url)
        return SHARED_LIMIT_MARGIN if shared else LIMIT_MARGIN

    @property
    def telegram_download_limit_mb(self) -> int:
        return TELEGRAM_LOCAL_MB if self.telegram_local_mode else TELEGRAM_CLOUD_DOWNLOAD_MB

    @property
    def telegram_upload_limit_mb(self) -> int:
        return TELEGRAM_LOCAL_MB if self.telegram_local_mode else TELEGRAM_CLOUD_UPLOAD_MB

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction filter."""
        token = self.telegram_bot_token.get_secret_value()
        values = [token, token.split(":", 1)[1]]  # the secret half alone, as in an encoded file URL
        if self.nemo_token:
            values.append(self.nemo_token.get_secret_value())
        if self.telegram_webhook_secret:
            values.append(self.telegram_webhook_secret.get_secret_value())
        if self.token_encryption_key:
            values.append(self.token_encryption_key.get_secret_value())
        return values


def describe_error(err: ValidationError) -> str:
    """One line per bad setting, named as the operator writes it in the environment."""
    lines = []
    for issue in err.errors():
        if not issue["loc"]:  # a rule across settings: its message names them
            lines.append(str(issue["msg"]).removeprefix("Value error, ") + ".")
            continue
        name = str(issue["loc"][0]).upper()
        if issue["type"] == "missing":
            lines.append(f"{name} is not set: it is required (see .env.example).")
        else:
            lines.append(f"{name} is invalid: {str(issue['msg']).removeprefix('Value error, ')}.")
    return " ".join(lines)
