"""`python -m bot`: read the settings, then run the bot with long polling."""

from __future__ import annotations

import sys

from pydantic import ValidationError
from telegram import Update

from bot.settings import Settings, describe_error


def main() -> None:
    try:
        settings = Settings()  # type: ignore[call-arg]  # values come from the environment
    except ValidationError as err:
        print(f"nemo-video-bot: {describe_error(err)}", file=sys.stderr)
        sys.exit(2)

    from bot.app import build_application
    from bot.logs import setup_logging

    setup_logging(settings.log_level, settings.secrets())
    application = build_application(settings)
    application.run_polling(allowed_updates=Update.ALL_TYPES, drop_pending_updates=False)


if __name__ == "__main__":
    main()
