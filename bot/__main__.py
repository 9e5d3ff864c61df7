"""`python -m bot`: read the settings, then run the bot: with long polling, or as one replica in
webhook mode when TELEGRAM_WEBHOOK_URL is set (its life from start to a graceful stop is `serve`)."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError
from telegram import Update
from telegram.error import InvalidToken, NetworkError

from bot.settings import Settings, describe_error


def main() -> None:
    try:
        settings = Settings()  # type: ignore[call-arg]  # values come from the environment
    except ValidationError as err:
        print(f"nemo-video-bot: {describe_error(err)}", file=sys.stderr)
        sys.exit(2)

    from bot.app import build_application, serve
    from bot.core.logs import setup_logging

    setup_logging(settings.log_level, settings.secrets())
    try:
        if settings.telegram_webhook_url:
            asyncio.run(serve(settings))
        else:
            build_application(settings).run_polling(
                allowed_updates=Update.ALL_TYPES, drop_pending_updates=False, bootstrap_retries=3
            )
    except InvalidToken:
        print(
            "nemo-video-bot: Telegram refused TELEGRAM_BOT_TOKEN: check it with @BotFather.", file=sys.stderr
        )
        sys.exit(2)
    except NetworkError as err:
        where = settings.telegram_base_url.split("{")[0]
        print(f"nemo-video-bot: cannot reach the Telegram Bot API at {where} ({err}).", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
